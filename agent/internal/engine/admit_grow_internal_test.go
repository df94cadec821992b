package engine

import (
	"errors"
	"net"
	"testing"
)

// budgetOf reads what the agent, caller and session ss (nil: none) hold in bytes.
func budgetOf(tb *Table, caller string, ss *session) (agent, mine, sess int) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if ss != nil {
		sess = ss.bytes
	}
	return tb.budget.bytes, tb.budget.of(caller).bytes, sess
}

// TestAdmissionGrowShrink: an admission grows by bytes under the caller's limit (600 in
// admitPolicy: exactly 600 is taken, one byte more refused, naming limits.buffered_bytes),
// shrinks without going below nothing, gives everything back at release, and refuses to grow
// once released (net.ErrClosed) without counting anything.
func TestAdmissionGrowShrink(t *testing.T) {
	tb, set := admitTable(t)
	a, err := tb.admit("a", "", set, claim{sockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.grow(400); err != nil {
		t.Fatal(err)
	}
	if err := a.grow(200); err != nil {
		t.Fatalf("growing to exactly the caller's 600: %v", err)
	}
	if err := a.grow(1); limitOf(err) != "limits.buffered_bytes" {
		t.Errorf("a byte over the caller's 600: %v, want limits.buffered_bytes", err)
	}
	if ag, mine, _ := budgetOf(tb, "a", nil); ag != 600 || mine != 600 {
		t.Errorf("after growing by 600: agent %d, caller %d; want 600 and 600", ag, mine)
	}
	a.shrink(250)
	if ag, mine, _ := budgetOf(tb, "a", nil); ag != 350 || mine != 350 {
		t.Errorf("after shrinking by 250: agent %d, caller %d; want 350 and 350", ag, mine)
	}
	// Another caller's call sees the agent's 1000 less the 350 held.
	if _, err := tb.admit("b", "", set, claim{bytes: 651}); limitOf(err) != "agent_limits.buffered_bytes" {
		t.Errorf("651 bytes beside 350 held, over the agent's 1000: %v", err)
	}
	a.shrink(1000) // more than it holds: back to nothing, not below
	if ag, mine, _ := budgetOf(tb, "a", nil); ag != 0 || mine != 0 {
		t.Errorf("after shrinking by more than held: agent %d, caller %d; want 0 and 0", ag, mine)
	}
	if err := a.grow(100); err != nil {
		t.Fatal(err)
	}
	a.release()
	wantEmpty(t, tb, "grown admission released")
	if err := a.grow(1); !errors.Is(err, net.ErrClosed) {
		t.Errorf("grow after release: %v, want net.ErrClosed", err)
	}
	a.shrink(1)
	wantEmpty(t, tb, "grow and shrink after release")
}

// TestAdmissionGrowSession: a grown admission in a session counts against the session's
// buffered_bytes (500 in admitPolicy) and gives the session its bytes back.
func TestAdmissionGrowSession(t *testing.T) {
	tb, set := admitTable(t)
	ctx := WithCaller(t.Context(), Caller{ID: "a"})
	s1, err := tb.OpenSession(ctx, 60e9, "")
	if err != nil {
		t.Fatal(err)
	}
	a, err := tb.admit("a", s1.ID, set, claim{sockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.grow(500); err != nil {
		t.Fatalf("growing to exactly the session's 500: %v", err)
	}
	if err := a.grow(1); limitOf(err) != "session_limits.buffered_bytes" {
		t.Errorf("a byte over the session's 500: %v, want session_limits.buffered_bytes", err)
	}
	if ag, mine, sess := budgetOf(tb, "a", a.sess); ag != 500 || mine != 500 || sess != 500 {
		t.Errorf("agent %d, caller %d, session %d; want 500 each", ag, mine, sess)
	}
	a.shrink(200)
	if _, _, sess := budgetOf(tb, "a", a.sess); sess != 300 {
		t.Errorf("session holds %d after shrinking by 200, want 300", sess)
	}
	a.release()
	wantEmpty(t, tb, "session admission grown and released")
}
