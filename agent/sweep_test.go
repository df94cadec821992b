package agent_test

// Tests of MeasureService.Sweep on loopback: each verdict from a real socket in the state it
// names (filtered: a UDP socket that never answers), the retries and their spacing, the
// concurrency bound, pacing, validation and policy. A firewall's drop and reject, and an
// unreachable host, are tested in namespaces: agent/cmd/sockagent/netns_sweep_linux_test.go.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/codes"
)

// sweep runs r and returns the results by index, and the wall time of the whole call.
func (e *env) sweep(t *testing.T, r *sockagentv1.SweepRequest) (map[uint32]*sockagentv1.SweepResponse, time.Duration, error) {
	t.Helper()
	start := time.Now()
	st, err := e.mc().Sweep(ctxT(t), r)
	if err != nil {
		return nil, 0, err
	}
	out := map[uint32]*sockagentv1.SweepResponse{}
	for {
		res, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, time.Since(start), nil
		}
		if err != nil {
			return out, time.Since(start), err
		}
		if _, dup := out[res.GetIndex()]; dup {
			t.Errorf("target %d reported twice", res.GetIndex())
		}
		out[res.GetIndex()] = res
	}
}

// silentUDP is a UDP socket of the test that never reads: datagrams to it vanish, as behind a
// firewall's drop.
func silentUDP(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}

func TestSweepVerdicts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tcpEcho := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, tcpEcho.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	udpEcho := e.bind(t, "udp", "127.0.0.1:0")
	e.serve(t, udpEcho.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	const timeout, spacing = 150 * time.Millisecond, 100 * time.Millisecond

	cases := []struct {
		tg      *sockagentv1.SweepTarget
		verdict sockagentv1.SweepVerdict
		reason  string
		tries   uint32
	}{
		{&sockagentv1.SweepTarget{Network: "tcp", Address: tcpEcho.GetLocalAddress(), Id: "tcp-open"}, sockagentv1.SweepVerdict_SWEEP_VERDICT_OPEN, "", 1},
		{&sockagentv1.SweepTarget{Network: "tcp4", Address: tcpEcho.GetLocalAddress(), Id: "tcp-echo", Mode: sockagentv1.ProbeMode_PROBE_MODE_ECHO}, sockagentv1.SweepVerdict_SWEEP_VERDICT_OPEN, "", 1},
		{&sockagentv1.SweepTarget{Network: "udp", Address: udpEcho.GetLocalAddress(), Id: "udp-open"}, sockagentv1.SweepVerdict_SWEEP_VERDICT_OPEN, "", 1},
		{&sockagentv1.SweepTarget{Network: "tcp", Address: closedPort(t, "tcp"), Id: "tcp-closed"}, sockagentv1.SweepVerdict_SWEEP_VERDICT_CLOSED, contract.ReasonConnectionRefused, 1},
		{&sockagentv1.SweepTarget{Network: "udp", Address: closedPort(t, "udp"), Id: "udp-closed"}, sockagentv1.SweepVerdict_SWEEP_VERDICT_CLOSED, contract.ReasonConnectionRefused, 1},
		{&sockagentv1.SweepTarget{Network: "udp", Address: silentUDP(t), Id: "udp-filtered"}, sockagentv1.SweepVerdict_SWEEP_VERDICT_FILTERED, contract.ReasonTimeout, 3},
	}
	req := &sockagentv1.SweepRequest{Timeout: dur(timeout), Spacing: dur(spacing), Attempts: 3, Concurrency: uint32(len(cases))}
	for _, c := range cases {
		req.Targets = append(req.Targets, c.tg)
	}
	res, took, err := e.sweep(t, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(cases) {
		t.Fatalf("%d results, want %d: %v", len(res), len(cases), res)
	}
	for i, c := range cases {
		r := res[uint32(i)]
		if r.GetId() != c.tg.GetId() || r.GetVerdict() != c.verdict || r.GetReason() != c.reason || r.GetAttempts() != c.tries {
			t.Errorf("%s: %v %q after %d attempts (%s); want %v %q after %d", c.tg.GetId(), r.GetVerdict(), r.GetReason(), r.GetAttempts(), r.GetMessage(), c.verdict, c.reason, c.tries)
		}
		if r.GetRemoteAddress() != c.tg.GetAddress() {
			t.Errorf("%s: remote %q, want %q", c.tg.GetId(), r.GetRemoteAddress(), c.tg.GetAddress())
		}
		rtt := r.GetRtt().AsDuration()
		if open := c.verdict == sockagentv1.SweepVerdict_SWEEP_VERDICT_OPEN; open != (rtt > 0) || rtt > timeout {
			t.Errorf("%s: rtt %s, want (0, %s] when open and 0 otherwise", c.tg.GetId(), rtt, timeout)
		}
		if (c.reason == "") != (r.GetMessage() == "") {
			t.Errorf("%s: message %q with reason %q", c.tg.GetId(), r.GetMessage(), c.reason)
		}
	}
	// A filtered target took three timeouts and two pauses; the targets ran at once.
	if lo, hi := 3*timeout+2*spacing, 3*timeout+2*spacing+time.Second; took < lo || took > hi {
		t.Errorf("sweep took %s, want [%s, %s]", took, lo, hi)
	}
}

// TestSweepConcurrency: four silent targets take one round at concurrency 4, two at 2, four
// at 1 (each a filtered verdict of two timeouts and a pause).
func TestSweepConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const timeout, spacing = 100 * time.Millisecond, 50 * time.Millisecond
	per := 2*timeout + spacing
	var targets []*sockagentv1.SweepTarget
	for range 4 {
		targets = append(targets, &sockagentv1.SweepTarget{Network: "udp", Address: silentUDP(t)})
	}
	for _, conc := range []uint32{4, 2, 1} {
		res, took, err := e.sweep(t, &sockagentv1.SweepRequest{Targets: targets, Concurrency: conc, Timeout: dur(timeout), Spacing: dur(spacing)})
		if err != nil {
			t.Fatal(err)
		}
		rounds := time.Duration(4 / conc)
		if lo, hi := rounds*per, rounds*per+per/2+300*time.Millisecond; took < lo || took > hi {
			t.Errorf("concurrency %d: %s, want [%s, %s]", conc, took, lo, hi)
		}
		for i, r := range res {
			if r.GetVerdict() != sockagentv1.SweepVerdict_SWEEP_VERDICT_FILTERED || r.GetAttempts() != 2 {
				t.Errorf("concurrency %d: target %d %v after %d attempts, want filtered after 2", conc, i, r.GetVerdict(), r.GetAttempts())
			}
		}
		if len(res) != 4 {
			t.Errorf("concurrency %d: %d results, want 4", conc, len(res))
		}
	}
}

