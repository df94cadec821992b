package main

import (
	"context"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// otlpReceiver is an OTLP trace collector over gRPC that keeps every span it is sent.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []recvSpan
	added chan struct{}
}

type recvSpan struct {
	service string
	span    *tracepb.Span
}

func (o *otlpReceiver) Export(_ context.Context, r *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, rs := range r.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				o.spans = append(o.spans, recvSpan{service: service, span: sp})
			}
		}
	}
	select {
	case o.added <- struct{}{}:
	default:
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (o *otlpReceiver) snapshot() []recvSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]recvSpan(nil), o.spans...)
}

// TestTraces: with OTEL_EXPORTER_OTLP_ENDPOINT set, a scenario run through sockctl against a
// sockagent process is one trace: the run a span, each step a span under it, each RPC a
// client span under its step, and the agent's server span of that RPC under the client span,
// across the two processes.
func TestTraces(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	recv := &otlpReceiver{added: make(chan struct{}, 1)}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, recv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+lis.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

	p := startLocal(t)
	file := filepath.Join(t.TempDir(), "traced.yaml")
	scenario := `name: traced
agents: {a: ` + p.addr + `}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: a, dial: {network: tcp, address: "${lis.local_address}", timeout: 5s}, as: cli}
  - {on: a, close: {socket: cli}}
  - {on: a, close: {socket: lis}}
`
	if err := os.WriteFile(file, []byte(scenario), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runSockctl(t, "run", file); code != 0 {
		t.Fatalf("sockctl run: exit %d\n%s\n%s", code, out, errOut)
	}
	if code := p.stop(t); code != 0 { // the agent flushes its spans as it stops
		t.Fatalf("agent exit %d", code)
	}

	byID := map[string]recvSpan{}
	for _, s := range recv.snapshot() {
		byID[hex.EncodeToString(s.span.GetSpanId())] = s
	}
	var run recvSpan
	steps, clients, servers := map[string]recvSpan{}, map[string]recvSpan{}, map[string]recvSpan{}
	traces := map[string]bool{}
	for _, s := range byID {
		traces[hex.EncodeToString(s.span.GetTraceId())] = true
		switch name := s.span.GetName(); {
		case name == "scenario traced" && s.service == "sockctl":
			run = s
		case strings.HasPrefix(name, "step ") && s.service == "sockctl":
			steps[hex.EncodeToString(s.span.GetSpanId())] = s
		case strings.HasPrefix(name, "sockagent.v1.SocketService/") && s.service == "sockctl":
			clients[hex.EncodeToString(s.span.GetSpanId())] = s
		case strings.HasPrefix(name, "sockagent.v1.SocketService/") && s.service == "sockagent":
			servers[hex.EncodeToString(s.span.GetSpanId())] = s
		}
	}
	if run.span == nil {
		for _, s := range byID {
			t.Logf("%s: %s", s.service, s.span.GetName())
		}
		t.Fatalf("no span \"scenario traced\" from sockctl among %d spans", len(byID))
	}
	if len(traces) != 1 {
		t.Errorf("spans of %d traces, want 1", len(traces))
	}
	runID := hex.EncodeToString(run.span.GetSpanId())
	if len(steps) != 4 {
		t.Errorf("%d step spans, want 4", len(steps))
	}
	for _, s := range steps {
		if hex.EncodeToString(s.span.GetParentSpanId()) != runID {
			t.Errorf("step span %q is not a child of the run's span", s.span.GetName())
		}
	}
	// listen, dial, close, close: one client span each, under its step.
	if len(clients) != 4 || len(servers) != 4 {
		t.Errorf("%d client and %d server SocketService spans, want 4 and 4", len(clients), len(servers))
	}
	for _, c := range clients {
		if _, ok := steps[hex.EncodeToString(c.span.GetParentSpanId())]; !ok {
			t.Errorf("client span %q is not under a step span", c.span.GetName())
		}
	}
	for _, s := range servers {
		c, ok := clients[hex.EncodeToString(s.span.GetParentSpanId())]
		if !ok || c.span.GetName() != s.span.GetName() {
			t.Errorf("agent span %q is not under sockctl's client span of the same RPC", s.span.GetName())
		}
	}
}

// TestTracesOffByDefault: without the OTLP variables nothing is exported and no exporter is
// dialled (the agent and sockctl run as usual).
func TestTracesOffByDefault(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	recv := &otlpReceiver{added: make(chan struct{}, 1)}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, recv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	p := startLocal(t)
	if out, errOut, code := runSockctl(t, "--agent", p.addr, "info"); code != 0 {
		t.Fatalf("sockctl info: exit %d\n%s\n%s", code, out, errOut)
	}
	p.stop(t)
	select {
	case <-recv.added:
		t.Fatal("spans exported with the OTLP variables unset")
	case <-time.After(200 * time.Millisecond):
	}
}
