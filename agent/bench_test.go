package agent_test

// Benchmarks of the agent's control-plane cost over a real TCP loopback gRPC connection, each
// beside its baseline in the same run, so the cost the agent adds shows as a ratio (issue 6,
// point 6):
//
//   - a 64-byte Send+Recv round trip through a socket pair the agent holds (two RPCs), and
//   - GetInfo,
//
// against "a bare gRPC unary call": grpc.health.v1.Health/Check answered by a plain grpc-go
// server with default options and no interceptors, on its own listener and connection. The
// same Check answered by the agent (through its interceptors) is reported too.
//
//	go test -run='^$' -bench=Ratio -benchtime=2000x ./agent/
//
// Identifiers here start with "bench" so they never clash with the package's other tests.

import (
	"bytes"
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// benchEnv is an agent served on 127.0.0.1:0 with a connected TCP socket pair in its table,
// and a plain grpc-go server with only the health service on another 127.0.0.1:0 listener.
type benchEnv struct {
	sc       sockagentv1.SocketServiceClient
	ac       sockagentv1.AgentServiceClient
	hc       healthpb.HealthClient // the agent's health service
	bare     healthpb.HealthClient // the plain server's health service
	cli, srv string                // socket ids: the dialled end and the accepted end
	payload  []byte
}

// benchTimeout bounds each benchmark's RPCs, so a hung agent fails the run instead of stalling it.
const benchTimeout = 2 * time.Minute

// benchServe serves srv on a new 127.0.0.1:0 listener and returns a client connection to it;
// cleanup stops both.
func benchServe(b testing.TB, serve func(net.Listener) error, stop func()) *grpc.ClientConn {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		conn.Close()
		stop()
		<-served
	})
	return conn
}

// benchAgent is an agent (zero Config) served over real TCP loopback gRPC, and a client
// connection to it; cleanup closes both. Cleanups registered after it run before it.
func benchAgent(tb testing.TB) (*agent.Agent, *grpc.ClientConn) {
	tb.Helper()
	a, err := agent.New(agent.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return a, benchServe(tb, a.Serve, func() { a.Close() })
}

func benchSetup(b *testing.B) (*benchEnv, context.Context) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	b.Cleanup(cancel)

	plain := grpc.NewServer()
	healthpb.RegisterHealthServer(plain, health.NewServer())
	bareConn := benchServe(b, plain.Serve, plain.Stop)

	a, conn := benchAgent(b)
	var ids []string
	b.Cleanup(func() { // runs after the sockets' cleanup below, before the agent's
		if n := a.NumSockets(); n != 0 {
			b.Errorf("%d sockets open at the end, want 0", n)
		}
	})
	e := &benchEnv{
		sc:      sockagentv1.NewSocketServiceClient(conn),
		ac:      sockagentv1.NewAgentServiceClient(conn),
		hc:      healthpb.NewHealthClient(conn),
		bare:    healthpb.NewHealthClient(bareConn),
		payload: bytes.Repeat([]byte("0123456789abcdef"), 4),
	}
	b.Cleanup(func() {
		for _, id := range ids {
			if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err != nil {
				b.Errorf("close %s: %v", id, err)
			}
		}
	})

	l, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	ids = append(ids, l.GetSocket().GetSocketId())
	d, err := e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: l.GetSocket().GetLocalAddress()})
	if err != nil {
		b.Fatal(err)
	}
	ids = append(ids, d.GetSocket().GetSocketId())
	acc, err := e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: l.GetSocket().GetSocketId(), Timeout: durationpb.New(5 * time.Second)})
	if err != nil {
		b.Fatal(err)
	}
	ids = append(ids, acc.GetSocket().GetSocketId())
	e.cli, e.srv = d.GetSocket().GetSocketId(), acc.GetSocket().GetSocketId()
	// Warm both connections up (HTTP/2 settings, window updates, first-call allocations).
	for range 20 {
		e.benchSendRecv(b, ctx)
		e.benchCheck(b, ctx, e.bare)
		e.benchCheck(b, ctx, e.hc)
		e.benchGetInfo(b, ctx)
	}
	return e, ctx
}

// benchSendRecv sends 64 bytes on one end and receives exactly those 64 bytes on the other.
func (e *benchEnv) benchSendRecv(b *testing.B, ctx context.Context) {
	if _, err := e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: e.cli, Data: e.payload}); err != nil {
		b.Fatal(err)
	}
	r, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: e.srv, ExactBytes: uint32(len(e.payload))})
	if err != nil {
		b.Fatal(err)
	}
	if !bytes.Equal(r.GetData(), e.payload) {
		b.Fatalf("received %q, want %q", r.GetData(), e.payload)
	}
}

