package bench

import "time"

// bytesPerGB is the GB of the CPU-per-GB figures: 10^9 bytes, as Gbit/s counts 10^9 bits.
const bytesPerGB = 1e9

// cpuPerGB is cpu spent per GB moved, in seconds; 0 when nothing moved or no CPU time was
// measured (a platform without getrusage), so the figure is left out rather than wrong.
func cpuPerGB(cpu time.Duration, bytes int64) float64 {
	if bytes <= 0 || cpu <= 0 {
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
