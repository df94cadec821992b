package agent_test

// What a caller without credentials can make the agent spend: request bodies (never read),
// connections (bounded in number and in time), streams, health.Watch streams, and log lines.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const transportToken = "alice:alice-secret-0123456789\n"

// countingListener counts the bytes the agent reads from its connections.
type countingListener struct {
	net.Listener
	read *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, read: l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// transportAgent is an in-process agent on 127.0.0.1 with cfg (its Logger writes JSON into
// log), serving through wrap if given.
type transportAgent struct {
	a    *agent.Agent
	addr string
	log  *logBuf
}

func startTransport(t *testing.T, cfg agent.Config, wrap func(net.Listener) net.Listener) *transportAgent {
	t.Helper()
	s := &transportAgent{log: newLogBuf()}
	cfg.Logger = slog.New(slog.NewJSONHandler(s.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.a, s.addr = a, lis.Addr().String()
	if wrap != nil {
		lis = wrap(lis)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.Serve(lis)
	}()
	t.Cleanup(func() {
		a.Close()
		<-served
	})
	return s
}

// client is a gRPC client of the agent whose connections come from the loopback address src.
func (s *transportAgent) client(t *testing.T, src string) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := grpc.NewClient("passthrough:///"+s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// raw opens a TCP connection to the agent from src and sends the HTTP/2 client preface, and
// nothing more.
func (s *transportAgent) raw(t *testing.T, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	return c
}

// served reports whether the agent serves c (it sent its SETTINGS) or closed it unserved,
// waiting up to 5 s.
func served(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 64))
	switch {
	case n > 0:
		return true
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err):
		return false
	}
	t.Fatalf("read from the agent: %d bytes, %v", n, err)
	return false
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// closedWithin waits until the agent closes c (EOF or reset), up to limit, and returns when.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Time {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || isReset(err) {
			return time.Now()
		}
		t.Fatalf("connection still open after %s: %v", limit, err)
	}
}

func bearer(ctx context.Context) context.Context {
	return withAuth(ctx, "Bearer alice-secret-0123456789")
}