// benchCheck makes one health Check through hc.
func (e *benchEnv) benchCheck(b *testing.B, ctx context.Context, hc healthpb.HealthClient) {
	r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		b.Fatal(err)
	}
	if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		b.Fatalf("health %s", r.GetStatus())
	}
}

// benchGetInfo makes one GetInfo.
func (e *benchEnv) benchGetInfo(b *testing.B, ctx context.Context) {
	r, err := e.ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		b.Fatal(err)
	}
	if r.GetInstanceId() == "" || len(r.GetInterfaces()) == 0 || r.GetOpenSockets() != 3 {
		b.Fatalf("GetInfo: instance %q, %d interfaces, %d sockets; want an instance, interfaces, 3 sockets",
			r.GetInstanceId(), len(r.GetInterfaces()), r.GetOpenSockets())
	}
}

// BenchmarkSendRecv64 measures one Send of 64 bytes plus one exact Recv of them (two RPCs).
func BenchmarkSendRecv64(b *testing.B) {
	e, ctx := benchSetup(b)
	b.SetBytes(64)
	for b.Loop() {
		e.benchSendRecv(b, ctx)
	}
}

// BenchmarkGetInfo measures one GetInfo.
func BenchmarkGetInfo(b *testing.B) {
	e, ctx := benchSetup(b)
	for b.Loop() {
		e.benchGetInfo(b, ctx)
	}
}

// BenchmarkBareUnary measures one grpc.health.v1.Health/Check on a plain grpc-go server.
func BenchmarkBareUnary(b *testing.B) {
	e, ctx := benchSetup(b)
	for b.Loop() {
		e.benchCheck(b, ctx, e.bare)
	}
}

// BenchmarkAgentUnary measures one grpc.health.v1.Health/Check answered by the agent.
func BenchmarkAgentUnary(b *testing.B) {
	e, ctx := benchSetup(b)
	for b.Loop() {
		e.benchCheck(b, ctx, e.hc)
	}
}

// benchRatio runs fig and the two health Checks in turn, each twice per iteration and timed
// the second time (so that each pays for what its own kind leaves running, not the other's:
// sockbench's alternate says why), so machine noise hits all alike, and reports the medians
// and fig / bare unary (the target) and fig / the agent's own Check.
func benchRatio(b *testing.B, name string, target float64, fig func(*benchEnv, *testing.B, context.Context)) {
	e, ctx := benchSetup(b)
	var f, bare, own []time.Duration
	timed := func(run func()) time.Duration {
		run()
		t0 := time.Now()
		run()
		return time.Since(t0)
	}
	for b.Loop() {
		f = append(f, timed(func() { fig(e, b, ctx) }))
		bare = append(bare, timed(func() { e.benchCheck(b, ctx, e.bare) }))
		own = append(own, timed(func() { e.benchCheck(b, ctx, e.hc) }))
	}
	p50f, p50bare, p50own := benchMedian(f), benchMedian(bare), benchMedian(own)
	if p50bare <= 0 || p50own <= 0 {
		b.Fatalf("unary medians %s %s", p50bare, p50own)
	}
	ratio, ratioOwn := float64(p50f)/float64(p50bare), float64(p50f)/float64(p50own)
	b.ReportMetric(float64(p50f.Nanoseconds()), name+"-p50-ns")
	b.ReportMetric(float64(p50bare.Nanoseconds()), "bare-unary-p50-ns")
	b.ReportMetric(float64(p50own.Nanoseconds()), "agent-unary-p50-ns")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(ratioOwn, "ratio-agent-unary")
	verdict := "PASS"
	if ratio > target {
		verdict = "FAIL"
	}
	b.Logf("%s p50=%s  bare unary p50=%s  ratio=%.2fx (target <= %.1fx: %s)  agent health p50=%s ratio=%.2fx  (n=%d)",
		name, p50f.Round(100*time.Nanosecond), p50bare.Round(100*time.Nanosecond), ratio, target, verdict,
		p50own.Round(100*time.Nanosecond), ratioOwn, len(f))
}

// BenchmarkRatioSendRecvVsUnary: Send+Recv of 64 bytes, target p50 <= 1.9x a bare unary call.
func BenchmarkRatioSendRecvVsUnary(b *testing.B) {
	benchRatio(b, "send+recv-64B", 1.9, (*benchEnv).benchSendRecv)
}

// BenchmarkRatioGetInfoVsUnary: GetInfo, target p50 <= 1.1x a bare unary call.
func BenchmarkRatioGetInfoVsUnary(b *testing.B) {
	benchRatio(b, "getinfo", 1.1, (*benchEnv).benchGetInfo)
}

func benchMedian(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
