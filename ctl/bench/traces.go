package bench

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/tracing"
	"github.com/sockagent/sockagent/ctl/localagent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// errTracesOn is the traces row's error when the environment turns traces on: the row measures
// what the off path costs, so it needs them off.
var errTracesOn = errors.New("traces are on in this environment (OTEL_EXPORTER_OTLP_*ENDPOINT is set): the traces row measures the off path; unset it")

// tracesRow alternates Send+Recv through the tracing hooks as sockctl and sockagent have them
// with traces off (the agent's tracing.ServerOptions, the client's tracing.DialOptions, a
// tracing.Start span around every call as the runner's steps have) with the same on the
// bench's agent and connection, which have no hooks; the note gives Send+Recv with traces on,
// exported to an in-process exporter, against the same baseline, for reference.
func tracesRow(ctx context.Context, e *env) result {
	if tracing.Enabled() {
		return result{err: errTracesOn}
	}
	off, err := localagent.Start(agent.Config{}) // appends tracing.ServerOptions(): none when off
	if err != nil {
		return result{err: err}
	}
	defer off.Close()
	conn, err := grpc.NewClient(off.Addr(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, tracing.DialOptions()...)...)
	if err != nil {
		return result{err: err}
	}
	defer conn.Close()
	offSC := sockagentv1.NewSocketServiceClient(conn)
	offCli, offSrv, closeOff, err := tcpPairOn(ctx, offSC)
	if err != nil {
		return result{err: err}
	}
	defer closeOff()
	cli, srv, closeBase, err := e.tcpPair(ctx)
	if err != nil {
		return result{err: err}
	}
	defer closeBase()
	payload := pattern(pingSize)
	n := e.iterations(2000, 200)
	r := alternate(ctx, n, 20,
		func(ctx context.Context) error {
			sctx, span := tracing.Start(ctx, "step")
			err := sendRecv(sctx, offSC, offCli, offSrv, payload)
			tracing.End(span, err != nil, "")
			return err
		},
		func(ctx context.Context) error { return sendRecv(ctx, e.sc, cli, srv, payload) })
	if r.err == nil && r.baseErr == nil {
		if on, err := tracesOn(ctx, e, n, payload, cli, srv); err != nil {
			r.note = "traces on: " + err.Error()
		} else {
			r.note = fmt.Sprintf("traces on (otelgrpc on both ends, batched to an in-process exporter): %s vs %s, %.2fx",
				formatSeconds(on.value), formatSeconds(on.base), on.ratio)
		}
	}
	return r
}

// tracesOn alternates Send+Recv on an agent whose RPCs are traced, from a client whose RPCs
// are traced too (spans batched to an in-memory exporter, as tracing.Setup batches to OTLP),
// with the same on the bench's agent.
func tracesOn(ctx context.Context, e *env, n int, payload []byte, cli, srv string) (result, error) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	prop := propagation.TraceContext{}
	on, err := localagent.Start(agent.Config{ServerOptions: []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop)))}})
	if err != nil {
		return result{}, err
	}
	defer on.Close()
	conn, err := grpc.NewClient(on.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop))))
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	onSC := sockagentv1.NewSocketServiceClient(conn)
	onCli, onSrv, closeOn, err := tcpPairOn(ctx, onSC)
	if err != nil {
		return result{}, err
	}
	defer closeOn()
	tracer := tp.Tracer("sockbench")
	r := alternate(ctx, n, 20,
		func(ctx context.Context) error {
			sctx, span := tracer.Start(ctx, "step")
			defer span.End()
			return sendRecv(sctx, onSC, onCli, onSrv, payload)
		},
		func(ctx context.Context) error { return sendRecv(ctx, e.sc, cli, srv, payload) })
	if r.err != nil {
		return r, r.err
	}
	if r.baseErr != nil {
		return r, r.baseErr
	}
	if err := tp.ForceFlush(ctx); err != nil {
		return r, fmt.Errorf("flush the spans: %w", err)
	}
	// Each call is a step span, a client span per RPC and a server span per RPC.
	if got := len(exp.GetSpans()); got < 5*n {
		return r, fmt.Errorf("%d spans exported, want at least %d: traces were not on", got, 5*n)
	}
	return r, nil
}
