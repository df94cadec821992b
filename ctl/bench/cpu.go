package bench

import (
	"fmt"
	"time"
)

// bytesPerGB is the GB of the CPU-per-GB figures: 10^9 bytes, as Gbit/s counts 10^9 bits.
const bytesPerGB = 1e9

// cpuPerGB is cpu spent per GB moved, in seconds; 0 when nothing moved, or when no CPU time
// was measured (a platform without getrusage), so the figure is left out rather than wrong.
func cpuPerGB(cpu time.Duration, bytes int64) float64 {
	if bytes <= 0 {
		return 0
	}
	return cpu.Seconds() / (float64(bytes) / bytesPerGB)
}

// cpuSpan is the CPU time of this process (every goroutine, the in-process agent's included)
// from its start to its end; phases measured with it run alone, so the delta is theirs.
type cpuSpan struct{ start time.Duration }

// startCPU starts a span at the process's CPU time now.
func startCPU() cpuSpan { return cpuSpan{start: processCPU()} }

// elapsed is the process's CPU time since the span started.
func (s cpuSpan) elapsed() time.Duration { return processCPU() - s.start }

// fillCPU copies r's CPU figures into row, each only beside a measured value, and their ratio
// when both are there.
func fillCPU(row *Row, r result) {
	if row.Value > 0 {
		row.CPUPerGB = r.cpu
	}
	if row.BaselineValue > 0 {
		row.BaselineCPUPerGB = r.baseCPU
	}
	if row.BaselineCPUPerGB > 0 { // and no ratio without our figure: 0 / x
		row.CPURatio = row.CPUPerGB / row.BaselineCPUPerGB
	}
}

// targetString is the row's pass condition as text: the target, and the CPU bound if any.
func (d def) targetString() string {
	if d.cpuLimit > 0 {
		return d.target.String() + ", cpu<=" + trimFloat(d.cpuLimit) + "x"
	}
	return d.target.String()
}

// judge says whether row meets d's target and, when d bounds it, the CPU ratio (a row whose
// CPU could not be measured fails such a bound: it is what the row is there to show).
func (d def) judge(row Row) bool {
	var pass bool
	switch {
	case !row.Measured && row.Value <= 0: // rows whose figure is an error may measure 0
		return false
	case d.target.absolute: // judged on the value alone; the baseline is for reference
		pass = d.target.holds(row.Value, row.Ratio)
	case row.Ratio > 0:
		pass = d.target.holds(row.Value, row.Ratio)
	}
	if d.cpuLimit > 0 {
		pass = pass && row.CPURatio > 0 && row.CPURatio <= d.cpuLimit
	}
	return pass
}

// cpuCells are the CPU-per-GB columns of a row: ours, the baseline's, their ratio ("-" where
// not measured).
func (r Row) cpuCells() []string {
	c := []string{"-", "-", "-"}
	if r.CPUPerGB > 0 {
		c[0] = sig3(r.CPUPerGB) + "s"
	}
	if r.BaselineCPUPerGB > 0 {
		c[1] = sig3(r.BaselineCPUPerGB) + "s"
	}
	if r.CPURatio > 0 {
		c[2] = fmt.Sprintf("%.2fx", r.CPURatio)
	}
	return c
}

// cpuLine names the CPU the figures were taken on, above the table: ratios differ from one
// CPU model to another, so a table without it cannot be compared.
func cpuLine(m Machine) string {
	return fmt.Sprintf("CPU: %s, %d cores", m.CPU, m.Cores)
}