// waitConns polls the agent's connection counts until they are total and unauth (5 s).
func waitConns(t *testing.T, a *agent.Agent, total, unauth int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		gt, gu := a.NumConnections()
		if gt == total && gu == unauth {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections %d (%d unauthenticated), want %d (%d)", gt, gu, total, unauth)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawCodec sends a request already encoded, so that many large requests share one buffer.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestUnauthenticatedBodiesNotRead: 300 token-less 4 MiB requests in parallel are refused
// from their headers: UNAUTHENTICATED with the fixed message, and the agent reads a small
// part of the 1.2 GB they carry (each stream's initial flow-control window at most), and logs
// no part of them.
func TestUnauthenticatedBodiesNotRead(t *testing.T) {
	t.Parallel()
	var read atomic.Int64
	s := startTransport(t, agent.Config{Tokens: mustTokens(t, transportToken)},
		func(l net.Listener) net.Listener { return countingListener{Listener: l, read: &read} })
	addr := strings.Repeat("A", 64) + ":1"
	big, err := proto.Marshal(&sockagentv1.SendToRequest{SocketId: "s-1", Address: addr, Data: make([]byte, 4<<20)})
	if err != nil {
		t.Fatal(err)
	}
	const n, conns = 300, 10
	clients := make([]*grpc.ClientConn, conns)
	for i := range clients {
		clients[i] = s.client(t, "127.0.0.1")
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			var reply []byte
			errs <- clients[i%conns].Invoke(ctxT(t), sockagentv1.SocketService_SendTo_FullMethodName, &big, &reply, grpc.ForceCodec(rawCodec{}))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		wantUnauthenticated(t, err)
	}
	got := read.Load()
	t.Logf("%d token-less %d-byte requests refused in %s; the agent read %d KiB of the %d MiB sent", n, len(big), time.Since(start).Round(time.Millisecond), got>>10, n*len(big)>>20)
	// 64 KiB is a stream's initial window; a read request body would be 4 MiB each.
	if max := int64(n) * 80 << 10; got > max {
		t.Errorf("the agent read %d bytes, want at most %d: it read request bodies before authenticating", got, max)
	}
	lines := s.log.records(t, "rpc")
	if len(lines) == 0 || len(lines) > 20+int(time.Since(start).Seconds()*5)+1 {
		t.Errorf("%d rpc lines for %d refused requests, want 1 to the burst of 20 plus 5 a second", len(lines), n)
	}
	if text := s.log.text(); strings.Contains(text, addr) || strings.Contains(text, "s-1") {
		t.Errorf("the log holds a part of a request that was never authenticated")
	}
	for _, l := range strings.Split(s.log.text(), "\n") {
		if len(l) > 1024 {
			t.Errorf("log line of %d bytes", len(l))
		}
	}
}

// TestConnectionLimits: connections past max_connections_per_peer, max_unauthenticated and
// max_connections are closed as soon as they are accepted; an authenticated connection frees
// its unauthenticated slot, a closed one its slots.
func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	s := startTransport(t, agent.Config{Tokens: mustTokens(t, transportToken),
		MaxConnections: 6, MaxUnauthenticated: 4, MaxConnectionsPerPeer: 3, AuthTimeout: time.Minute}, nil)
	honest := sockagentv1.NewAgentServiceClient(s.client(t, "127.0.0.1"))
	if _, err := honest.GetInfo(bearer(ctxT(t)), &sockagentv1.GetInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	waitConns(t, s.a, 1, 0)

	var a []net.Conn
	for i := range 3 {
		c := s.raw(t, "127.0.0.2")
		if !served(t, c) {
			t.Fatalf("connection %d of 127.0.0.2 not served (3 per peer allowed)", i)
		}
		a = append(a, c)
	}
	if served(t, s.raw(t, "127.0.0.2")) {
		t.Error("a 4th connection of 127.0.0.2 was served past max_connections_per_peer 3")
	}
	b := s.raw(t, "127.0.0.3")
	if !served(t, b) {
		t.Fatal("the first connection of 127.0.0.3 was not served")
	}
	waitConns(t, s.a, 5, 4)
	if served(t, s.raw(t, "127.0.0.4")) {
		t.Error("a 5th unauthenticated connection was served past max_unauthenticated 4")
	}
	if _, err := honest.GetInfo(bearer(ctxT(t)), &sockagentv1.GetInfoRequest{}); err != nil {
		t.Errorf("the authenticated connection during the flood: %v", err)
	}

	b.Close()
	waitConns(t, s.a, 4, 3)
	late := sockagentv1.NewAgentServiceClient(s.client(t, "127.0.0.4"))
	if _, err := late.GetInfo(bearer(ctxT(t)), &sockagentv1.GetInfoRequest{}); err != nil {
		t.Fatalf("a new caller once a slot was free: %v", err)
	}
	waitConns(t, s.a, 5, 3)
	c := s.raw(t, "127.0.0.5")
	if !served(t, c) {
		t.Fatal("the 6th connection was not served")
	}
	if served(t, s.raw(t, "127.0.0.6")) {
		t.Error("a 7th connection was served past max_connections 6")
	}
	for _, l := range []string{"max_connections_per_peer", "max_unauthenticated", "max_connections"} {
		s.log.waitFor(t, regexpQuote(`"msg":"connection refused","peer":"127.0.0.`, `","limit":"`+l+`","max":`))
	}
	for _, c := range append(a, c) {
		c.Close()
	}
	waitConns(t, s.a, 2, 0)
}

// TestAuthTimeout: a connection that makes no authenticated RPC is closed at AuthTimeout
// (the preface alone, or health RPCs without a token); an authenticated one stays.
func TestAuthTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 400 * time.Millisecond
	s := startTransport(t, agent.Config{Tokens: mustTokens(t, transportToken), AuthTimeout: timeout}, nil)
	ok := s.client(t, "127.0.0.1")
	if _, err := sockagentv1.NewAgentServiceClient(ok).GetInfo(bearer(ctxT(t)), &sockagentv1.GetInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c := s.raw(t, "127.0.0.2")
	if !served(t, c) {
		t.Fatal("not served")
	}
	health := healthpb.NewHealthClient(s.client(t, "127.0.0.3"))
	if _, err := health.Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health without a token: %v", err)
	}
	closed := closedWithin(t, c, 5*time.Second)
	if d := closed.Sub(start); d < timeout || d > timeout+time.Second {
		t.Errorf("a preface-only connection closed after %s, want %s to %s", d, timeout, timeout+time.Second)
	}
	// The health client's connection went the same way; the authenticated one did not.
	waitConns(t, s.a, 1, 0)
	s.log.waitFor(t, regexpQuote(`"msg":"connection closed: no authenticated RPC in time","peer":"127.0.0.2:`, `"auth_timeout":`))
	if _, err := sockagentv1.NewAgentServiceClient(ok).GetInfo(bearer(ctxT(t)), &sockagentv1.GetInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	waitConns(t, s.a, 1, 0)
}

// TestAuthTimeoutWithoutTokens: without tokens any RPC authenticates its connection (there is
// nothing more to prove), and a connection that makes none is still closed.
func TestAuthTimeoutWithoutTokens(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	s := startTransport(t, agent.Config{AuthTimeout: timeout}, nil)
	health := healthpb.NewHealthClient(s.client(t, "127.0.0.1"))
	if _, err := health.Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c := s.raw(t, "127.0.0.2")
	if d := closedWithin(t, c, 5*time.Second).Sub(start); d < timeout || d > timeout+time.Second {
		t.Errorf("a preface-only connection closed after %s, want %s to %s", d, timeout, timeout+time.Second)
	}
	waitConns(t, s.a, 1, 0)
}

// wantTransportLimit checks a RESOURCE_EXHAUSTED with reason LIMIT_EXCEEDED naming limit.
func wantTransportLimit(t *testing.T, err error, limit string) {
	t.Helper()
	st := status.Convert(err)
	var got string
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == contract.ReasonLimitExceeded && ei.GetDomain() == contract.Domain {
			got = ei.GetMetadata()["limit"]
		}
	}
	if st.Code() != codes.ResourceExhausted || got != limit {
		t.Errorf("got %s limit %q (%q), want RESOURCE_EXHAUSTED LIMIT_EXCEEDED limit %q", st.Code(), got, st.Message(), limit)
	}
}

// watch opens a health.Watch stream and returns it once it has its first answer, or the error.
func watch(ctx context.Context, c *grpc.ClientConn) (healthpb.Health_WatchClient, error) {
	w, err := healthpb.NewHealthClient(c).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return nil, err
	}
	r, err := w.Recv()
	if err != nil {
		return nil, err
	}
	if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return nil, errors.New("not SERVING: " + r.GetStatus().String())
	}
	return w, nil
}

