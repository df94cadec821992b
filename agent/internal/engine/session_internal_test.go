package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"reflect"
	"slices"
	"strconv"
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
	total, owned := tb.budget.sockets, tb.budget.of("token:alice").sockets
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
	in, err := tb.Listen(ctx, "tcp", "127.0.0.1:0", "", nil)
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

// request_ids are remembered per caller: another caller's maxRequests+1 requests do not push
// mine out of the memory (its own oldest is the one that goes), so my retry still gets the
// first result instead of opening a second socket.
func TestRequestIDsPerCaller(t *testing.T) {
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	alice := WithCaller(context.Background(), Caller{ID: "token:alice"})
	bob := WithCaller(context.Background(), Caller{ID: "token:bob"})
	runs := map[string]int{}
	open := func(ctx context.Context, id string) Info {
		t.Helper()
		in, err := tb.idempotent(ctx, "dial", id, func() (Info, error) {
			runs[CallerFrom(ctx).ID+"/"+id]++
			return Info{ID: "s-" + CallerFrom(ctx).ID + "-" + id}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	first := open(alice, "mine")
	for i := range maxRequests + 1 {
		open(bob, "b"+strconv.Itoa(i))
	}
	if again := open(alice, "mine"); !reflect.DeepEqual(again, first) || runs["token:alice/mine"] != 1 {
		t.Errorf("alice's retry after bob's %d requests: %s, ran %d times; want %s, run once", maxRequests+1, again.ID, runs["token:alice/mine"], first.ID)
	}
	// Bob's own memory is still bounded: his oldest request was forgotten, his newest kept.
	open(bob, "b0")
	open(bob, "b"+strconv.Itoa(maxRequests))
	if runs["token:bob/b0"] != 2 || runs["token:bob/b"+strconv.Itoa(maxRequests)] != 1 {
		t.Errorf("bob's oldest ran %d times (want 2: forgotten), newest %d (want 1: remembered)",
			runs["token:bob/b0"], runs["token:bob/b"+strconv.Itoa(maxRequests)])
	}
	tb.mu.Lock()
	n := len(tb.reqs["token:bob"].byID)
	tb.mu.Unlock()
	if n != maxRequests {
		t.Errorf("bob has %d request_ids remembered, want at most %d", n, maxRequests)
	}
}

// CloseOwner closes every socket of one owner, in a session or not, served or not, ends its
// sessions and forgets its request_ids; another owner's sockets stay, and a served echo stops
// answering.
func TestCloseOwnerSessionsServedRequests(t *testing.T) {
	var reclaimed []string
	tb := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20, OnReclaim: func(in Info, cause, why string) {
		reclaimed = append(reclaimed, in.Owner+" "+cause+" "+why)
	}})
	defer tb.Stop()
	alice := WithCaller(context.Background(), Caller{ID: "token:alice"})
	bob := WithCaller(context.Background(), Caller{ID: "token:bob"})
	si, err := tb.OpenSession(alice, time.Minute, "a")
	if err != nil {
		t.Fatal(err)
	}
	inSession, err := tb.Listen(WithSession(alice, si.ID), "tcp", "127.0.0.1:0", "r1", nil)
	if err != nil {
		t.Fatal(err)
	}
	served, err := tb.Listen(alice, "tcp", "127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Serve(alice, served.ID, BehaviourEcho, 0, 0); err != nil {
		t.Fatal(err)
	}
	echo, err := net.Dial("tcp", served.Local)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	if _, err := echo.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(echo, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("the echo before: %q %v", buf, err)
	}
	kept, err := tb.Listen(bob, "tcp", "127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}

	if n := tb.CloseOwner("token:alice", "token alice was revoked"); n != 2 {
		t.Errorf("CloseOwner closed %d sockets, want 2", n)
	}
	if tb.Len() != 1 || tb.NumSessions() != 0 {
		t.Errorf("after CloseOwner: %d sockets (want bob's 1), %d sessions (want 0)", tb.Len(), tb.NumSessions())
	}
	if _, err := tb.GetFor(bob, kept.ID); err != nil {
		t.Errorf("bob's socket: %v", err)
	}
	for _, id := range []string{inSession.ID, served.ID} {
		_, err := tb.GetFor(alice, id)
		if !errors.Is(err, ErrUnknownSocket) || !strings.Contains(err.Error(), "token alice was revoked") {
			t.Errorf("alice's %s after CloseOwner: %v, want UNKNOWN_SOCKET saying why", id, err)
		}
	}
	if want := []string{"token:alice revoked token alice was revoked", "token:alice revoked token alice was revoked"}; !slices.Equal(reclaimed, want) {
		t.Errorf("reclaimed %q, want %q", reclaimed, want)
	}
	_ = echo.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := echo.Write([]byte("y")); err == nil {
		if n, err := echo.Read(buf); err == nil {
			t.Errorf("the served echo still answers after CloseOwner: %q", buf[:n])
		}
	}
	tb.mu.Lock()
	_, remembered := tb.reqs["token:alice"]
	tb.mu.Unlock()
	if remembered {
		t.Error("alice's request_ids are still remembered")
	}
	if _, err := tb.Close(bob, kept.ID); err != nil {
		t.Error(err)
	}
}

// A request_id of exactly maxRequestID bytes is kept; one byte more is INVALID_ARGUMENT naming
// both lengths, and the call does not run.
func TestRequestIDLengthBoundary(t *testing.T) {
	t.Parallel()
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "a"})
	runs := 0
	call := func(id string) (Info, error) {
		return tb.idempotent(ctx, "dial", id, func() (Info, error) { runs++; return Info{ID: "s-1"}, nil })
	}
	if in, err := call(strings.Repeat("r", maxRequestID)); err != nil || in.ID != "s-1" || runs != 1 {
		t.Fatalf("a %d-byte request_id: %+v, %v, %d runs; want s-1 run once", maxRequestID, in, err, runs)
	}
	_, err := call(strings.Repeat("r", maxRequestID+1))
	if Reason(err) != contract.ReasonInvalidArgument || !strings.Contains(err.Error(), "dial: request_id is 129 bytes, at most 128") || runs != 1 {
		t.Errorf("a %d-byte request_id: %v after %d runs; want INVALID_ARGUMENT naming 129 and 128, not run", maxRequestID+1, err, runs)
	}
}

