package engine

import (
	"context"
	"errors"
	"net"
	"strings"
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

// TestStoppingIsNotARestart: once the agent stops, a call on a socket id it had answers
// AGENT_STOPPING, never UNKNOWN_SOCKET with its "the agent restarted" hint.
func TestStoppingIsNotARestart(t *testing.T) {
	tb := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20, Instance: "i1"})
	ctx := WithCaller(context.Background(), Caller{ID: "token:alice"})
	in, err := tb.Listen(ctx, "tcp", "127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	tb.Stop()
	for name, call := range map[string]func() error{
		"get":   func() error { _, err := tb.GetFor(ctx, in.ID); return err },
		"close": func() error { _, err := tb.Close(ctx, in.ID); return err },
		"recv":  func() error { _, _, err := tb.Recv(ctx, in.ID, 0, 0, time.Second); return err },
	} {
		err := call()
		if r := Reason(err); r != contract.ReasonAgentStopping || strings.Contains(err.Error(), "restarted") {
			t.Errorf("%s after Stop: %s %v; want AGENT_STOPPING without a restart hint", name, r, err)
		}
	}
}
