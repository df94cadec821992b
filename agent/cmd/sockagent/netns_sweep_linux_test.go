package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"github.com/sockagent/sockagent/lab/labtest"
)

// TestNetnsSweep: one Sweep, from an agent in a namespace of the test's own, sees every
// verdict from the network itself: served TCP and UDP ports open, a TCP port behind an
// nftables drop filtered and one behind a reject closed, a UDP port behind a drop filtered and
// one behind a reject (ICMP port unreachable) closed, a route marked unreachable and a network
// with no route unreachable.
func TestNetnsSweep(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("nft"); err != nil {
		labtest.SkipOutsideCI(t, "nft not installed (.ci/run installs nftables)")
	}
	ns := newNetns(t)
	ipCmd(t, "-n", ns, "route", "add", "unreachable", "10.213.7.0/24")
	sock := filepath.Join(shortTempDir(t), "a.sock")
	p := start(t, "ip", "netns", "exec", ns, sockagentBin, "--listen", "unix:"+sock)
	sc := p.sockets()

	// Every port has a served socket, so a refusal or silence can only come from the rules.
	var ids []string
	for _, s := range []struct{ network, port string }{
		{"tcp", "9011"}, {"tcp", "9012"}, {"tcp", "9013"}, {"udp", "9014"}, {"udp", "9015"}, {"udp", "9016"},
	} {
		var id string
		if s.network == "tcp" {
			r, err := sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:" + s.port})
			if err != nil {
				t.Fatal(err)
			}
			id = r.GetSocket().GetSocketId()
		} else {
			r, err := sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:" + s.port})
			if err != nil {
				t.Fatal(err)
			}
			id = r.GetSocket().GetSocketId()
		}
		ids = append(ids, id)
		if _, err := sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: id, Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO}); err != nil {
			t.Fatal(err)
		}
	}
	rules := filepath.Join(shortTempDir(t), "rules.nft")
	if err := os.WriteFile(rules, []byte(`table inet satest {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 9012 drop
		tcp dport 9013 reject with tcp reset
		udp dport 9015 drop
		udp dport 9016 reject with icmpx port-unreachable
	}
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ipCmd(t, "netns", "exec", ns, "nft", "-f", rules)

	want := []struct {
		network, addr string
		verdict       sockagentv1.SweepVerdict
		reason        string
		attempts      uint32
	}{
		{"tcp", "127.0.0.1:9011", sockagentv1.SweepVerdict_SWEEP_VERDICT_OPEN, "", 1},
		{"tcp", "127.0.0.1:9012", sockagentv1.SweepVerdict_SWEEP_VERDICT_FILTERED, contract.ReasonTimeout, 2},
		{"tcp", "127.0.0.1:9013", sockagentv1.SweepVerdict_SWEEP_VERDICT_CLOSED, contract.ReasonConnectionRefused, 1},
		{"udp", "127.0.0.1:9014", sockagentv1.SweepVerdict_SWEEP_VERDICT_OPEN, "", 1},
		{"udp", "127.0.0.1:9015", sockagentv1.SweepVerdict_SWEEP_VERDICT_FILTERED, contract.ReasonTimeout, 2},
		{"udp", "127.0.0.1:9016", sockagentv1.SweepVerdict_SWEEP_VERDICT_CLOSED, contract.ReasonConnectionRefused, 1},
		{"tcp", "10.213.7.1:80", sockagentv1.SweepVerdict_SWEEP_VERDICT_UNREACHABLE, contract.ReasonHostUnreachable, 2},
		{"tcp", "10.213.99.1:80", sockagentv1.SweepVerdict_SWEEP_VERDICT_UNREACHABLE, contract.ReasonNetworkUnreachable, 2},
	}
	req := &sockagentv1.SweepRequest{Timeout: durationpb.New(300 * time.Millisecond), Spacing: durationpb.New(100 * time.Millisecond)}
	for _, w := range want {
		req.Targets = append(req.Targets, &sockagentv1.SweepTarget{Network: w.network, Address: w.addr, Id: w.network + " " + w.addr})
	}
	start := time.Now()
	st, err := sockagentv1.NewMeasureServiceClient(p.conn).Sweep(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32]*sockagentv1.SweepResponse{}
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[r.GetIndex()] = r
	}
	// Two 300ms timeouts and a 100ms pause for the drops, all targets at once.
	if el := time.Since(start); el < 700*time.Millisecond || el > 3*time.Second {
		t.Errorf("sweep took %s, want [700ms, 3s]", el)
	}
	for i, w := range want {
		r := got[uint32(i)]
		if r.GetVerdict() != w.verdict || r.GetReason() != w.reason || r.GetAttempts() != w.attempts || r.GetId() != w.network+" "+w.addr {
			t.Errorf("%s %s: %v %q after %d attempts (%s), want %v %q after %d", w.network, w.addr, r.GetVerdict(), r.GetReason(), r.GetAttempts(), r.GetMessage(), w.verdict, w.reason, w.attempts)
		}
	}
	for _, id := range ids {
		if _, err := sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: id}); err != nil {
			t.Errorf("close %s: %v", id, err)
		}
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}
