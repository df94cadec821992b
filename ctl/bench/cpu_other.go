//go:build !unix

package bench

import "time"

// processCPU is 0 here: without getrusage the CPU-per-GB figures are left out.
func processCPU() time.Duration { return 0 }
