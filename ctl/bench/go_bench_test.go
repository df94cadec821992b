package bench

import (
	"context"
	"regexp"
	"testing"
	"time"
)

// BenchmarkTable runs each sockbench row as a sub-benchmark, once per iteration, in quick mode
// under -short, and reports its value, baseline and ratio (units: s, bit/s or datagram/s):
//
//	go test -run='^$' -bench='Table/sockctl' -benchtime=1x ./ctl/bench/
//
// The figures are reported, not judged: sockbench (.ci/bench) prints the table with targets.
func BenchmarkTable(b *testing.B) {
	for _, key := range Keys() {
		b.Run(key, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			var row Row
			for b.Loop() {
				rep, err := Run(ctx, Config{Quick: testing.Short(), Only: regexp.MustCompile("^" + key + "$")})
				if err != nil {
					b.Fatal(err)
				}
				if len(rep.Rows) != 1 {
					b.Fatalf("%d rows for %s, want 1", len(rep.Rows), key)
				}
				row = rep.Rows[0]
				if row.Error != "" || row.BaselineError != "" {
					b.Fatalf("%s: %s %s", key, row.Error, row.BaselineError)
				}
			}
			b.ReportMetric(row.Value, row.Unit)
			b.ReportMetric(row.BaselineValue, "baseline-"+row.Unit)
			b.ReportMetric(row.Ratio, "ratio")
			b.Logf("%s: %g %s vs %s %g: ratio %.2fx, target %s, pass %v", row.Figure, row.Value, row.Unit, row.Baseline, row.BaselineValue, row.Ratio, row.Target, row.Pass)
		})
	}
}
