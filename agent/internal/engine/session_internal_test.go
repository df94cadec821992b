package engine

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
)

// A socket whose session ended while it was being opened (a Dial or Accept still waiting when
// the lease expired) is closed at once and its slot freed: it never outlives its session.
func TestAddRefusesEndedSession(t *testing.T) {
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "token:alice"})
	si, err := tb.OpenSession(ctx, time.Minute, "t")
	if err != nil {
		t.Fatal(err)
	}
	_, set := tb.who(ctx)
	adm, err := tb.admit("token:alice", si.ID, set, claim{sockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tb.CloseSession(ctx, si.ID); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sock{owner: "token:alice", session: si.ID, network: "tcp", kind: KindListener, ln: ln}
	err = tb.add(s, adm)
	adm.release()
	if !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("add into a closed session: %v, want ErrUnknownSession", err)
	}
	if reason := Reason(err); reason != contract.ReasonUnknownSession {
		t.Errorf("reason %s, want UNKNOWN_SESSION", reason)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the listener is still open: %v", err)
	}
	tb.mu.Lock()
	total, owned := tb.budget.sockets, tb.budget.socketsBy["token:alice"]
	tb.mu.Unlock()
	if total != 0 || owned != 0 || tb.Len() != 0 {
		t.Errorf("slots total %d, owned %d, sockets %d after the refusal; want none", total, owned, tb.Len())
	}
	// Another caller's live session is refused the same way.
	other, err := tb.OpenSession(WithCaller(context.Background(), Caller{ID: "token:bob"}), time.Minute, "b")
	if err != nil {
		t.Fatal(err)
	}
	adm2, err := tb.admit("token:alice", "", set, claim{sockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer adm2.release()
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.add(&sock{owner: "token:alice", session: other.ID, network: "tcp", kind: KindListener, ln: ln2}, adm2); !errors.Is(err, ErrUnknownSession) {
		t.Errorf("add into another caller's session: %v", err)
	}
}