// TestHealthWatchBounds: Watch streams past the per-connection bound, and past the agent's,
// are refused at once with LIMIT_EXCEEDED; 2,000 on one connection leave exactly the bound
// open, and a freed slot serves again.
func TestHealthWatchBounds(t *testing.T) {
	t.Parallel()
	s := startTransport(t, agent.Config{MaxHealthWatchesPerConn: 4, MaxHealthWatches: 6}, nil)
	c1, c2 := s.client(t, "127.0.0.1"), s.client(t, "127.0.0.1")
	ctx1, cancel1 := context.WithCancel(ctxT(t))
	defer cancel1()
	const n = 2000
	var open atomic.Int32
	refused := 0
	var errMu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				_, err := watch(ctx1, c1)
				if err == nil {
					open.Add(1)
					continue
				}
				errMu.Lock()
				refused++
				wantTransportLimit(t, err, "health_watches_per_connection")
				errMu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d Watch streams on one connection in %s: %d open, %d refused", n, time.Since(start).Round(time.Millisecond), open.Load(), refused)
	if open.Load() != 4 || refused != n-4 {
		t.Fatalf("%d Watch streams open and %d refused, want 4 and %d", open.Load(), refused, n-4)
	}
	var held []healthpb.Health_WatchClient
	ctx2, cancel2 := context.WithCancel(ctxT(t))
	defer cancel2()
	for range 2 {
		w, err := watch(ctx2, c2)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, w)
	}
	_, err := watch(ctxT(t), c2)
	wantTransportLimit(t, err, "max_health_watches")
	cancel1() // ends the 4 streams of c1
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err = watch(ctx2, c2); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Watch after others closed: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = held
}

