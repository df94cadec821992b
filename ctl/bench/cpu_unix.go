//go:build unix

package bench

import (
	"syscall"
	"time"
)

// processCPU is this process's user + system CPU time (getrusage RUSAGE_SELF: every thread),
// 0 when the kernel does not say.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
