package agent_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// sessEnv is an env with a SessionService client.
type sessEnv struct {
	*env
	ss sockagentv1.SessionServiceClient
}

func newSessEnv(t *testing.T, cfg agent.Config) *sessEnv {
	t.Helper()
	e := newEnvWith(t, cfg)
	return &sessEnv{env: e, ss: sockagentv1.NewSessionServiceClient(e.conn)}
}

func (e *sessEnv) open(t *testing.T, ctx context.Context, ttl time.Duration) *sockagentv1.Session {
	t.Helper()
	r, err := e.ss.OpenSession(ctx, &sockagentv1.OpenSessionRequest{Ttl: dur(ttl), Name: t.Name()})
	if err != nil {
		t.Fatalf("open session: %v", err)
	}
	return r.GetSession()
}

// inSess returns ctx sending the session header.
func inSess(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, contract.SessionHeader, id)
}

// waitGone polls until GetSocket of every id answers NOT_FOUND.
func (e *env) waitGone(t *testing.T, ctx context.Context, within time.Duration, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, id := range ids {
		for {
			_, err := e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: id})
			if status.Code(err) == codes.NotFound {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("socket %s still open after %s (err %v)", id, within, err)
			}
			time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
		}
	}
}

func TestSessionLeaseExpiryClosesSockets(t *testing.T) {
	t.Parallel()
	e := newSessEnv(t, agent.Config{})
	ctx := ctxT(t)
	opened := time.Now()
	s := e.open(t, ctx, time.Second)
	if s.GetTtl().AsDuration() != time.Second || s.GetOwner() != "anonymous" || s.GetSessionId() == "" {
		t.Fatalf("session %v", s)
	}
	sctx := inSess(ctx, s.GetSessionId())
	lr, err := e.sc.Listen(sctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	lis := lr.GetSocket()
	if lis.GetSessionId() != s.GetSessionId() {
		t.Fatalf("listener session_id %q, want %q", lis.GetSessionId(), s.GetSessionId())
	}
	// A blocked Accept on a session's socket returns when the lease expires.
	accepted := make(chan error, 1)
	go func() {
		_, err := e.sc.Accept(sctx, &sockagentv1.AcceptRequest{SocketId: lis.GetSocketId(), Timeout: dur(15 * time.Second)})
		accepted <- err
	}()
	e.waitPending(t, lis.GetSocketId(), 1)
	select {
	case err := <-accepted:
		wantStatus(t, err, codes.Aborted, contract.ReasonSocketClosed, "lease of session "+s.GetSessionId()+" expired")
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still blocked 10s after the session's 1s lease")
	}
	// The lease ends one TTL after the session opened: not before, and not much after.
	if el := time.Since(opened); el < time.Second || el > 1700*time.Millisecond {
		t.Errorf("the 1s lease ended %s after the session opened; want 1s to 1.7s", el)
	}
	e.waitGone(t, ctx, time.Second, lis.GetSocketId())
	_, err = e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: lis.GetSocketId()})
	wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSocket, "the agent closed it: the lease of session "+s.GetSessionId()+" expired")
	_, err = e.ss.KeepAlive(ctx, &sockagentv1.KeepAliveRequest{SessionId: s.GetSessionId()})
	wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSession, s.GetSessionId())
	_, err = e.sc.Listen(sctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSession, s.GetSessionId())
	if n := e.a.NumSessions(); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

