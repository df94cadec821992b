package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

func TestCheckSweep(t *testing.T) {
	t.Parallel()
	tcp := SweepTarget{Network: "tcp", Address: "127.0.0.1:80"}
	sp := SweepSpec{Targets: []SweepTarget{tcp, {Network: "udp", Address: "[::1]:53", ID: strings.Repeat("x", 256)}}}
	if err := checkSweep(&sp); err != nil {
		t.Fatal(err)
	}
	if sp.Concurrency != 2 || sp.Attempts != 2 || sp.Timeout != time.Second || sp.Spacing != 100*time.Millisecond || sp.Pace != 0 {
		t.Errorf("defaults: %+v", sp)
	}
	if sp.Targets[0].Mode != ProbeConnect || sp.Targets[1].Mode != ProbeEcho || sp.resolved[0].String() != "127.0.0.1:80" || sp.resolved[1].Network() != "udp" {
		t.Errorf("targets %+v resolved %v", sp.Targets, sp.resolved)
	}
	ok := func(f func(*SweepSpec)) SweepSpec {
		s := SweepSpec{Targets: []SweepTarget{tcp, tcp, tcp}}
		f(&s)
		return s
	}
	good := []SweepSpec{
		ok(func(s *SweepSpec) {
			s.Concurrency, s.Attempts, s.Timeout, s.Spacing, s.Pace = 1024, 10, time.Minute, 10*time.Second, 5
		}),
		ok(func(s *SweepSpec) {
			s.Concurrency, s.Attempts, s.Timeout, s.Spacing = 1, 2, time.Millisecond, time.Millisecond
		}),
		ok(func(s *SweepSpec) { s.Targets = make([]SweepTarget, MaxSweepTargets); fillTargets(s.Targets, tcp) }),
		ok(func(s *SweepSpec) {
			s.Targets[0] = SweepTarget{Network: "tcp4", Address: "[::ffff:127.0.0.1]:1", Mode: ProbeEcho}
		}),
		ok(func(s *SweepSpec) { s.Targets[0] = SweepTarget{Network: "udp6", Address: "[::1]:1", Mode: ProbeEcho} }),
	}
	for i, s := range good {
		want := s.Concurrency
		if err := checkSweep(&s); err != nil {
			t.Errorf("good %d: %v", i, err)
		}
		if want != 0 && s.Concurrency != min(want, len(s.Targets)) {
			t.Errorf("good %d: concurrency %d", i, s.Concurrency)
		}
	}
	bad := []struct {
		s      SweepSpec
		reason string
		msg    string
	}{
		{SweepSpec{}, contract.ReasonInvalidArgument, "sweep: 0 targets; give 1 up to 10000"},
		{ok(func(s *SweepSpec) { s.Targets = make([]SweepTarget, MaxSweepTargets+1); fillTargets(s.Targets, tcp) }), contract.ReasonInvalidArgument, "10001 targets"},
		{ok(func(s *SweepSpec) { s.Concurrency = -1 }), contract.ReasonInvalidArgument, "concurrency -1 out of range"},
		{ok(func(s *SweepSpec) { s.Concurrency = 1025 }), contract.ReasonInvalidArgument, "concurrency 1025 out of range"},
		{ok(func(s *SweepSpec) { s.Attempts = 1 }), contract.ReasonInvalidArgument, "attempts 1 out of range"},
		{ok(func(s *SweepSpec) { s.Attempts = 11 }), contract.ReasonInvalidArgument, "attempts 11 out of range"},
		{ok(func(s *SweepSpec) { s.Timeout = -1 }), contract.ReasonInvalidArgument, "timeout -1ns out of range"},
		{ok(func(s *SweepSpec) { s.Timeout = time.Minute + 1 }), contract.ReasonInvalidArgument, "timeout 1m0.000000001s out of range"},
		{ok(func(s *SweepSpec) { s.Spacing = -1 }), contract.ReasonInvalidArgument, "spacing -1ns out of range"},
		{ok(func(s *SweepSpec) { s.Spacing = 10*time.Second + 1 }), contract.ReasonInvalidArgument, "spacing 10.000000001s out of range"},
		{ok(func(s *SweepSpec) { s.Pace = -1 }), contract.ReasonInvalidArgument, "pace -1 is negative"},
		{ok(func(s *SweepSpec) { s.Targets[2].ID = strings.Repeat("x", 257) }), contract.ReasonInvalidArgument, "target 2: id is 257 bytes long"},
		{ok(func(s *SweepSpec) { s.Targets[1].Network = "unixgram" }), contract.ReasonInvalidNetwork, "target 1: probe: network \"unixgram\" not allowed"},
		{ok(func(s *SweepSpec) { s.Targets[1].Address = "localhost:80" }), contract.ReasonInvalidAddress, "target 1: address \"localhost:80\" is not IP:PORT"},
		{ok(func(s *SweepSpec) { s.Targets[1].Address = "127.0.0.1:0" }), contract.ReasonInvalidAddress, "address \"127.0.0.1:0\""},
		{ok(func(s *SweepSpec) { s.Targets[1] = SweepTarget{Network: "tcp4", Address: "[::1]:1"} }), contract.ReasonInvalidAddress, "is not IPv4, which network tcp4 needs"},
		{ok(func(s *SweepSpec) { s.Targets[1] = SweepTarget{Network: "tcp6", Address: "127.0.0.1:1"} }), contract.ReasonInvalidAddress, "is not IPv6, which network tcp6 needs"},
		{ok(func(s *SweepSpec) {
			s.Targets[1] = SweepTarget{Network: "udp", Address: "127.0.0.1:1", Mode: ProbeConnect}
		}), contract.ReasonInvalidArgument, "mode connect needs a tcp network"},
		{ok(func(s *SweepSpec) { s.Targets[1].Mode = 7 }), contract.ReasonInvalidArgument, "mode 7 unknown"},
	}
	for _, c := range bad {
		err := checkSweep(&c.s)
		if err == nil || Reason(err) != c.reason || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: got %v (%s), want %s", c.msg, err, Reason(err), c.reason)
		}
	}
}

