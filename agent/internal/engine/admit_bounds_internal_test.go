package engine

import (
	"errors"
	"testing"
)

// TestAdmitNoBytesNeverRefusedForBytes: a claim that holds no bytes (a Dial, an Accept) is not
// refused because bytes are over a budget: the agent's, while bytes left over from interrupted
// exact reads briefly push it over, or the caller's, after a policy reload lowered it below
// what the caller's calls in progress hold.
func TestAdmitNoBytesNeverRefusedForBytes(t *testing.T) {
	tb, set := admitTable(t)
	held, err := tb.admit("a", "", set, claim{bytes: 500})
	if err != nil {
		t.Fatal(err)
	}
	lowered := *set
	lowered.Limits.BufferedBytes = 100
	for _, c := range []claim{{sockets: 1}, {blocking: true}, {blocking: true, waits: true}} {
		a, err := tb.admit("a", "", &lowered, c)
		if err != nil {
			t.Errorf("%+v with 500 bytes held over the caller's lowered 100: %v", c, err)
			continue
		}
		a.release()
	}
	if _, err := tb.admit("a", "", &lowered, claim{bytes: 1}); limitOf(err) != "limits.buffered_bytes" {
		t.Errorf("a byte over the lowered limit: %v, want limits.buffered_bytes", err)
	}
	tb.leftover.Store(600) // 500 held + 600 left over: over the agent's 1000
	for _, c := range []claim{{sockets: 1}, {blocking: true}} {
		a, err := tb.admit("b", "", set, c)
		if err != nil {
			t.Errorf("%+v with the agent's bytes over budget: %v", c, err)
			continue
		}
		a.release()
	}
	tb.leftover.Store(0)
	held.release()
	wantEmpty(t, tb, "no bytes")
}

func limitOf(err error) string {
	var le *limitError
	if errors.As(err, &le) {
		return le.Limit
	}
	return ""
}

// TestAdmitBytesRefusalText: the agent-wide refusal for bytes names what holds them, and
// mentions bytes left over from exact reads only when there are some.
func TestAdmitBytesRefusalText(t *testing.T) {
	tb, set := admitTable(t)
	a, err := tb.admit("a", "", set, claim{bytes: 500})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tb.admit("b", "", set, claim{bytes: 450})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tb.admit("c", "", set, claim{bytes: 51})
	want := "limit agent_limits.buffered_bytes (1000) exceeded: the agent holds 950 bytes for calls in progress and this call needs 51; wait for some to end"
	if err == nil || err.Error() != want {
		t.Errorf("refusal:\n %v\nwant\n %s", err, want)
	}
	c, err := tb.admit("c", "", set, claim{bytes: 50})
	if err != nil {
		t.Errorf("50 bytes beside 950, exactly the agent's 1000: %v", err)
	} else {
		c.release()
	}
	a.release()
	b.release()
	wantEmpty(t, tb, "refusal text")
}

// TestReleaseKeepsRegisteredSlots: a release frees only the socket slots its call did not fill
// with registered sockets; the kept ones stay counted, for the caller, the agent and the
// session, until those sockets close.
func TestReleaseKeepsRegisteredSlots(t *testing.T) {
	tb, set := admitTable(t)
	ctx := WithCaller(t.Context(), Caller{ID: "a"})
	s1, err := tb.OpenSession(ctx, 60e9, "")
	if err != nil {
		t.Fatal(err)
	}
	other, err := tb.admit("a", s1.ID, set, claim{sockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	a, err := tb.admit("a", s1.ID, set, claim{sockets: 2})
	if err == nil {
		t.Fatal("3 sockets in a session of 2 admitted")
	}
	if a, err = tb.admit("a", "", set, claim{sockets: 2}); err != nil {
		t.Fatal(err)
	}
	a.kept = 1 // as Table.add does for a socket it registers
	a.release()
	tb.mu.Lock()
	sockets, mine, sess := tb.budget.sockets, tb.budget.of("a").sockets, tb.sessions[s1.ID].socks
	tb.mu.Unlock()
	if sockets != 2 || mine != 2 || sess != 1 {
		t.Errorf("after a release keeping 1 of 2 slots beside another socket: agent %d, caller %d, session %d; want 2, 2, 1", sockets, mine, sess)
	}
	tb.mu.Lock()
	tb.freeSocketsLocked("a", nil, 1) // the kept socket closes
	tb.mu.Unlock()
	other.release()
	wantEmpty(t, tb, "kept slots")
}
