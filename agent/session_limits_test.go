package agent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/codes"
)

// session_limits bound each session: its open sockets, the blocking calls made in it or on its
// sockets, and the bytes those calls hold; sockets outside the session are not counted.
func TestSessionLimits(t *testing.T) {
	t.Parallel()
	p, err := policy.Parse("p.yaml", []byte("default: {session_limits: {sockets: 2, blocking_calls: 1, buffered_bytes: 100}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newSessEnv(t, agent.Config{Policy: p})
	ctx := ctxT(t)
	s := e.open(t, ctx, time.Minute)
	sctx := inSess(ctx, s.GetSessionId())
	listen := func() error {
		r, err := e.sc.Listen(sctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
		if err == nil {
			e.closeAtEnd(t, r.GetSocket().GetSocketId())
		}
		return err
	}

	// Sockets: two in the session, the third refused; one outside it is not counted.
	l1 := e.listenCtx(t, sctx)
	l2 := e.listenCtx(t, sctx)
	err = listen()
	wantLimit(t, err, "session_limits.sockets", 2)
	wantStatus(t, err, codes.ResourceExhausted, contract.ReasonLimitExceeded,
		fmt.Sprintf("session %s has 2 open sockets", s.GetSessionId()))
	e.listenCtx(t, ctx)
	// Closing one frees its slot.
	if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: l2.GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	r, err := e.sc.Dial(sctx, &sockagentv1.DialRequest{Network: "tcp", Address: l1.GetLocalAddress()})
	if err != nil {
		t.Fatalf("dial in the session after a close: %v", err)
	}
	c := r.GetSocket().GetSocketId()
	e.closeAtEnd(t, c)
	if err := listen(); err == nil || !strings.Contains(err.Error(), "session_limits.sockets") {
		t.Errorf("third socket after the dial: %v, want session_limits.sockets", err)
	}

	// Buffered bytes: a Send of 101 bytes on the session's socket is over 100, 100 is not.
	_, err = e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: c, Data: make([]byte, 101)})
	wantLimit(t, err, "session_limits.buffered_bytes", 100)
	wantStatus(t, err, codes.ResourceExhausted, contract.ReasonLimitExceeded, "this call needs 101")
	if _, err := e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: c, Data: make([]byte, 100)}); err != nil {
		t.Fatalf("send of 100 bytes: %v", err)
	}

	// Blocking calls: one Recv in progress on the session's socket, a second refused.
	release := e.blockRecvs(t, c, 1, 10)
	_, err = e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: c, MaxBytes: 10, Timeout: dur(time.Second)})
	wantLimit(t, err, "session_limits.blocking_calls", 1)
	wantStatus(t, err, codes.ResourceExhausted, contract.ReasonLimitExceeded,
		fmt.Sprintf("session %s has 1 blocking calls in progress", s.GetSessionId()))
	release()
	// Once it ended, the next is let through (and times out: nobody sends).
	_, err = e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: c, MaxBytes: 10, Timeout: dur(time.Millisecond)})
	wantStatus(t, err, codes.DeadlineExceeded, contract.ReasonTimeout)
}