// TestAbandonedOpen: a socket opened for a caller that gave up before the answer came (the
// RPC cancelled as the socket was made) is closed by the agent, as abandoned: its id would
// reach nobody. With a request_id it stays, for the retry to get.
func TestAbandonedOpen(t *testing.T) {
	t.Parallel()
	rec := &reclaims{}
	tb := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20, OnReclaim: rec.note})
	defer tb.Stop()
	base := WithCaller(context.Background(), Caller{ID: "a"})
	open := func(requestID string) (Info, error) {
		ctx, cancel := context.WithCancel(base)
		defer cancel()
		return tb.idempotent(ctx, "Listen", requestID, func() (Info, error) {
			in, err := tb.listen(ctx, "tcp", "127.0.0.1:0", nil, nil)
			cancel() // the caller gives up as the socket is made
			return in, err
		})
	}
	in, err := open("")
	if !errors.Is(err, context.Canceled) || in.ID != "" {
		t.Fatalf("an abandoned Listen: %+v, %v; want no socket, context.Canceled", in, err)
	}
	if n := tb.Len(); n != 0 {
		t.Fatalf("%d sockets after an abandoned Listen, want 0", n)
	}
	got := rec.list()
	if len(got) != 1 || !strings.HasSuffix(got[0], " abandoned") {
		t.Fatalf("reclaimed %q, want one socket, abandoned", got)
	}
	id := strings.TrimSuffix(got[0], " abandoned")
	if _, err := tb.GetFor(base, id); !errors.Is(err, ErrUnknownSocket) || !strings.Contains(err.Error(), "its caller gave up before the answer came") {
		t.Errorf("a call on the abandoned socket: %v", err)
	}
	tb.mu.Lock()
	h := tb.budget.of("a")
	tb.mu.Unlock()
	if h != (holding{}) {
		t.Errorf("the caller holds %+v after the abandoned Listen, want nothing", h)
	}

	// With a request_id the socket stays: the retry gets it.
	first, err := open("r1")
	if err != nil || first.ID == "" || tb.Len() != 1 {
		t.Fatalf("a Listen with a request_id whose caller gave up: %+v, %v, %d sockets; want the socket", first, err, tb.Len())
	}
	again, err := tb.Listen(base, "tcp", "127.0.0.1:0", "r1", nil)
	if err != nil || again.ID != first.ID {
		t.Errorf("the retry: %+v, %v; want socket %s", again, err, first.ID)
	}
}