func TestSessionKeepAliveAndClose(t *testing.T) {
	t.Parallel()
	e := newSessEnv(t, agent.Config{})
	ctx := ctxT(t)
	s := e.open(t, ctx, time.Second)
	sctx := inSess(ctx, s.GetSessionId())
	lr, err := e.sc.Listen(sctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	lis := lr.GetSocket()
	dr, err := e.sc.Dial(sctx, &sockagentv1.DialRequest{Network: "tcp", Address: lis.GetLocalAddress()})
	if err != nil {
		t.Fatal(err)
	}
	// Accept without the header: the connection joins the listener's session.
	ar, err := e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: lis.GetSocketId()})
	if err != nil {
		t.Fatal(err)
	}
	if ar.GetSocket().GetSessionId() != s.GetSessionId() {
		t.Errorf("accepted socket's session_id %q, want the listener's %q", ar.GetSocket().GetSessionId(), s.GetSessionId())
	}
	// Kept alive for 2.5 lease lengths, the sockets stay.
	end := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(end) {
		kr, err := e.ss.KeepAlive(ctx, &sockagentv1.KeepAliveRequest{SessionId: s.GetSessionId()})
		if err != nil {
			t.Fatalf("keepalive: %v", err)
		}
		if got := kr.GetSession().GetSockets(); got != 3 {
			t.Fatalf("session has %d sockets, want 3", got)
		}
		time.Sleep(200 * time.Millisecond) // the client's keepalive period
	}
	ls, err := e.sc.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
	if err != nil || len(ls.GetSockets()) != 3 {
		t.Fatalf("list: %d sockets, %v; want 3", len(ls.GetSockets()), err)
	}
	sl, err := e.ss.ListSessions(ctx, &sockagentv1.ListSessionsRequest{})
	if err != nil || len(sl.GetSessions()) != 1 || sl.GetSessions()[0].GetName() != t.Name() {
		t.Fatalf("list sessions: %v, %v", sl, err)
	}
	// A blocked Recv on a session's socket returns when the session is closed.
	recvd := make(chan error, 1)
	go func() {
		_, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: dr.GetSocket().GetSocketId(), Timeout: dur(15 * time.Second)})
		recvd <- err
	}()
	e.waitPending(t, dr.GetSocket().GetSocketId(), 1)
	cr, err := e.ss.CloseSession(ctx, &sockagentv1.CloseSessionRequest{SessionId: s.GetSessionId()})
	if err != nil {
		t.Fatal(err)
	}
	if cr.GetClosedSockets() != 3 {
		t.Errorf("closed_sockets %d, want 3", cr.GetClosedSockets())
	}
	wantStatus(t, <-recvd, codes.Aborted, contract.ReasonSocketClosed, "session "+s.GetSessionId()+" was closed")
	if n := e.a.NumSockets(); n != 0 {
		t.Errorf("%d sockets left after CloseSession", n)
	}
	_, err = e.ss.CloseSession(ctx, &sockagentv1.CloseSessionRequest{SessionId: s.GetSessionId()})
	wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSession)
}

func TestSessionBelongsToItsCaller(t *testing.T) {
	t.Parallel()
	toks, err := agent.ParseTokens(strings.NewReader(polTokens))
	if err != nil {
		t.Fatal(err)
	}
	e := newSessEnv(t, agent.Config{Tokens: toks})
	alice, bob := polAs(t, "alice"), polAs(t, "bob")
	s := e.open(t, alice, time.Minute)
	if s.GetOwner() != "token:alice" {
		t.Errorf("owner %q", s.GetOwner())
	}
	for name, err := range map[string]error{
		"keepalive": errOf(e.ss.KeepAlive(bob, &sockagentv1.KeepAliveRequest{SessionId: s.GetSessionId()})),
		"close":     errOf(e.ss.CloseSession(bob, &sockagentv1.CloseSessionRequest{SessionId: s.GetSessionId()})),
		"listen":    errOf(e.sc.Listen(inSess(bob, s.GetSessionId()), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})),
	} {
		t.Run(name, func(t *testing.T) {
			wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSession, "unknown session")
		})
	}
	if l, err := e.ss.ListSessions(bob, &sockagentv1.ListSessionsRequest{}); err != nil || len(l.GetSessions()) != 0 {
		t.Errorf("bob lists %v, %v; want none", l, err)
	}
	if _, err := e.ss.CloseSession(alice, &sockagentv1.CloseSessionRequest{SessionId: s.GetSessionId()}); err != nil {
		t.Errorf("alice closes her session: %v", err)
	}
}

