package ctl

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/ctl/localagent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// lockedBuf is a log sink safe for the agent's concurrent RPCs.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveOn runs an agent configured by cfg on lis and returns it; at the end of the test it
// must have no sockets and no sessions left.
func serveOn(t *testing.T, lis net.Listener, cfg agent.Config) *localagent.Agent {
	t.Helper()
	a, err := localagent.Serve(lis, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n, s := a.NumSockets(), a.NumSessions(); n != 0 || s != 0 {
			t.Errorf("agent has %d sockets and %d sessions at the end of the test, want none", n, s)
		}
		_ = a.Close()
	})
	return a
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// runAsync runs sockctl in-process until ctx ends; the result comes on the channel.
func runAsync(ctx context.Context, args ...string) <-chan result {
	done := make(chan result, 1)
	go func() {
		var out, errOut strings.Builder
		code := run(ctx, args, nil, nil, &out, &errOut)
		done <- result{code: code, stdout: out.String(), stderr: errOut.String()}
	}()
	return done
}

// sockctl run opens a session on the agent, opens its sockets in it, keeps it alive past its
// TTL, and closes it at the end.
func TestRunUsesSession(t *testing.T) {
	t.Parallel()
	log := &lockedBuf{}
	lis := listenLoopback(t)
	a := serveOn(t, lis, agent.Config{Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	addr := lis.Addr().String()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, ss := sockagentv1.NewSocketServiceClient(cc), sockagentv1.NewSessionServiceClient(cc)
	p := writeScenario(t, "block.yaml", `name: in a session
agents: {a: local}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: a, accept: {socket: lis, timeout: 1m}}
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runAsync(ctx, "run", p, "--agent", "a="+addr, "--session-ttl", "1s")
	var lisSock *sockagentv1.Socket
	waitFor(t, func() bool { // the accept is blocked in the agent
		l, err := sc.ListSockets(context.Background(), &sockagentv1.ListSocketsRequest{})
		if err != nil || len(l.GetSockets()) != 1 || l.GetSockets()[0].GetPendingCalls() != 1 {
			return false
		}
		lisSock = l.GetSockets()[0]
		return true
	})
	sl, err := ss.ListSessions(context.Background(), &sockagentv1.ListSessionsRequest{})
	if err != nil || len(sl.GetSessions()) != 1 {
		t.Fatalf("sessions %v, %v; want the run's one", sl, err)
	}
	sess := sl.GetSessions()[0]
	if sess.GetName() != "sockctl run in a session" || sess.GetTtl().AsDuration() != time.Second || sess.GetSessionId() != lisSock.GetSessionId() {
		t.Errorf("session %v; listener in session %q", sess, lisSock.GetSessionId())
	}
	// Kept alive: several KeepAlives, and the session outlives its 1s TTL.
	waitFor(t, func() bool { return strings.Count(log.String(), "rpc=KeepAlive") >= 5 })
	if _, err := ss.KeepAlive(context.Background(), &sockagentv1.KeepAliveRequest{SessionId: sess.GetSessionId()}); err != nil {
		t.Errorf("the run's session expired while sockctl ran: %v", err)
	}
	cancel()
	r := <-done
	r.want(t, ExitFailure, []string{"cleanup: 1 socket(s) closed", "interrupted"}, nil)
	if n := a.NumSessions(); n != 0 {
		t.Errorf("%d sessions after the run, want 0", n)
	}
	if !strings.Contains(log.String(), "rpc=CloseSession") {
		t.Errorf("no CloseSession in the agent's log:\n%s", log)
	}
}

// A creation call that failed on the control channel (UNAVAILABLE without ErrorInfo) is
// retried with the same request_id and yields one socket; a Send is never retried.
func TestRunRetriesCreationOnly(t *testing.T) {
	t.Parallel()
	var (
		mu        sync.Mutex
		listenIDs []string
		sends     int
	)
	flaky := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		switch info.FullMethod {
		case sockagentv1.SocketService_Listen_FullMethodName:
			resp, err := h(ctx, req)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				listenIDs = append(listenIDs, resp.(*sockagentv1.ListenResponse).GetSocket().GetSocketId())
			}
			if len(listenIDs) == 1 { // the socket was opened, the answer is lost
				return nil, status.Error(codes.Unavailable, "simulated: connection lost")
			}
			return resp, err
		case sockagentv1.SocketService_Send_FullMethodName:
			mu.Lock()
			sends++
			mu.Unlock()
			return nil, status.Error(codes.Unavailable, "simulated: connection lost")
		}
		return h(ctx, req)
	}
	lis := listenLoopback(t)
	a := serveOn(t, lis, agent.Config{ServerOptions: []grpc.ServerOption{grpc.ChainUnaryInterceptor(flaky)}})
	p := writeScenario(t, "retry.yaml", `name: retries
agents: {a: local}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: a, dial: {network: tcp, address: "${lis.local_address}"}, as: cli}
  - {on: a, send: {socket: cli, data: "x"}}
`)
	r := runArgs(t, p, "--agent", "a="+lis.Addr().String())
	r.want(t, ExitFailure, []string{"\n1          a          listen    ok", "AGENT_UNAVAILABLE", "cleanup: 2 socket(s) closed"}, nil)
	mu.Lock()
	defer mu.Unlock()
	if len(listenIDs) != 2 || listenIDs[0] != listenIDs[1] {
		t.Errorf("Listen opened %v; want the same socket twice (retried with its request_id)", listenIDs)
	}
	if sends != 1 {
		t.Errorf("Send called %d times, want 1 (never retried)", sends)
	}
	if n := a.NumSockets(); n != 0 {
		t.Errorf("%d sockets after the run", n)
	}
}

// An agent restarted mid-run: the step on a socket from before says so.
func TestRunAgentRestarted(t *testing.T) {
	t.Parallel()
	lis := listenLoopback(t)
	addr := lis.Addr().String()
	first, err := localagent.Serve(lis, agent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := writeScenario(t, "restart.yaml", `name: restart
agents: {a: `+addr+`}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: a, dial: {network: tcp, address: "${lis.local_address}"}, as: cli}
  - {on: a, accept: {socket: lis}, as: srv}
  - {on: a, recv: {socket: srv, timeout: 10s}}
  - {on: a, sleep: {duration: 2s}}
  - {on: a, close: {socket: cli}}
`)
	done := runAsync(context.Background(), "run", p, "--keep-going")
	// The Recv pending in the agent means every earlier step has its answer (a Recv is never
	// retried, unlike creation calls, so it cannot land on the restarted agent).
	sc := agentClient(t, addr)
	waitFor(t, func() bool {
		l, err := sc.ListSockets(context.Background(), &sockagentv1.ListSocketsRequest{})
		if err != nil {
			return false
		}
		for _, s := range l.GetSockets() {
			if s.GetPendingCalls() == 1 {
				return true
			}
		}
		return false
	})
	_ = first.Close()
	var lis2 net.Listener
	waitFor(t, func() bool { // the port is free again once the first agent closed it
		lis2, err = net.Listen("tcp", addr)
		return err == nil
	})
	serveOn(t, lis2, agent.Config{})
	r := <-done
	r.want(t, ExitFailure, []string{"UNKNOWN_SOCKET", "agent a restarted (instance " + first.InstanceID() + " when the run connected, now "}, nil)
}

// An agent without SessionService (an older sockagent) runs the scenario without a session;
// a --session-ttl out of range is a usage error.
func TestRunWithoutSessionService(t *testing.T) {
	t.Parallel()
	old := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if strings.HasPrefix(info.FullMethod, "/sockagent.v1.SessionService/") {
			return nil, status.Error(codes.Unimplemented, "unknown service sockagent.v1.SessionService")
		}
		return h(ctx, req)
	}
	lis := listenLoopback(t)
	serveOn(t, lis, agent.Config{ServerOptions: []grpc.ServerOption{grpc.ChainUnaryInterceptor(old)}})
	p := writeScenario(t, "plain.yaml", `name: plain
agents: {a: local}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
`)
	runArgs(t, p, "--agent", "a="+lis.Addr().String()).want(t, ExitOK, []string{"cleanup: 1 socket(s) closed", "1 passed, 0 failed"}, nil)
	runArgs(t, p, "--session-ttl", "500ms").want(t, ExitUsage, nil, []string{"--session-ttl 500ms: give 1s up to 24h"})
}
