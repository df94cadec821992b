//go:build unix

package bench

import (
	"syscall"
	"testing"
	"time"
)

// TestProcessCPU: the process's CPU time is its user plus its system time, as getrusage says
// between two reads around it.
func TestProcessCPU(t *testing.T) {
	total := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		if ru.Stime.Nano() <= 0 {
			t.Fatalf("no system time yet: %+v", ru.Stime)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before := total()
	got := processCPU()
	after := total()
	if got < before || got > after {
		t.Errorf("processCPU %v, want between %v and %v (user + system)", got, before, after)
	}
}