func fillTargets(ts []SweepTarget, t SweepTarget) {
	for i := range ts {
		ts[i] = t
	}
}

func TestSweepVerdict(t *testing.T) {
	t.Parallel()
	op := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	cases := []struct {
		err   error
		v     Verdict
		final bool
	}{
		{nil, VerdictOpen, true},
		{os.ErrDeadlineExceeded, VerdictFiltered, false},
		{context.DeadlineExceeded, VerdictFiltered, false},
		{op(syscall.ECONNREFUSED), VerdictClosed, true},
		{op(syscall.EHOSTUNREACH), VerdictUnreachable, false},
		{op(syscall.ENETUNREACH), VerdictUnreachable, false},
		{op(syscall.ETIMEDOUT), VerdictFiltered, false},
		{op(syscall.ECONNRESET), VerdictError, true},
		{errEchoMismatch, VerdictError, true},
	}
	for _, c := range cases {
		if v, final := sweepVerdict(c.err); v != c.v || final != c.final {
			t.Errorf("%v: %v final %v, want %v %v", c.err, v, final, c.v, c.final)
		}
	}
}

func TestSweepPaceCap(t *testing.T) {
	t.Parallel()
	tb := &Table{}
	if got := tb.sweepPace(0); got != DefaultMaxSweepPace {
		t.Errorf("no cap, pace 0: %d", got)
	}
	tb.maxSweepPace = 50
	for asked, want := range map[int]int{0: 50, 1: 1, 49: 49, 50: 50, 51: 50, 1 << 30: 50} {
		if got := tb.sweepPace(asked); got != want {
			t.Errorf("cap 50, asked %d: %d, want %d", asked, got, want)
		}
	}
}