// TestUnauthenticatedHealthBound: with tokens, health RPCs without one are let in (their
// requests are read) only a few at a time, per connection and in all; with a token they are
// not counted.
func TestUnauthenticatedHealthBound(t *testing.T) {
	t.Parallel()
	s := startTransport(t, agent.Config{Tokens: mustTokens(t, transportToken), MaxUnauthenticatedHealth: 6, AuthTimeout: time.Minute}, nil)
	c1, c2 := s.client(t, "127.0.0.1"), s.client(t, "127.0.0.1")
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	for range 4 {
		if _, err := watch(ctx, c1); err != nil {
			t.Fatal(err)
		}
	}
	_, err := healthpb.NewHealthClient(c1).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	wantTransportLimit(t, err, "unauthenticated_health_per_connection")
	for range 2 {
		if _, err := watch(ctx, c2); err != nil {
			t.Fatal(err)
		}
	}
	_, err = healthpb.NewHealthClient(c2).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	wantTransportLimit(t, err, "max_unauthenticated_health")
	if _, err := healthpb.NewHealthClient(c2).Check(bearer(ctxT(t)), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health with a token while the token-less ones are at their bound: %v", err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err = healthpb.NewHealthClient(c1).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token-less Check once the Watch streams ended: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMaxStreams: past MaxStreams RPCs in progress on a connection, the next one waits for a
// free stream.
func TestMaxStreams(t *testing.T) {
	t.Parallel()
	s := startTransport(t, agent.Config{MaxStreams: 2}, nil)
	c := s.client(t, "127.0.0.1")
	ctx, cancel := context.WithCancel(ctxT(t))
	for range 2 {
		if _, err := watch(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	const wait = 300 * time.Millisecond
	wctx, wcancel := context.WithTimeout(ctxT(t), wait)
	defer wcancel()
	start := time.Now()
	_, err := sockagentv1.NewAgentServiceClient(c).GetInfo(wctx, &sockagentv1.GetInfoRequest{})
	if d := time.Since(start); status.Code(err) != codes.DeadlineExceeded || d < wait || d > wait+2*time.Second {
		t.Errorf("a 3rd RPC on a connection with 2 streams allowed: %v after %s, want DEADLINE_EXCEEDED after %s", err, d, wait)
	}
	cancel()
	if _, err := sockagentv1.NewAgentServiceClient(c).GetInfo(ctxT(t), &sockagentv1.GetInfoRequest{}); err != nil {
		t.Errorf("GetInfo once the streams ended: %v", err)
	}
}

// TestRefusalLogRate: the lines of refused callers come at a bounded rate, each of bounded
// size whatever the method name, and a line after a pause counts those left out.
func TestRefusalLogRate(t *testing.T) {
	t.Parallel()
	s := startTransport(t, agent.Config{Tokens: mustTokens(t, transportToken)}, nil)
	c := s.client(t, "127.0.0.1")
	long := "/sockagent.v1.SocketService/" + strings.Repeat("X", 8000)
	start := time.Now()
	const n = 500
	for range n {
		err := c.Invoke(ctxT(t), long, &sockagentv1.GetInfoRequest{}, &sockagentv1.GetInfoResponse{})
		wantUnauthenticated(t, err)
	}
	elapsed := time.Since(start)
	recs := s.log.records(t, "rpc")
	if max := 20 + int(elapsed.Seconds()*5) + 1; len(recs) < 20 || len(recs) > max {
		t.Errorf("%d rpc lines for %d refusals in %s, want 20 to %d", len(recs), n, elapsed, max)
	}
	for _, l := range strings.Split(strings.TrimSpace(s.log.text()), "\n") {
		if len(l) > 1024 {
			t.Fatalf("log line of %d bytes: %.200q", len(l), l)
		}
	}
	// Once the rate allows again, a line says how many were left out: every refusal is a
	// line or counted in a later one.
	calls := n
	deadline := time.Now().Add(5 * time.Second)
	for before := len(recs); len(s.log.records(t, "rpc")) == before; {
		if time.Now().After(deadline) {
			t.Fatal("no line after the flood")
		}
		time.Sleep(20 * time.Millisecond)
		wantUnauthenticated(t, c.Invoke(ctxT(t), long, &sockagentv1.GetInfoRequest{}, &sockagentv1.GetInfoResponse{}))
		calls++
	}
	recs = s.log.records(t, "rpc")
	sup := 0
	for _, r := range recs {
		if v, ok := r["suppressed"].(float64); ok {
			sup += int(v)
		}
	}
	if _, ok := recs[len(recs)-1]["suppressed"]; !ok || len(recs)+sup != calls {
		t.Errorf("%d lines, %d counted as left out (the last line: %v), want %d in all", len(recs), sup, recs[len(recs)-1], calls)
	}
}

// regexpQuote matches the literal parts in order, anything between them.
func regexpQuote(parts ...string) *regexp.Regexp {
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(strings.Join(parts, ".*"))
}
