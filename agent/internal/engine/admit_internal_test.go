package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/policy"
)

// admitPolicy has small limits, each smaller than the one above it, so every limit can be
// reached on its own.
const admitPolicy = `agent_limits: {sockets: 5, blocking_calls: 8, buffered_bytes: 1000}
default:
  limits: {sockets: 3, blocking_calls: 4, buffered_bytes: 600, sessions: 4}
  session_limits: {sockets: 2, blocking_calls: 3, buffered_bytes: 500}
`

func admitTable(t *testing.T) (*Table, *policy.RuleSet) {
	t.Helper()
	p, err := policy.Parse("admit.yaml", []byte(admitPolicy))
	if err != nil {
		t.Fatal(err)
	}
	tb := newTable(time.Second, 1<<20, p)
	t.Cleanup(tb.Stop)
	return tb, p.Default
}

// fill admits c for caller in sess until refused; it returns the admissions and the limit the
// refusal named.
func fill(t *testing.T, tb *Table, set *policy.RuleSet, caller, sess string, c claim) ([]*admission, string) {
	t.Helper()
	var got []*admission
	for range 100 {
		a, err := tb.admit(caller, sess, set, c)
		if err != nil {
			var le *limitError
			if !errors.As(err, &le) {
				t.Fatalf("refusal %v is not a limit", err)
			}
			return got, le.Limit
		}
		got = append(got, a)
	}
	t.Fatalf("%+v: 100 admitted, no limit", c)
	return nil, ""
}

func releaseAll(as []*admission) {
	for _, a := range as {
		a.release()
	}
}

// TestAdmitLimits: each limit admits exactly up to its value and refuses the next claim naming
// it, counted per caller, per session and agent-wide, and a release gives back exactly what
// was taken (the budget is empty again, twice released or not).
func TestAdmitLimits(t *testing.T) {
	tb, set := admitTable(t)
	ctx := WithCaller(context.Background(), Caller{ID: "a"})
	s1, err := tb.OpenSession(ctx, time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, caller, sess string
		c                  claim
		n                  int
		limit              string
	}{
		{"caller calls", "a", "", claim{blocking: true}, 4, "limits.blocking_calls"},
		{"caller waits", "a", "", claim{blocking: true, waits: true}, 3, "limits.blocking_calls"},
		{"session calls", "a", s1.ID, claim{blocking: true}, 3, "session_limits.blocking_calls"},
		{"session waits", "a", s1.ID, claim{blocking: true, waits: true}, 3, "session_limits.blocking_calls"},
		{"caller bytes", "a", "", claim{bytes: 150}, 4, "limits.buffered_bytes"},
		{"session bytes", "a", s1.ID, claim{bytes: 100}, 5, "session_limits.buffered_bytes"},
		{"agent bytes in one call", "a", "", claim{bytes: 1001}, 0, "agent_limits.buffered_bytes"},
		{"caller sockets", "a", "", claim{sockets: 1}, 3, "limits.sockets"},
		{"session sockets", "a", s1.ID, claim{sockets: 1}, 2, "session_limits.sockets"},
		{"two sockets at once", "a", "", claim{sockets: 2}, 1, "limits.sockets"},
	} {
		got, limit := fill(t, tb, set, tc.caller, tc.sess, tc.c)
		if len(got) != tc.n || limit != tc.limit {
			t.Errorf("%s: %d admitted, then %s; want %d, then %s", tc.name, len(got), limit, tc.n, tc.limit)
		}
		releaseAll(got)
		releaseAll(got) // twice: nothing more given back
		wantEmpty(t, tb, tc.name)
	}
}