func TestSessionTTLBounds(t *testing.T) {
	t.Parallel()
	e := newSessEnv(t, agent.Config{})
	ctx := ctxT(t)
	for _, ttl := range []time.Duration{500 * time.Millisecond, -time.Second, 25 * time.Hour} {
		_, err := e.ss.OpenSession(ctx, &sockagentv1.OpenSessionRequest{Ttl: dur(ttl)})
		wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "ttl")
	}
	r, err := e.ss.OpenSession(ctx, &sockagentv1.OpenSessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.GetSession().GetTtl().AsDuration(); got != agent.DefaultSessionTTL {
		t.Errorf("default ttl %s, want %s", got, agent.DefaultSessionTTL)
	}
	if _, err := e.ss.CloseSession(ctx, &sockagentv1.CloseSessionRequest{SessionId: r.GetSession().GetSessionId()}); err != nil {
		t.Fatal(err)
	}
}

func TestIdleReaping(t *testing.T) {
	t.Parallel()
	const idle = 200 * time.Millisecond
	e := newSessEnv(t, agent.Config{IdleTimeout: idle})
	ctx := ctxT(t)
	s := e.open(t, ctx, time.Minute)
	inSession := e.listenCtx(t, inSess(ctx, s.GetSessionId()))
	busy := e.listenCtx(t, ctx)
	idleOne := e.listenCtx(t, ctx)
	// A pending Accept is activity: busy is never reaped while it waits.
	accepted := make(chan error, 1)
	go func() {
		_, err := e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: busy.GetSocketId(), Timeout: dur(15 * time.Second)})
		accepted <- err
	}()
	e.waitPending(t, busy.GetSocketId(), 1)
	l, err := e.sc.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range l.GetSockets() {
		if k.GetAge() == nil || k.GetIdle() == nil || k.GetLastUsedAt() == nil {
			t.Errorf("socket %s lacks age, idle or last_used_at: %v", k.GetSocketId(), k)
		}
		if k.GetSocketId() == busy.GetSocketId() && k.GetIdle().AsDuration() != 0 {
			t.Errorf("socket with a pending call shows idle %s, want 0", k.GetIdle().AsDuration())
		}
	}
	e.waitGone(t, ctx, 10*time.Second, idleOne.GetSocketId())
	_, err = e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: idleOne.GetSocketId(), Data: []byte("x")})
	wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSocket, "the agent closed it: idle for the agent's idle timeout (200ms)")
	// The idle socket is gone; the others have been unused as long and are still here.
	for _, k := range []*sockagentv1.Socket{inSession, busy} {
		if _, err := e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: k.GetSocketId()}); err != nil {
			t.Errorf("socket %s (session %q) was reaped: %v", k.GetSocketId(), k.GetSessionId(), err)
		}
	}
	// The blocked call ends (a peer connects): the listener and the accepted socket are then
	// unused, and reaped in turn.
	c, err := net.Dial("tcp", busy.GetLocalAddress())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := <-accepted; err != nil {
		t.Fatalf("accept: %v", err)
	}
	ar, _ := e.sc.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
	var ids []string
	for _, k := range ar.GetSockets() {
		if k.GetSessionId() == "" {
			ids = append(ids, k.GetSocketId())
		}
	}
	if len(ids) != 2 {
		t.Fatalf("sockets outside the session: %v, want the busy listener and the accepted one", ids)
	}
	e.waitGone(t, ctx, 10*time.Second, ids...)
	if _, err := e.ss.CloseSession(ctx, &sockagentv1.CloseSessionRequest{SessionId: s.GetSessionId()}); err != nil {
		t.Fatal(err)
	}
}

func TestIdleReapingOff(t *testing.T) {
	t.Parallel()
	e := newSessEnv(t, agent.Config{IdleTimeout: -1})
	ctx := ctxT(t)
	l := e.listenCtx(t, ctx)
	// With no reaper there is nothing to wait for; the socket must still answer after a
	// while that would have reaped it with any short timeout.
	time.Sleep(300 * time.Millisecond) // the absence of an event can only be shown by waiting
	r, err := e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: l.GetSocketId()})
	if err != nil {
		t.Fatalf("with idle reaping off, an unused socket was reaped: %v", err)
	}
	if idle := r.GetSocket().GetIdle().AsDuration(); idle < 300*time.Millisecond {
		t.Errorf("idle %s after 300ms unused; want at least 300ms (the socket really sat idle)", idle)
	}
}