// TestSweepPace: first contacts to new addresses are spaced by the pace, capped by the agent's
// MaxSweepPace; more ports of an address already contacted are not.
func TestSweepPace(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, agent.Config{MaxSweepPace: 20})
	_, port, _ := net.SplitHostPort(closedPort(t, "tcp"))
	targets := func(addrs int, samePorts int) []*sockagentv1.SweepTarget {
		var out []*sockagentv1.SweepTarget
		for i := range addrs {
			for p := range samePorts {
				out = append(out, &sockagentv1.SweepTarget{Network: "tcp", Address: fmt.Sprintf("127.0.0.%d:%s", 2+i, portPlus(port, p))})
			}
		}
		return out
	}
	cases := []struct {
		name           string
		addrs, ports   int
		pace           uint32
		lo, hi         time.Duration
		wantedAllClose bool
	}{
		// 5 addresses at 20/s: the 5th starts 200ms after the first. Asking for more gets the cap.
		{"capped", 5, 1, 1000, 200 * time.Millisecond, 700 * time.Millisecond, true},
		{"default is the cap", 5, 1, 0, 200 * time.Millisecond, 700 * time.Millisecond, true},
		// At 10/s, 400ms.
		{"slower", 5, 1, 10, 400 * time.Millisecond, 900 * time.Millisecond, true},
		// One address, 8 ports: one first contact.
		{"one address", 1, 8, 10, 0, 300 * time.Millisecond, true},
	}
	for _, c := range cases {
		res, took, err := e.sweep(t, &sockagentv1.SweepRequest{Targets: targets(c.addrs, c.ports), Pace: c.pace, Concurrency: 16})
		if err != nil {
			t.Fatal(err)
		}
		if took < c.lo || took > c.hi {
			t.Errorf("%s: %s, want [%s, %s]", c.name, took, c.lo, c.hi)
		}
		if len(res) != c.addrs*c.ports {
			t.Errorf("%s: %d results, want %d", c.name, len(res), c.addrs*c.ports)
		}
		for i, r := range res {
			if r.GetVerdict() != sockagentv1.SweepVerdict_SWEEP_VERDICT_CLOSED {
				t.Errorf("%s: target %d %v %s, want closed", c.name, i, r.GetVerdict(), r.GetMessage())
			}
		}
	}
}

func portPlus(port string, n int) string {
	var p int
	fmt.Sscan(port, &p)
	return fmt.Sprint(p + n)
}

