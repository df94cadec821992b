package agent_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/internal/load"
)

// TestLoadCyclesGoroutines: 3,000 open/use/close cycles (the agent dials its own listener,
// accepts, sends and receives 8 bytes, closes both; `go run ./agent/cmd/sockload` runs
// 100,000) leave the process with the goroutines it had and an empty socket table. In
// process, because a sockagent process does not tell its goroutine count; the fd count of a
// process is sockagent's TestLoadCycles. Not parallel: other tests' goroutines would count.
// 3,000: under -race with the other packages testing beside it, ~20s on 2 cores.
func TestLoadCyclesGoroutines(t *testing.T) {
	const n = 3000
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := load.RunCycles(ctx, e.sc, 1, 1); err != nil { // the gRPC connection is up
		t.Fatal(err)
	}
	before := steadyGoroutines(t)
	c, err := load.RunCycles(ctx, e.sc, n, 8)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	after, _ := load.Settle(sctx, before, func() (int, error) { return runtime.NumGoroutine(), nil })
	t.Logf("%d cycles in %s (%.0f/s); goroutines %d -> %d", n, c.Elapsed.Round(time.Millisecond), c.PerSecond(), before, after)
	if after > before {
		t.Errorf("%d goroutines 10s after %d cycles, %d before", after, n, before)
	}
	if got := e.a.NumSockets(); got != 0 {
		t.Errorf("%d sockets open after the cycles, want 0", got)
	}
}

// steadyGoroutines is the goroutine count once it has not changed for 20 polls (5ms apart,
// within 5s): goroutines of earlier tests still exiting would otherwise inflate the baseline
// and hide a leak of as many.
func steadyGoroutines(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	last, same := runtime.NumGoroutine(), 0
	for same < 20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling interval: the unchanged count decides
		if n := runtime.NumGoroutine(); n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
	return last
}
