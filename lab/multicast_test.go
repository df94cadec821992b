//go:build linux

package lab_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"github.com/sockagent/sockagent/lab"
)

// labPolicy is the policy of the test labs' agents: the built-in one, plus the multicast
// groups the multicast tests and examples/multicast.yaml use, which a policy must name.
const labPolicy = `default:
  destinations:
    allow:
      - {name: anywhere}
      - {name: lab multicast, cidrs: [239.77.0.0/16, ff15::77:0/112]}
`

// labPolicyArgs writes labPolicy and returns the agent flags that load it.
func labPolicyArgs(t *testing.T) []string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(labPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--policy", p}
}

// testMulticast: on the lab's bridge, h1 and h2 join a group and h3 sends to it: both
// receive; after h2 leaves, only h1 does. For IPv4 (239.77.1.1) and IPv6 (ff15::77:1, sent
// from h3's link-local address).
func testMulticast(t *testing.T, l *lab.Lab, agents map[string]agentClient) {
	h1, h2, h3 := agents[l.Hosts[0].Name], agents[l.Hosts[1].Name], agents[l.Hosts[2].Name]
	for _, fam := range []struct{ network, any, group string }{
		{"udp4", "0.0.0.0", "239.77.1.1"},
		{"udp6", "[::]", "ff15::77:1"},
	} {
		t.Run(fam.network, func(t *testing.T) {
			const port = 47701
			addr := fmt.Sprintf("%s:%d", fam.any, port)
			bind := func(a agentClient, req *sockagentv1.BindRequest) *sockagentv1.Socket {
				t.Helper()
				r, err := a.sockets.Bind(ctxTimeout(t, 5*time.Second), req)
				if err != nil {
					t.Fatalf("%s: bind %s %s: %v", a.name, req.GetNetwork(), req.GetAddress(), err)
				}
				id := r.GetSocket().GetSocketId()
				t.Cleanup(func() { _, _ = a.sockets.Close(ctxTimeout(t, 5*time.Second), &sockagentv1.CloseRequest{SocketId: id}) })
				return r.GetSocket()
			}
			join := &sockagentv1.MulticastOptions{Groups: []string{fam.group}, Interface: "eth0"}
			r1 := bind(h1, &sockagentv1.BindRequest{Network: fam.network, Address: addr, Multicast: join})
			r2 := bind(h2, &sockagentv1.BindRequest{Network: fam.network, Address: addr, Multicast: join})
			if g := r2.GetMulticastGroups(); len(g) != 1 || g[0] != fam.group+"%eth0" {
				t.Errorf("h2's groups %v, want [%s%%eth0]", g, fam.group)
			}
			tx := bind(h3, &sockagentv1.BindRequest{Network: fam.network, Address: fmt.Sprintf("%s:0", fam.any),
				Multicast: &sockagentv1.MulticastOptions{Interface: "eth0"}, Options: &sockagentv1.SocketOptions{MulticastTtl: proto.Uint32(1)}})
			to := fmt.Sprintf("%s:%d", fam.group, port)
			if fam.network == "udp6" {
				to = fmt.Sprintf("[%s]:%d", fam.group, port)
			}
			send := func(msg string) {
				t.Helper()
				if _, err := h3.sockets.SendTo(ctxTimeout(t, 5*time.Second), &sockagentv1.SendToRequest{SocketId: tx.GetSocketId(), Address: to, Data: []byte(msg)}); err != nil {
					t.Fatalf("h3: sendto %s: %v", to, err)
				}
			}
			recv := func(a agentClient, id string, wait time.Duration) (string, error) {
				r, err := a.sockets.RecvFrom(ctxTimeout(t, wait+5*time.Second), &sockagentv1.RecvFromRequest{SocketId: id, Timeout: durationpb.New(wait)})
				return string(r.GetData()), err
			}
			// The bridge learns the members from their reports as they join: the first
			// datagrams may go before it has; send until both have one, bounded.
			got := map[string]bool{}
			for i := 0; i < 20 && len(got) < 2; i++ {
				send("hello group")
				for _, m := range []struct {
					a  agentClient
					id string
				}{{h1, r1.GetSocketId()}, {h2, r2.GetSocketId()}} {
					if got[m.a.name] {
						continue
					}
					if data, err := recv(m.a, m.id, 250*time.Millisecond); err == nil {
						if data != "hello group" {
							t.Fatalf("%s received %q, want %q", m.a.name, data, "hello group")
						}
						got[m.a.name] = true
					}
				}
			}
			if len(got) != 2 {
				t.Fatalf("after 20 sends, received by %v; want h1 and h2", got)
			}
			drain := func(a agentClient, id string) {
				for {
					if _, err := recv(a, id, 100*time.Millisecond); err != nil {
						return
					}
				}
			}
			drain(h1, r1.GetSocketId())
			drain(h2, r2.GetSocketId())
			// h2 leaves: the next datagram reaches h1 only.
			lr, err := h2.sockets.SetOptions(ctxTimeout(t, 5*time.Second), &sockagentv1.SetOptionsRequest{SocketId: r2.GetSocketId(), Leave: []string{fam.group + "%eth0"}})
			if err != nil {
				t.Fatal(err)
			}
			if g := lr.GetSocket().GetMulticastGroups(); len(g) != 0 {
				t.Errorf("h2's groups after leave: %v, want none", g)
			}
			send("after leave")
			if data, err := recv(h1, r1.GetSocketId(), 5*time.Second); err != nil || data != "after leave" {
				t.Errorf("h1 received %q, %v; want %q", data, err, "after leave")
			}
			t0 := time.Now()
			_, err = recv(h2, r2.GetSocketId(), time.Second)
			if status.Code(err) != codes.DeadlineExceeded {
				t.Errorf("h2 after leaving: %v, want DEADLINE_EXCEEDED (TIMEOUT)", err)
			}
			if d := time.Since(t0); d < 900*time.Millisecond || d > 4*time.Second {
				t.Errorf("h2's receive timed out after %s, want about 1s", d)
			}
		})
	}
}