func TestSweepRefusals(t *testing.T) {
	t.Parallel()
	e := polEnv(t, `
default:
  destinations:
    allow: [{name: loopback, cidrs: [127.0.0.0/8]}]
    deny: [{name: not 127.0.0.9, cidrs: [127.0.0.9/32]}]
  limits: {sockets: 8}
`, false)
	lis := e.listen(t, "tcp", "127.0.0.1:0")
	ok := &sockagentv1.SweepTarget{Network: "tcp", Address: lis.GetLocalAddress()}
	many := make([]*sockagentv1.SweepTarget, 10_001)
	for i := range many {
		many[i] = ok
	}
	cases := []struct {
		name   string
		req    *sockagentv1.SweepRequest
		code   codes.Code
		reason string
		msg    string
	}{
		{"no targets", &sockagentv1.SweepRequest{}, codes.InvalidArgument, contract.ReasonInvalidArgument, "0 targets; give 1 up to 10000"},
		{"too many", &sockagentv1.SweepRequest{Targets: many}, codes.InvalidArgument, contract.ReasonInvalidArgument, "10001 targets; give at most 10000"},
		{"a name", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{ok, {Network: "tcp", Address: "localhost:80"}}}, codes.InvalidArgument, contract.ReasonInvalidAddress, "target 1: address \"localhost:80\" is not IP:PORT"},
		{"port 0", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{{Network: "udp", Address: "127.0.0.1:0"}}}, codes.InvalidArgument, contract.ReasonInvalidAddress, "target 0: address \"127.0.0.1:0\""},
		{"v6 on tcp4", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{{Network: "tcp4", Address: "[::1]:80"}}}, codes.InvalidArgument, contract.ReasonInvalidAddress, "is not IPv4, which network tcp4 needs"},
		{"v4 on udp6", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{{Network: "udp6", Address: "127.0.0.1:80"}}}, codes.InvalidArgument, contract.ReasonInvalidAddress, "is not IPv6, which network udp6 needs"},
		{"unix", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{{Network: "unix", Address: "/tmp/x"}}}, codes.InvalidArgument, contract.ReasonInvalidNetwork, "target 0: probe: network \"unix\" not allowed"},
		{"connect over udp", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{{Network: "udp", Address: "127.0.0.1:9", Mode: sockagentv1.ProbeMode_PROBE_MODE_CONNECT}}}, codes.InvalidArgument, contract.ReasonInvalidArgument, "mode connect needs a tcp network"},
		{"unknown mode", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{{Network: "tcp", Address: "127.0.0.1:9", Mode: 99}}}, codes.InvalidArgument, contract.ReasonInvalidArgument, "target 0: mode 99 unknown"},
		{"long id", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{{Network: "tcp", Address: "127.0.0.1:9", Id: strings.Repeat("x", 257)}}}, codes.InvalidArgument, contract.ReasonInvalidArgument, "id is 257 bytes long; give at most 256"},
		{"one attempt", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{ok}, Attempts: 1}, codes.InvalidArgument, contract.ReasonInvalidArgument, "attempts 1 out of range; give 0 (2) or 2 up to 10"},
		{"eleven attempts", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{ok}, Attempts: 11}, codes.InvalidArgument, contract.ReasonInvalidArgument, "attempts 11 out of range"},
		{"concurrency", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{ok}, Concurrency: 1025}, codes.InvalidArgument, contract.ReasonInvalidArgument, "concurrency 1025 out of range; give 0 (32) up to 1024"},
		{"timeout", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{ok}, Timeout: dur(time.Minute + time.Millisecond)}, codes.InvalidArgument, contract.ReasonInvalidArgument, "timeout 1m0.001s out of range; give 0 (1s) up to 1m0s"},
		{"spacing", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{ok}, Spacing: dur(11 * time.Second)}, codes.InvalidArgument, contract.ReasonInvalidArgument, "spacing 11s out of range; give 0 (100ms) up to 10s"},
		{"denied", &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{ok, ok, {Network: "tcp", Address: "127.0.0.9:80"}}}, codes.PermissionDenied, contract.ReasonPolicyDenied, "sweep tcp 127.0.0.9:80: target 2: destination 127.0.0.9:80 denied by"},
		// 7 of the 8 sockets are free (the listener holds one): 8 targets at once do not fit.
		{"sockets", &sockagentv1.SweepRequest{Targets: many[:8], Concurrency: 8}, codes.ResourceExhausted, contract.ReasonLimitExceeded, "lower the sweep's concurrency, 8"},
	}
	for _, c := range cases {
		_, _, err := e.sweep(t, c.req)
		wantStatus(t, err, c.code, c.reason, c.msg)
	}
	// Concurrency above the targets is lowered to them: 7 targets at "32" fit in 7 sockets.
	res, _, err := e.sweep(t, &sockagentv1.SweepRequest{Targets: many[:7]})
	if err != nil || len(res) != 7 {
		t.Fatalf("7 targets: %d results, %v", len(res), err)
	}
	var ids []int
	for i, r := range res {
		if r.GetVerdict() != sockagentv1.SweepVerdict_SWEEP_VERDICT_OPEN {
			t.Errorf("target %d: %v, want open", i, r.GetVerdict())
		}
		ids = append(ids, int(i))
	}
	sort.Ints(ids)
	if fmt.Sprint(ids) != "[0 1 2 3 4 5 6]" {
		t.Errorf("indexes %v", ids)
	}
}
