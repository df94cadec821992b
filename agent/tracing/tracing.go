// Package tracing turns on OpenTelemetry traces for sockagent and sockctl when the standard
// OTLP environment variables ask for them, and costs nothing when they do not.
//
// Traces are on when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is set
// (and OTEL_TRACES_EXPORTER is not "none", OTEL_SDK_DISABLED not "true"). The exporter speaks
// OTLP over gRPC, or over HTTP when OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL is "http/protobuf";
// the exporters read the other standard variables themselves (headers, TLS, insecure,
// timeouts). The W3C trace context travels in gRPC metadata (otelgrpc), so an agent's RPC
// spans are children of the sockctl step that made them.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
)

// Enabled reports whether the environment asks for traces; read once per process.
var Enabled = sync.OnceValue(enabled)

func enabled() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// Tracing is the process's tracing: on, with an exporter, or off.
type Tracing struct {
	provider *sdktrace.TracerProvider // nil: off
}

// Setup starts exporting traces as service (sockagent or sockctl) with version when the
// environment asks for them (Enabled), and installs the global tracer provider and the W3C
// propagators; otherwise it does nothing and returns an off Tracing. Call Shutdown before the
// process ends, so the last spans are sent.
func Setup(ctx context.Context, service, version string) (*Tracing, error) {
	if !Enabled() {
		return &Tracing{}, nil
	}
	exp, err := exporter(ctx)
	if err != nil {
		return nil, err
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, read last, override the defaults.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithHost(),
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(version)), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &Tracing{provider: tp}, nil
}

func exporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "", "grpc":
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP trace exporter (gRPC): %w", err)
		}
		return exp, nil
	case "http/protobuf":
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP trace exporter (HTTP): %w", err)
		}
		return exp, nil
	}
	return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: use grpc or http/protobuf", proto)
}

// On reports whether traces are exported.
func (t *Tracing) On() bool { return t != nil && t.provider != nil }

// Shutdown sends the spans still buffered and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.On() {
		return nil
	}
	return errors.Join(t.provider.ForceFlush(ctx), t.provider.Shutdown(ctx))
}

// ServerOptions are the gRPC server options that trace every RPC (none when the environment
// does not ask for traces).
func ServerOptions() []grpc.ServerOption {
	if !Enabled() {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler())}
}

// DialOptions are the gRPC dial options that trace every RPC and carry the trace context to
// the agent (none when off).
func DialOptions() []grpc.DialOption {
	if !Enabled() {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler())}
}

// Start starts a span named name under ctx's, from the global tracer provider. When traces
// are off it returns ctx and a span that does nothing, at no cost.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !Enabled() {
		return ctx, noop.Span{}
	}
	return otel.Tracer("github.com/sockagent/sockagent").Start(ctx, name, trace.WithAttributes(attrs...))
}

// Carry returns dst with the span of src, for a context that derives from elsewhere (a reused
// deadline context); dst itself when traces are off.
func Carry(dst, src context.Context) context.Context {
	if !Enabled() {
		return dst
	}
	return trace.ContextWithSpan(dst, trace.SpanFromContext(src))
}

// End ends span, marking it failed with msg when failed.
func End(span trace.Span, failed bool, msg string) {
	if failed {
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}
