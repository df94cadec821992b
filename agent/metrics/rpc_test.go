package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	provider "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	prom "github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// TestRPCMetricsAsProvider: the agent's RPC metrics expose what go-grpc-middleware's
// Prometheus provider does for the same calls (its names, help, types, label sets and
// counts; the histograms' sample counts and buckets), on a server that runs both: unary calls
// that succeed and fail, a server stream cut off by its client, and a bidi stream.
func TestRPCMetricsAsProvider(t *testing.T) {
	ours, theirs := newRPCMetrics(rpcBuckets), provider.NewServerMetrics(provider.WithServerHandlingTimeHistogram(provider.WithHistogramBuckets(rpcBuckets)))
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(theirs.UnaryServerInterceptor(), ours.unary),
		grpc.ChainStreamInterceptor(theirs.StreamServerInterceptor(), ours.stream))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	ours.register(srv)
	theirs.InitializeMetrics(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	hc := healthpb.NewHealthClient(conn)
	for range 3 {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nothing"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Check of an unknown service: %v, want NotFound", err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil { // SERVING
		t.Fatal(err)
	}
	wcancel()
	rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		if _, err := rs.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("reflection stream's end: %v", err)
	}

	want, got := prom.NewPedanticRegistry(), prom.NewPedanticRegistry()
	want.MustRegister(theirs)
	got.MustRegister(ours.collectors()...)
	// The cancelled Watch ends on the server a moment after the client sees it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, g := gather(t, want), gather(t, got)
		if w == g && strings.Contains(w, `grpc_code="Canceled",grpc_method="Watch",grpc_service="grpc.health.v1.Health",grpc_type="server_stream"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent's RPC metrics differ from the provider's:\n--- provider\n%s\n--- ours\n%s", w, g)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gather is reg's samples as text, one line each, sorted; histograms by sample count and
// bucket bounds (not their timings).
func gather(t *testing.T, reg *prom.Registry) string {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, f := range fams {
		lines = append(lines, "# "+f.GetName()+" "+f.GetType().String()+" "+f.GetHelp())
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+`"`+l.GetValue()+`"`)
			}
			line := f.GetName() + "{" + strings.Join(labels, ",") + "} "
			switch {
			case m.Counter != nil:
				line += num(m.GetCounter().GetValue())
			case m.Histogram != nil:
				var bounds []string
				for _, b := range m.GetHistogram().GetBucket() {
					bounds = append(bounds, num(b.GetUpperBound()))
				}
				line += num(float64(m.GetHistogram().GetSampleCount())) + " buckets " + strings.Join(bounds, ",")
			}
			lines = append(lines, line)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// TestRPCTypeAndUnknownMethod: the four gRPC types by their streaming sides, and a method the
// server did not list at registration counted under its own names.
func TestRPCTypeAndUnknownMethod(t *testing.T) {
	for _, tc := range []struct {
		client, server bool
		want           string
	}{{false, false, "unary"}, {true, false, "client_stream"}, {false, true, "server_stream"}, {true, true, "bidi_stream"}} {
		if got := rpcType(tc.client, tc.server); got != tc.want {
			t.Errorf("rpcType(%v, %v) = %q, want %q", tc.client, tc.server, got, tc.want)
		}
	}
	r := newRPCMetrics(rpcBuckets)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	r.register(srv)
	info := &grpc.UnaryServerInfo{FullMethod: "/pkg.Later/Call"}
	_, err := r.unary(t.Context(), nil, info, func(context.Context, any) (any, error) { return nil, status.Error(codes.Aborted, "no") })
	if status.Code(err) != codes.Aborted {
		t.Fatalf("the handler's error came back as %v", err)
	}
	// 17: the first code gRPC does not define, one past the series made for each.
	if _, err := r.unary(t.Context(), nil, info, func(context.Context, any) (any, error) { return nil, status.Error(17, "own") }); status.Code(err) != 17 {
		t.Fatalf("the handler's own code came back as %v", err)
	}
	reg := prom.NewPedanticRegistry()
	reg.MustRegister(r.collectors()...)
	text := gather(t, reg)
	for _, want := range []string{
		`grpc_server_started_total{grpc_method="Call",grpc_service="pkg.Later",grpc_type="unary"} 2`,
		`grpc_server_handled_total{grpc_code="Aborted",grpc_method="Call",grpc_service="pkg.Later",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="Code(17)",grpc_method="Call",grpc_service="pkg.Later",grpc_type="unary"} 1`,
		`grpc_server_msg_sent_total{grpc_method="Call",grpc_service="pkg.Later",grpc_type="unary"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %s in\n%s", want, text)
		}
	}
}

// TestRPCMetricsNoLookup: an RPC of a method registered with the server finds its series made
// at registration: no label lookup, no allocation.
func TestRPCMetricsNoLookup(t *testing.T) {
	r := newRPCMetrics(rpcBuckets)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	r.register(srv)
	info := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	ok := func(context.Context, any) (any, error) { return nil, nil }
	ctx := t.Context()
	if n := testing.AllocsPerRun(100, func() { _, _ = r.unary(ctx, nil, info, ok) }); n != 0 {
		t.Errorf("%v allocations an RPC, want 0", n)
	}
}