func (e *env) listenCtx(t *testing.T, ctx context.Context) *sockagentv1.Socket {
	t.Helper()
	r, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	e.closeAtEnd(t, r.GetSocket().GetSocketId())
	return r.GetSocket()
}

func TestRequestIDIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	lis := e.listen(t, "tcp", "127.0.0.1:0")
	req := &sockagentv1.DialRequest{Network: "tcp", Address: lis.GetLocalAddress(), RequestId: "dial-1"}
	a, err := e.sc.Dial(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	e.closeAtEnd(t, a.GetSocket().GetSocketId())
	b, err := e.sc.Dial(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if a.GetSocket().GetSocketId() != b.GetSocket().GetSocketId() {
		t.Errorf("retried Dial opened %s, first %s", b.GetSocket().GetSocketId(), a.GetSocket().GetSocketId())
	}
	if n := e.a.NumSockets(); n != 2 {
		t.Errorf("%d sockets, want 2 (listener and one dialed)", n)
	}
	// The same id for another RPC is a mistake.
	_, err = e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", RequestId: "dial-1"})
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "already used for a Dial")

	// Concurrent duplicates: one socket, everybody gets it.
	var wg sync.WaitGroup
	ids := make([]string, 20)
	errs := make([]error, 20)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", RequestId: "listen-x"})
			ids[i], errs[i] = r.GetSocket().GetSocketId(), err
		}()
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Errorf("listen %d: %s, %v; want %s", i, ids[i], errs[i], ids[0])
		}
	}
	e.closeAtEnd(t, ids[0])
	if n := e.a.NumSockets(); n != 3 {
		t.Errorf("%d sockets, want 3", n)
	}
	// A request that failed is forgotten: its retry runs again.
	path := e.sockPath("s")
	dreq := &sockagentv1.DialRequest{Network: "unix", Address: path, RequestId: "dial-unix"}
	_, err = e.sc.Dial(ctx, dreq)
	if status.Code(err) == codes.OK {
		t.Fatal("dial to a missing path succeeded")
	}
	e.listen(t, "unix", path)
	r, err := e.sc.Dial(ctx, dreq)
	if err != nil {
		t.Fatalf("retry after the listener appeared: %v", err)
	}
	e.closeAtEnd(t, r.GetSocket().GetSocketId())
}

func TestUnknownSocketNamesTheInstance(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	info, err := e.ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: "s999"})
	wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSocket, "s999", "instance "+info.GetInstanceId(), "restarted")
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			if ei.GetMetadata()["instance_id"] != info.GetInstanceId() {
				t.Errorf("metadata %v, want instance_id %s", ei.GetMetadata(), info.GetInstanceId())
			}
			if got, want := ei.GetMetadata()["started_at"], info.GetStartedAt().AsTime().UTC().Format(time.RFC3339Nano); got != want {
				t.Errorf("metadata started_at %q, want %q", got, want)
			}
		}
	}
}

// TestIdleReapingServed: a served socket outside a session is reaped like any other once it
// serves nothing for the idle timeout; an open served connection, or traffic since the reaper
// last looked, keeps it.
func TestIdleReapingServed(t *testing.T) {
	t.Parallel()
	const idle = 200 * time.Millisecond
	e := newSessEnv(t, agent.Config{IdleTimeout: idle})
	ctx := ctxT(t)
	quiet := e.bind(t, "udp", "127.0.0.1:0")
	e.serve(t, quiet.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	busy := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, busy.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	c := dialT(t, "tcp", busy.GetLocalAddress()) // an open connection: busy is in use
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.waitGone(t, ctx, 10*time.Second, quiet.GetSocketId())
	if took := time.Since(start); took < idle-50*time.Millisecond {
		t.Errorf("the quiet served socket was reaped after %s, before the idle timeout %s", took, idle)
	}
	_, err := e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: quiet.GetSocketId()})
	wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSocket, "the agent closed it: idle for the agent's idle timeout (200ms)")
	if _, err := e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: busy.GetSocketId()}); err != nil {
		t.Fatalf("a served socket with an open connection was reaped: %v", err)
	}
	// The connection ends: busy serves nothing more, and is reaped in turn.
	c.Close()
	e.waitGone(t, ctx, 10*time.Second, busy.GetSocketId())
}
