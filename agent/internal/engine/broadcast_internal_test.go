//go:build linux

package engine

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/policy"
)

// soBroadcast reads SO_BROADCAST of socket id.
func soBroadcast(t *testing.T, tb *Table, ctx context.Context, id string) int {
	t.Helper()
	s, err := tb.peek(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var sc syscall.Conn
	if s.pc != nil {
		sc = s.pc.(syscall.Conn)
	} else {
		sc = s.conn.(syscall.Conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v := -1
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	return v
}

// Go turns SO_BROADCAST on for every UDP socket; the agent leaves it on only for a caller
// whose rule set names a broadcast address, and on a connected socket only towards one.
func TestSOBroadcast(t *testing.T) {
	t.Parallel()
	pol, err := policy.Parse("p.yaml", []byte(`
rule_sets:
  - name: bcast
    callers: [token:bcast]
    destinations:
      allow: [{name: all}, {name: limited broadcast, cidrs: [255.255.255.255/32]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	tb := newTable(time.Second, 1<<20, pol)
	defer tb.Stop()
	plain := WithCaller(context.Background(), Caller{ID: "token:plain", Token: "plain"})
	bcast := WithCaller(context.Background(), Caller{ID: "token:bcast", Token: "bcast"})
	for _, tc := range []struct {
		name string
		ctx  context.Context
		open func(ctx context.Context) (Info, error)
		want int
	}{
		{"bind, no broadcast rule", plain, func(ctx context.Context) (Info, error) { return tb.Bind(ctx, "udp4", "127.0.0.1:0", "", nil, nil) }, 0},
		{"bind udp6, no broadcast rule", plain, func(ctx context.Context) (Info, error) { return tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil) }, 0},
		{"dial, no broadcast rule", plain, func(ctx context.Context) (Info, error) { return tb.Dial(ctx, "udp", "127.0.0.1:9", "", 0, "", nil) }, 0},
		{"bind, broadcast named", bcast, func(ctx context.Context) (Info, error) { return tb.Bind(ctx, "udp4", "127.0.0.1:0", "", nil, nil) }, 1},
		{"dial unicast, broadcast named", bcast, func(ctx context.Context) (Info, error) { return tb.Dial(ctx, "udp", "127.0.0.1:9", "", 0, "", nil) }, 0},
	} {
		in, err := tc.open(tc.ctx)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := soBroadcast(t, tb, tc.ctx, in.ID); got != tc.want {
			t.Errorf("%s: SO_BROADCAST %d, want %d", tc.name, got, tc.want)
		}
		if _, err := tb.Close(tc.ctx, in.ID); err != nil {
			t.Fatal(err)
		}
	}
}
