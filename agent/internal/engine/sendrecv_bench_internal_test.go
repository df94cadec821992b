//go:build !windows

package engine

import (
	"io"
	"slices"
	"testing"
	"time"
)

// BenchmarkRatioEngineSendRecvVsRaw: the engine's own cost of a Send of 64 bytes and an exact
// Recv of them on a loopback TCP pair, without gRPC, against the same write and read on raw Go
// connections, alternating every iteration (each side twice, the second timed). It reports
// the medians and their paired ratio; the difference is the engine's lookup, admission, gate
// and counting (about 0.8 µs, 1.38x, on the 2-core VM of docs/performance.md).
func BenchmarkRatioEngineSendRecvVsRaw(b *testing.B) {
	tb, ctx, cli, srv := pairedTable(b, time.Second, 1<<20, nil)
	ra, rb := rawPair(b)
	payload := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	buf := make([]byte, len(payload))
	engine := func() {
		if _, err := tb.Send(ctx, cli, payload, time.Second); err != nil {
			b.Fatal(err)
		}
		data, _, err := tb.Recv(ctx, srv, 0, uint32(len(payload)), time.Second)
		if err != nil || len(data) != len(payload) {
			b.Fatalf("Recv: %d bytes, %v", len(data), err)
		}
	}
	raw := func() {
		if _, err := ra.Write(payload); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(rb, buf); err != nil {
			b.Fatal(err)
		}
	}
	timed := func(run func()) time.Duration {
		run()
		t0 := time.Now()
		run()
		return time.Since(t0)
	}
	var es, rs []time.Duration
	var ratios []float64
	for i := 0; b.Loop(); i++ {
		var e, r time.Duration
		if i%2 == 0 {
			e, r = timed(engine), timed(raw)
		} else {
			r, e = timed(raw), timed(engine)
		}
		es, rs, ratios = append(es, e), append(rs, r), append(ratios, float64(e)/float64(r))
	}
	slices.Sort(es)
	slices.Sort(rs)
	slices.Sort(ratios)
	b.ReportMetric(float64(es[len(es)/2].Nanoseconds()), "engine-p50-ns")
	b.ReportMetric(float64(rs[len(rs)/2].Nanoseconds()), "raw-p50-ns")
	b.ReportMetric(ratios[len(ratios)/2], "ratio")
}
