//go:build unix

package engine

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time the test process used so far.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestIdleReaperAtRest: a long idle timeout makes the reaper look at most every 30 s, so an
// agent at rest spends no CPU on it. Not parallel: it measures the process's CPU time.
func TestIdleReaperAtRest(t *testing.T) {
	tb := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20, IdleTimeout: time.Hour})
	defer tb.Stop()
	const window = 300 * time.Millisecond
	before, start := cpuTime(t), time.Now()
	for time.Since(start) < window {
		time.Sleep(10 * time.Millisecond) // the process rests; only the reaper could run
	}
	if used := cpuTime(t) - before; used > window/2 {
		t.Errorf("%v of CPU in %v at rest with a reaper every 30s", used, window)
	}
}
