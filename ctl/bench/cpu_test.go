package bench

import (
	"slices"
	"testing"
	"time"
)

// TestCPUPerGB: seconds of CPU per 10^9 bytes, and nothing when either side is missing.
func TestCPUPerGB(t *testing.T) {
	for _, tc := range []struct {
		cpu   time.Duration
		bytes int64
		want  float64
	}{
		{time.Second, 1e9, 1},
		{500 * time.Millisecond, 2e9, 0.25},
		{3 * time.Second, 1e9 / 2, 6},
		{time.Second, 1e6, 1000},
		{0, 1e9, 0},
		{time.Second, 0, 0},
		{time.Second, -5, 0},
	} {
		if got := cpuPerGB(tc.cpu, tc.bytes); got != tc.want {
			t.Errorf("cpuPerGB(%v, %d) = %v, want %v", tc.cpu, tc.bytes, got, tc.want)
		}
	}
}

// sink keeps the busy loop's result alive.
var sink uint64

// burn does a fixed amount of work: 10^8 dependent steps take at least 10 ms of CPU on any
// machine (a step is at least one cycle; no CPU runs at 10 GHz), whatever the load.
func burn() {
	x := uint64(1)
	for i := range uint64(100_000_000) {
		x = x*6364136223846793005 + i
	}
	sink += x
}

// TestCPUSpan: a span counts the CPU this process spends after it starts: at least the
// fixed work done in it, and not the work done before it.
func TestCPUSpan(t *testing.T) {
	if processCPU() <= 0 {
		t.Fatal("no CPU time from getrusage")
	}
	s := startCPU()
	burn()
	got := s.elapsed()
	after := startCPU()
	idle := after.elapsed()
	if got < 10*time.Millisecond || got > 20*time.Second {
		t.Errorf("span of 10^8 steps: %v of CPU, want 10ms..20s", got)
	}
	if idle >= got/2 {
		t.Errorf("a span started after the work counts %v, the work's own %v: want well under", idle, got)
	}
}

// TestJudgeCPU: a row with a CPU bound passes only when its target and its CPU ratio both
// hold; without the CPU figures it fails; rows without a bound ignore the CPU.
func TestJudgeCPU(t *testing.T) {
	d := def{target: target{atLeast: true, limit: 0.5}, cpuLimit: 2.5}
	for _, tc := range []struct {
		name string
		row  Row
		want bool
	}{
		{"both hold", Row{Value: 1, Ratio: 0.6, CPURatio: 2.4}, true},
		{"at the bounds", Row{Value: 1, Ratio: 0.5, CPURatio: 2.5}, true},
		{"CPU over", Row{Value: 1, Ratio: 0.6, CPURatio: 2.51}, false},
		{"rate under", Row{Value: 1, Ratio: 0.49, CPURatio: 2}, false},
		{"no CPU figure", Row{Value: 1, Ratio: 0.6}, false},
		{"no value", Row{Ratio: 0.6, CPURatio: 2}, false},
	} {
		if got := d.judge(tc.row); got != tc.want {
			t.Errorf("%s: judge %+v = %v, want %v", tc.name, tc.row, got, tc.want)
		}
	}
	plain := def{target: target{limit: 1.9}}
	if !plain.judge(Row{Value: 1, Ratio: 1.9, CPURatio: 9}) || plain.judge(Row{Value: 1, Ratio: 1.91}) {
		t.Error("a row without a CPU bound is judged on its target alone")
	}
	abs := def{target: target{absolute: true, limit: 0.005}}
	if !abs.judge(Row{Value: 0.004}) || abs.judge(Row{Value: 0.006, Ratio: 0.1}) {
		t.Error("an absolute target is judged on the value alone")
	}
	if got := d.targetString(); got != ">=0.5x, cpu<=2.5x" {
		t.Errorf("targetString %q", got)
	}
	if got := plain.targetString(); got != "<=1.9x" {
		t.Errorf("targetString %q", got)
	}
}

// TestCPUCells: how the CPU columns print, and the summary line with them.
func TestCPUCells(t *testing.T) {
	r := Row{Figure: "attach relay throughput", Baseline: "raw", Unit: "bit/s", Value: 5e9, BaselineValue: 1e10, Ratio: 0.5,
		CPUPerGB: 1.234, BaselineCPUPerGB: 0.5, CPURatio: 2.468, Target: ">=0.5x, cpu<=2.5x", Pass: true}
	if got, want := r.cells(), []string{"attach relay throughput", "5.00 Gbit/s", "raw", "10.0 Gbit/s", "0.50x", "1.23s", "0.50s", "2.47x", ">=0.5x, cpu<=2.5x", "pass"}; !slices.Equal(got, want) {
		t.Errorf("cells %q, want %q", got, want)
	}
	if got, want := summaryLine(r), "5.00 Gbit/s vs 10.0 Gbit/s, ratio 0.50x, CPU/GB 1.23s vs 0.50s, ratio 2.47x, target >=0.5x, cpu<=2.5x"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	r.CPURatio, r.BaselineCPUPerGB = 0, 0
	if got, want := r.cpuCells(), []string{"1.23s", "-", "-"}; !slices.Equal(got, want) {
		t.Errorf("cpu cells %q, want %q", got, want)
	}
	if got, want := summaryLine(r), "5.00 Gbit/s vs 10.0 Gbit/s, ratio 0.50x, target >=0.5x, cpu<=2.5x"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	if got := cpuLine(Machine{CPU: "AMD EPYC 7B13", Cores: 2}); got != "CPU: AMD EPYC 7B13, 2 cores" {
		t.Errorf("cpu line %q", got)
	}
}

// TestFillCPU: a side's CPU figure goes in beside its measured value only, and the ratio only
// when both sides have one.
func TestFillCPU(t *testing.T) {
	r := result{cpu: 1.5, baseCPU: 0.5}
	for _, tc := range []struct {
		name                string
		value, base         float64
		cpu, baseCPU, ratio float64
	}{
		{"both", 1, 2, 1.5, 0.5, 3},
		{"no value", 0, 2, 0, 0.5, 0},
		{"no baseline", 1, 0, 1.5, 0, 0},
		{"neither", 0, 0, 0, 0, 0},
	} {
		row := Row{Value: tc.value, BaselineValue: tc.base}
		fillCPU(&row, r)
		if row.CPUPerGB != tc.cpu || row.BaselineCPUPerGB != tc.baseCPU || row.CPURatio != tc.ratio {
			t.Errorf("%s: cpu %v base %v ratio %v; want %v %v %v", tc.name, row.CPUPerGB, row.BaselineCPUPerGB, row.CPURatio, tc.cpu, tc.baseCPU, tc.ratio)
		}
	}
	row := Row{Value: 1, BaselineValue: 1}
	fillCPU(&row, result{cpu: 1})
	if row.CPUPerGB != 1 || row.CPURatio != 0 {
		t.Errorf("baseline CPU not measured: cpu %v ratio %v; want 1 and no ratio", row.CPUPerGB, row.CPURatio)
	}
}
