package agent

import (
	"os"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/proto"
)

// GetInfo reads the hostname and interfaces once per HostInfoMaxAge and reuses them between.
func TestHostCacheMaxAge(t *testing.T) {
	var c hostCache
	t0 := time.Now()
	h1 := c.get(t0)
	host, _ := os.Hostname()
	if h1.hostname != host || len(h1.interfaces) == 0 {
		t.Fatalf("snapshot: hostname %q, %d interfaces; want %q and at least loopback", h1.hostname, len(h1.interfaces), host)
	}
	if h := c.get(h1.at.Add(HostInfoMaxAge - time.Millisecond)); h != h1 {
		t.Errorf("a snapshot younger than %s was read again", HostInfoMaxAge)
	}
	h2 := c.get(h1.at.Add(HostInfoMaxAge))
	if h2 == h1 {
		t.Fatalf("a snapshot %s old was reused", HostInfoMaxAge)
	}
	if h2.hostname != h1.hostname || len(h2.interfaces) != len(h1.interfaces) {
		t.Errorf("re-read: %q with %d interfaces, before %q with %d", h2.hostname, len(h2.interfaces), h1.hostname, len(h1.interfaces))
	}
	if h := c.get(h2.at.Add(-time.Millisecond)); h == h2 {
		t.Errorf("a snapshot from the future was reused")
	}
}

// TestGetInfoEncodedOnce: GetInfo's unchanging fields are encoded once per host snapshot and
// rule set, and sent beside the fields of the call: decoded, the answer equals the one built
// whole, its open_sockets and uptime are those of the moment (not of the first call), and
// process comes only when asked.
func TestGetInfoEncodedOnce(t *testing.T) {
	a, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	svc := &agentService{a: a}
	ctx := t.Context()
	decode := func(r *sockagentv1.GetInfoResponse) *sockagentv1.GetInfoResponse {
		t.Helper()
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var d sockagentv1.GetInfoResponse
		if err := proto.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		return &d
	}
	first, err := svc.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h := a.hostInfo.get(time.Now())
	want := a.staticInfo(h, infoKey{set: a.table.RuleSet(ctx), pol: a.table.Policy()})
	got := decode(first)
	if got.GetUptime() == nil || got.GetOpenSockets() != 0 || got.GetProcess() != nil {
		t.Errorf("first answer: uptime %v, %d sockets, process %v; want an uptime, 0, none", got.GetUptime(), got.GetOpenSockets(), got.GetProcess())
	}
	up := got.GetUptime().AsDuration()
	got.Uptime = nil
	if !proto.Equal(got, want) {
		t.Fatalf("decoded answer\n%v\nwant\n%v", got, want)
	}

	lis, err := a.table.Listen(ctx, "tcp", "127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.table.Close(ctx, lis.ID)
	second, err := svc.GetInfo(ctx, &sockagentv1.GetInfoRequest{Process: true})
	if err != nil {
		t.Fatal(err)
	}
	if a.hostInfo.get(time.Now()) != h {
		t.Skip("the host snapshot was renewed between the calls (a second passed)")
	}
	got2 := decode(second)
	if got2.GetOpenSockets() != 1 || got2.GetProcess() == nil || got2.GetUptime().AsDuration() <= up {
		t.Errorf("second answer: %d sockets, process %v, uptime %v; want 1, the process, more than %v",
			got2.GetOpenSockets(), got2.GetProcess(), got2.GetUptime().AsDuration(), up)
	}
	if n := countEncoded(h); n != 1 {
		t.Errorf("%d encodings kept for one rule set, want 1", n)
	}
}

func countEncoded(h *hostSnapshot) int {
	n := 0
	h.encoded.Range(func(any, any) bool { n++; return true })
	return n
}
