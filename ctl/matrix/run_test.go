package matrix

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/localagent"
)

// TestRun: three in-process agents, a TCP and a UDP service: every cell open, measured, and
// every socket the run opened closed at the end. A fourth agent that does not answer makes
// its row and column agent-unavailable; a target whose port is taken makes that service's
// column an error with the agent's reason.
func TestRun(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())
	// A remote (not "local") agent on this host serves the file's ports as written.
	remote, err := localagent.Start(agent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()

	f := mustParse(t, `
agents: {a: local, b: local, c: local}
services:
  web: {network: tcp, port: `+busyPort+`}
  log: {network: udp, port: 5514}
sources: [all]
targets: [all]
expect: {default: open}
probe: {timeout: 500ms, spacing: 50ms}
`)
	agents := append(f.Agents, Agent{Name: "r", Address: remote.Addr()}, Agent{Name: "z", Address: deadAddr})
	plan, err := Expand(f, agents)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	res := Run(ctx, Config{Plan: plan, Probe: f.Probe, StartLocal: localagent.StartHook, Agents: map[string]Target{"z": {Addr: deadAddr}}, ConnectTimeout: time.Second})
	// z's address refuses at once (no waiting out ConnectTimeout), then the sweeps.
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("run took %s, want at most 5s", el)
	}
	if len(res.Cells) != 2*5*4 {
		t.Fatalf("%d cells, want 40", len(res.Cells))
	}
	counts := checkRunCells(t, res.Cells, busyPort)
	// 4 x 3 x 2 = 24 cells among a, b, c, r; 3 of them to r's web; 16 to or from z.
	if counts["open"] != 21 || counts["error"] != 3 || counts["agent-unavailable"] != 16 || res.Mismatches() != 19 {
		t.Errorf("verdicts %v, mismatches %d", counts, res.Mismatches())
	}
	if len(res.Unreachable) != 1 || res.Unreachable["z"] == "" {
		t.Errorf("unreachable %v, want z", res.Unreachable)
	}
	// a, b, c serve web and log; r only log (web's port is taken): 7 sockets, all closed.
	if res.Closed != 7 || res.Left != 0 {
		t.Errorf("cleanup: %d closed, %d left; want 7, 0", res.Closed, res.Left)
	}
	if n := remote.NumSockets(); n != 0 {
		t.Errorf("%d sockets left on the remote agent", n)
	}
}

// checkRunCells checks each cell of TestRun and counts the verdicts.
func checkRunCells(t *testing.T, cells []Cell, busyPort string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, c := range cells {
		switch {
		case c.Source == "z" || c.Target == "z":
			if c.Verdict != AgentUnavailable || c.Reason != contract.ReasonAgentUnavailable || !strings.Contains(c.Message, "z: ") {
				t.Errorf("%s -> %s %s: %s %s %q, want agent-unavailable", c.Source, c.Target, c.Service, c.Verdict, c.Reason, c.Message)
			}
		case c.Target == "r" && c.Service == "web":
			if c.Verdict != Error || c.Reason != contract.ReasonAddressInUse || !strings.Contains(c.Message, "target r: listen web tcp on 127.0.0.1:"+busyPort) {
				t.Errorf("%s -> r web: %s %s %q, want error ADDRESS_IN_USE", c.Source, c.Verdict, c.Reason, c.Message)
			}
		default:
			if c.Verdict != Open || c.RTT <= 0 || c.RTT > time.Second || c.Attempts != 1 || c.Address == "" || !c.OK() {
				t.Errorf("%s -> %s %s: %+v, want open", c.Source, c.Target, c.Service, c)
			}
		}
		counts[string(c.Verdict)]++
	}
	return counts
}

func TestHostOf(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{"10.0.0.1:7700": "10.0.0.1", "[::1]:7700": "::1", "unix:/run/a.sock": "127.0.0.1", "127.0.0.1:1": "127.0.0.1"} {
		if got := hostOf(addr); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestRunDefaults: without ConnectTimeout, Parallel and SessionTTL the run takes the defaults
// (a zero would refuse every agent at once).
func TestRunDefaults(t *testing.T) {
	t.Parallel()
	f := mustParse(t, "agents: {a: local, b: local}\nservices: {web: {network: tcp, port: 80}}\nsources: [all]\ntargets: [all]\nexpect: {}\n")
	plan, err := Expand(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := Run(context.Background(), Config{Plan: plan, StartLocal: localagent.StartHook})
	if res.Mismatches() != 0 || len(res.Cells) != 2 || res.Closed != 2 {
		t.Errorf("%+v", res)
	}
}
