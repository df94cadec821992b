package runner

// Where the runner's time for the 1,000-step scenario of BenchmarkRatioScenario1000 goes,
// phase by phase:
//
//	GOMAXPROCS=1 go test -run='^$' -bench=RunPhases -benchtime=20x ./ctl/runner/

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sockagent/sockagent/ctl/scenario"
)

// BenchmarkRunPhases runs the phases of Run one after the other (planning, then connecting,
// which Run overlaps) and reports each one's mean.
func BenchmarkRunPhases(b *testing.B) {
	addr := benchAgent(b)
	f := benchScenario(b, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var plan, connect, steps, cleanup, closing time.Duration
	for b.Loop() {
		cfg := Config{File: f, Agents: map[string]Target{"a": {Addr: addr}}, StepTimeout: DefaultStepTimeout,
			SessionTTL: DefaultSessionTTL, Getenv: func(string) string { return "" }}
		r := newRunner(cfg)
		r.steps = make([]StepReport, 0, CountSteps(f.Steps))
		t0 := time.Now()
		r.plans = planSteps(f.Path, f.Steps)
		t1 := time.Now()
		for _, a := range r.connect(ctx) {
			if !a.Reachable {
				b.Fatalf("agent %s: %s", a.Name, a.Error)
			}
		}
		t2 := time.Now()
		r.runSteps(ctx, f.Steps, "", nil)
		t3 := time.Now()
		cl := r.cleanup(ctx)
		t4 := time.Now()
		r.closeRemotes()
		t5 := time.Now()
		if len(r.steps) != benchSteps || len(cl) != 3 {
			b.Fatalf("%d steps, %d cleaned up; want %d and 3", len(r.steps), len(cl), benchSteps)
		}
		for _, s := range r.steps {
			if s.Status != StatusPassed {
				b.Fatalf("step %s %s: %s", s.Index, s.Status, s.Message)
			}
		}
		plan, connect, steps = plan+t1.Sub(t0), connect+t2.Sub(t1), steps+t3.Sub(t2)
		cleanup, closing = cleanup+t4.Sub(t3), closing+t5.Sub(t4)
	}
	n := float64(b.N) * float64(time.Millisecond)
	b.ReportMetric(float64(plan)/n, "plan-ms")
	b.ReportMetric(float64(connect)/n, "connect-ms")
	b.ReportMetric(float64(steps)/n, "steps-ms")
	b.ReportMetric(float64(cleanup)/n, "cleanup-ms")
	b.ReportMetric(float64(closing)/n, "close-ms")
}

// BenchmarkPlanSteps: planning the 1,000 steps, which Run does once per run.
func BenchmarkPlanSteps(b *testing.B) {
	f := benchScenario(b, "127.0.0.1:1")
	b.ReportAllocs()
	for b.Loop() {
		planSteps(f.Path, f.Steps)
	}
}

// BenchmarkLoadScenario: reading, parsing and validating the 1,000-step file, which
// 'sockctl run' does before the run.
func BenchmarkLoadScenario(b *testing.B) {
	f := benchScenario(b, "127.0.0.1:1")
	b.ReportAllocs()
	for b.Loop() {
		data, err := os.ReadFile(f.Path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := scenario.Parse(f.Path, data); err != nil {
			b.Fatal(err)
		}
	}
}
