package agent_test

// Benchmarks of the agent over a real TCP loopback gRPC connection: a 64-byte Send+Recv round
// trip through a socket pair the agent holds, beside the barest gRPC unary call (health Check)
// on the same server, so the cost the agent adds shows as a ratio.
//
//	go test -run='^$' -bench=. -benchtime=2000x ./agent/
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
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// benchEnv is an agent served on 127.0.0.1:0 with a connected TCP socket pair in its table.
type benchEnv struct {
	sc       sockagentv1.SocketServiceClient
	hc       healthpb.HealthClient
	cli, srv string // socket ids: the dialled end and the accepted end
	payload  []byte
}

// benchTimeout bounds each benchmark's RPCs, so a hung agent fails the run instead of stalling it.
const benchTimeout = 2 * time.Minute

func benchSetup(b *testing.B) (*benchEnv, context.Context) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	a, err := agent.New(agent.Config{})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	e := &benchEnv{
		sc:      sockagentv1.NewSocketServiceClient(conn),
		hc:      healthpb.NewHealthClient(conn),
		payload: bytes.Repeat([]byte("0123456789abcdef"), 4),
	}
	var ids []string
	b.Cleanup(func() {
		for _, id := range ids {
			if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err != nil {
				b.Errorf("close %s: %v", id, err)
			}
		}
		if n := a.NumSockets(); n != 0 {
			b.Errorf("%d sockets open at the end, want 0", n)
		}
		conn.Close()
		a.Close()
		<-served
		cancel()
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

// benchUnary makes the barest unary call the server has.
func (e *benchEnv) benchUnary(b *testing.B, ctx context.Context) {
	r, err := e.hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		b.Fatal(err)
	}
	if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		b.Fatalf("health %s", r.GetStatus())
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

// BenchmarkBareUnary measures one grpc.health.v1.Health/Check on the same kind of server.
func BenchmarkBareUnary(b *testing.B) {
	e, ctx := benchSetup(b)
	for b.Loop() {
		e.benchUnary(b, ctx)
	}
}

// BenchmarkRatioSendRecvVsUnary alternates the two, one of each per iteration so machine noise
// hits both alike, and reports their medians and send+recv / unary.
func BenchmarkRatioSendRecvVsUnary(b *testing.B) {
	e, ctx := benchSetup(b)
	var sr, un []time.Duration
	for b.Loop() {
		t0 := time.Now()
		e.benchSendRecv(b, ctx)
		t1 := time.Now()
		e.benchUnary(b, ctx)
		t2 := time.Now()
		sr = append(sr, t1.Sub(t0))
		un = append(un, t2.Sub(t1))
	}
	p50sr, p50un := benchMedian(sr), benchMedian(un)
	if p50un <= 0 {
		b.Fatalf("bare unary median %s", p50un)
	}
	ratio := float64(p50sr) / float64(p50un)
	b.ReportMetric(float64(p50sr.Nanoseconds()), "sendrecv-p50-ns")
	b.ReportMetric(float64(p50un.Nanoseconds()), "unary-p50-ns")
	b.ReportMetric(ratio, "ratio")
	b.Logf("send+recv 64B p50=%s  bare unary p50=%s  ratio=%.1fx  (n=%d)",
		p50sr.Round(time.Microsecond), p50un.Round(time.Microsecond), ratio, len(sr))
}

func benchMedian(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