func TestPacer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	far := time.Now().Add(time.Hour)
	pc := newPacer(20) // 50ms apart
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	start := time.Now()
	for _, x := range []netip.Addr{a, a, b, a, b, c} {
		if err := pc.wait(ctx, x, far); err != nil {
			t.Fatal(err)
		}
	}
	// a at once, b 50ms later, c 100ms later; repeats wait for nothing.
	if el := time.Since(start); el < 100*time.Millisecond || el > 600*time.Millisecond {
		t.Errorf("three new addresses at 20/s: %s, want [100ms, 600ms]", el)
	}
	// A slot past the end is refused at once.
	pc = newPacer(1)
	_ = pc.wait(ctx, a, far)
	start = time.Now()
	if err := pc.wait(ctx, b, time.Now().Add(500*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 100*time.Millisecond {
		t.Errorf("slot after the end: %v after %s", err, time.Since(start))
	}
	// A cancelled wait ends with the cancellation.
	cctx, cancel := context.WithCancel(ctx)
	pc = newPacer(1)
	_ = pc.wait(ctx, a, far)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if err := pc.wait(cctx, b, far); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// sweepTable is a Table with the default policy and a caller.
func sweepTable(t *testing.T) (*Table, context.Context) {
	t.Helper()
	tb := newTable(time.Second, 1<<20, policy.Default())
	t.Cleanup(tb.Stop)
	return tb, WithCaller(context.Background(), Caller{ID: "anonymous"})
}

// TestTableSweep: verdicts and their order of arrival on loopback, the emit error ending the
// sweep, the deadline leaving unfinished targets out, and the admission given back.
func TestTableSweep(t *testing.T) {
	t.Parallel()
	tb, ctx := sweepTable(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	sp := SweepSpec{Targets: []SweepTarget{
		{Network: "tcp", Address: lis.Addr().String(), ID: "open"},
		{Network: "tcp", Address: closedAddr, ID: "closed"},
		{Network: "udp", Address: silent.LocalAddr().String(), ID: "silent"},
	}, Timeout: 100 * time.Millisecond, Spacing: 300 * time.Millisecond, Attempts: 3}
	var got []SweepCell
	start := time.Now()
	if err := tb.Sweep(ctx, sp, func(c SweepCell) error { got = append(got, c); return nil }); err != nil {
		t.Fatal(err)
	}
	// Three 100ms timeouts and a 300ms pause between each two (none before the first, none
	// after the last): 900ms.
	if el := time.Since(start); el < 900*time.Millisecond || el > 1150*time.Millisecond {
		t.Errorf("took %s, want [900ms, 1.15s]: three 100ms timeouts and two 300ms pauses", el)
	}
	want := map[string]string{"open": "1 <nil> 1", "closed": "2 CONNECTION_REFUSED 1", "silent": "3 TIMEOUT 3"}
	if len(got) != 3 {
		t.Fatalf("%d cells", len(got))
	}
	for _, c := range got {
		s := fmt.Sprintf("%d %s %d", c.Verdict, c.Reason, c.Attempts)
		if c.Reason == "" {
			s = fmt.Sprintf("%d <nil> %d", c.Verdict, c.Attempts)
		}
		if s != want[c.ID] || c.Remote != sp.Targets[c.Index].Address || c.ID != sp.Targets[c.Index].ID {
			t.Errorf("%s: %s (%+v), want %s", c.ID, s, c, want[c.ID])
		}
		if (c.Verdict == VerdictOpen) != (c.RTT > 0) || (c.Verdict == VerdictOpen) != (c.Message == "") || (c.Verdict != VerdictClosed) != (c.Local != "") {
			t.Errorf("%s: rtt %s message %q local %q", c.ID, c.RTT, c.Message, c.Local)
		}
	}
	// The closed and open ones come first: no waiting behind the silent one.
	if got[2].ID != "silent" {
		t.Errorf("order %s, %s, %s: the silent target should be last", got[0].ID, got[1].ID, got[2].ID)
	}
	if b := tb.budget; b.calls != 0 || b.sockets != 0 || b.bytes != 0 {
		t.Errorf("budget after the sweep: %+v", b)
	}

	// An emit error ends the sweep with it, at once.
	boom := errors.New("stream broken")
	sp.Concurrency = 1
	start = time.Now()
	n := 0
	err = tb.Sweep(ctx, sp, func(SweepCell) error { n++; return boom })
	if !errors.Is(err, boom) || n != 1 || time.Since(start) > 300*time.Millisecond {
		t.Errorf("emit error: %v after %d cells, %s", err, n, time.Since(start))
	}

	// At the deadline, unfinished targets are left out and the sweep returns without error:
	// the silent ones' second attempts are cut short by the sweep's end.
	dctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	got = nil
	sp.Concurrency, sp.Attempts, sp.Timeout, sp.Spacing = 3, 2, 200*time.Millisecond, 10*time.Millisecond
	sp.Targets[1] = sp.Targets[2]
	err = tb.Sweep(dctx, sp, func(c SweepCell) error { got = append(got, c); return nil })
	if err != nil || len(got) != 1 || got[0].ID != "open" {
		t.Errorf("deadline: %v, %d cells %+v; want only the open one", err, len(got), got)
	}
	// Cancelled: the cancellation.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := tb.Sweep(cctx, sp, func(SweepCell) error { return nil }); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if b := tb.budget; b.calls != 0 || b.sockets != 0 || b.bytes != 0 {
		t.Errorf("budget after the sweeps: %+v", b)
	}
}

// TestTableSweepAdmission: one claim for the whole sweep: a blocking call, a socket per
// concurrent target and their echo buffers, held while it runs.
func TestTableSweepAdmission(t *testing.T) {
	t.Parallel()
	tb, ctx := sweepTable(t)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	sp := SweepSpec{Concurrency: 3, Timeout: 200 * time.Millisecond}
	for range 5 {
		sp.Targets = append(sp.Targets, SweepTarget{Network: "udp", Address: silent.LocalAddr().String()})
	}
	first := true
	err = tb.Sweep(ctx, sp, func(SweepCell) error {
		if first {
			first = false
			tb.mu.Lock()
			b := tb.budget
			tb.mu.Unlock()
			if b.calls != 1 || b.sockets != 3 || b.bytes != 3*2*sweepSize || b.of("anonymous").sockets != 3 {
				t.Errorf("while sweeping: %+v, want 1 call, 3 sockets, %d bytes", b, 3*2*sweepSize)
			}
		}
		return nil
	})
	if err != nil || first {
		t.Fatalf("%v (emitted: %v)", err, !first)
	}
	// Denied by the policy: nothing is tried, nothing admitted.
	p, err := policy.Parse("p.yaml", []byte("default: {destinations: {deny: [{name: no, cidrs: [127.0.0.0/8]}]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tb.policy = p
	err = tb.Sweep(ctx, sp, func(SweepCell) error { t.Error("a denied target was tried"); return nil })
	if Reason(err) != contract.ReasonPolicyDenied || !strings.Contains(err.Error(), "target 0") {
		t.Errorf("denied: %v", err)
	}
}
