package tracing

import (
	"context"
	"testing"
)

// TestOff: without the OTLP variables, tracing adds no gRPC option and a span costs no
// allocation (the scenario runner starts one per step).
func TestOff(t *testing.T) {
	if Enabled() {
		t.Skip("OTEL_EXPORTER_OTLP_ENDPOINT is set in this environment")
	}
	if DialOptions() != nil || ServerOptions() != nil {
		t.Fatal("gRPC options with traces off")
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		c, span := Start(ctx, "step 1 send")
		End(span, true, "failed")
		_ = Carry(c, ctx)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per span with traces off, want 0", allocs)
	}
	tr, err := Setup(ctx, "test", "v0")
	if err != nil || tr.On() {
		t.Fatalf("Setup with traces off: on=%v err=%v", tr.On(), err)
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_SDK_DISABLED": "true"}, false},
	} {
		for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"} {
			t.Setenv(k, tc.env[k])
		}
		if got := enabled(); got != tc.want {
			t.Errorf("%v: enabled %v, want %v", tc.env, got, tc.want)
		}
	}
}

func BenchmarkStartOff(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		_, span := Start(ctx, "step")
		span.End()
	}
}

// TestProtocol: OTLP over gRPC by default, over HTTP when asked, and a clear error otherwise.
func TestProtocol(t *testing.T) {
	ctx := context.Background()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	for _, tc := range []struct{ proto, wantErr string }{
		{"", ""}, {"grpc", ""}, {"http/protobuf", ""}, {"http/json", `OTEL_EXPORTER_OTLP_PROTOCOL "http/json": use grpc or http/protobuf`},
	} {
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.proto)
		exp, err := exporter(ctx)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.proto, err)
		case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
			t.Errorf("%q: error %v, want %q", tc.proto, err, tc.wantErr)
		}
		if exp != nil {
			_ = exp.Shutdown(ctx)
		}
	}
}