// TestAdmitAgentWide: the agent-wide limits count every caller together, and a caller's own
// limit is never the agent's.
func TestAdmitAgentWide(t *testing.T) {
	tb, set := admitTable(t)
	var held []*admission
	// a reaches its own 4; b's 4 fill the agent's 8, so b's 5th names the agent's limit
	// (checked first).
	for _, w := range []struct{ who, limit string }{{"a", "limits.blocking_calls"}, {"b", "agent_limits.blocking_calls"}} {
		got, limit := fill(t, tb, set, w.who, "", claim{blocking: true})
		if len(got) != 4 || limit != w.limit {
			t.Errorf("%s: %d calls then %s, want 4 then %s", w.who, len(got), limit, w.limit)
		}
		held = append(held, got...)
	}
	if _, limit := fill(t, tb, set, "c", "", claim{blocking: true}); limit != "agent_limits.blocking_calls" {
		t.Errorf("the 9th call: %s, want agent_limits.blocking_calls", limit)
	}
	// Waiting calls hold at most 6 of the agent's 8: while a and b hold 3 waits each, c (with
	// calls of its own to spare) is refused a wait, and granted a call that does not wait.
	releaseAll(held)
	held = nil
	for _, who := range []string{"a", "b"} {
		got, _ := fill(t, tb, set, who, "", claim{blocking: true, waits: true})
		held = append(held, got...)
	}
	if _, limit := fill(t, tb, set, "c", "", claim{blocking: true, waits: true}); limit != "agent_limits.blocking_calls" {
		t.Errorf("a wait past 6 of 8: %s, want agent_limits.blocking_calls", limit)
	}
	if a, err := tb.admit("c", "", set, claim{blocking: true}); err != nil {
		t.Errorf("a call that does not wait, with 6 of 8 held: %v", err)
	} else {
		a.release()
	}
	releaseAll(held)
	held = nil
	got, _ := fill(t, tb, set, "a", "", claim{sockets: 1})
	held = append(held, got...)
	if got, limit := fill(t, tb, set, "b", "", claim{sockets: 1}); len(got) != 2 || limit != "agent_limits.sockets" {
		t.Errorf("b's sockets beside a's 3: %d then %s, want 2 then agent_limits.sockets", len(got), limit)
	} else {
		held = append(held, got...)
	}
	releaseAll(held)
	// Bytes: two callers of 500 fill the agent's 1000; a third byte is refused agent-wide.
	a1, err := tb.admit("a", "", set, claim{bytes: 500})
	if err != nil {
		t.Fatal(err)
	}
	b1, err := tb.admit("b", "", set, claim{bytes: 500})
	if err != nil {
		t.Fatal(err)
	}
	if _, limit := fill(t, tb, set, "c", "", claim{bytes: 1}); limit != "agent_limits.buffered_bytes" {
		t.Errorf("a byte past 1000: %s, want agent_limits.buffered_bytes", limit)
	}
	a1.release()
	b1.release()
	wantEmpty(t, tb, "agent-wide")
}

// TestAdmitLeftover: bytes kept from interrupted exact reads count against every call but a
// Recv (drains), which is what takes them.
func TestAdmitLeftover(t *testing.T) {
	tb, set := admitTable(t)
	tb.leftover.Store(900)
	if _, err := tb.admit("a", "", set, claim{bytes: 101}); err == nil {
		t.Error("101 bytes beside 900 left over admitted, want agent_limits.buffered_bytes")
	}
	a, err := tb.admit("a", "", set, claim{bytes: 100})
	if err != nil {
		t.Fatalf("100 bytes beside 900 left over: %v", err)
	}
	a.release()
	r, err := tb.admit("a", "", set, claim{bytes: 500, drains: true})
	if err != nil {
		t.Fatalf("a Recv is not refused for the bytes it drains: %v", err)
	}
	r.release()
	tb.leftover.Store(0)
	wantEmpty(t, tb, "leftover")
}

func wantEmpty(t *testing.T, tb *Table, what string) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	b := tb.budget
	if b.calls != 0 || b.bytes != 0 || b.sockets != 0 || b.waits != 0 ||
		len(b.by) != 0 {
		t.Errorf("%s: budget %+v after every release, want empty", what, b)
	}
	for _, s := range tb.sessions {
		if s.calls != 0 || s.bytes != 0 || s.socks != 0 || s.waits != 0 {
			t.Errorf("%s: session %s holds calls %d bytes %d sockets %d waits %d after every release", what, s.id, s.calls, s.bytes, s.socks, s.waits)
		}
	}
}

// TestAdmitAgentBytesBoundary: a caller whose own share is larger than the agent's budget is
// still held to the agent's: a call of exactly the budget is admitted, one byte more is not,
// and a refusal for bytes left over from interrupted exact reads says so.
func TestAdmitAgentBytesBoundary(t *testing.T) {
	p, err := policy.Parse("admit.yaml", []byte("agent_limits: {buffered_bytes: 1000}\ndefault: {limits: {buffered_bytes: 5000}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tb := newTable(time.Second, 1<<20, p)
	defer tb.Stop()
	set := p.Default
	a, err := tb.admit("a", "", set, claim{bytes: 1000})
	if err != nil {
		t.Fatalf("a call of exactly the agent's 1000 bytes: %v", err)
	}
	a.release()
	if _, limit := fill(t, tb, set, "a", "", claim{bytes: 1001}); limit != "agent_limits.buffered_bytes" {
		t.Errorf("1001 bytes: %s, want agent_limits.buffered_bytes", limit)
	}
	tb.leftover.Store(10)
	_, err = tb.admit("a", "", set, claim{bytes: 991})
	if err == nil || !strings.Contains(err.Error(), "and 10 left over from interrupted exact reads") {
		t.Errorf("991 bytes beside 10 left over: %v, want a refusal naming the 10 left over", err)
	}
	tb.leftover.Store(0)
	wantEmpty(t, tb, "boundary")
}
