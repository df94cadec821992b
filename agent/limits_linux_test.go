package agent_test

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/sockagent/sockagent/agent"

	"github.com/sockagent/sockagent/lab/labtest"
)

// RaiseOpenFileLimit takes a lowered soft limit back up to the hard one, and says so. Not
// parallel: the limit is the whole test process's.
func TestRaiseOpenFileLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	if orig.Max < 2048 {
		labtest.SkipOutsideCI(t, fmt.Sprintf("hard open-file limit %d: too low to lower the soft one safely", orig.Max))
	}
	low := syscall.Rlimit{Cur: orig.Max - 1, Max: orig.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	before, after, err := agent.RaiseOpenFileLimit()
	if err != nil || before != orig.Max-1 || after != orig.Max {
		t.Errorf("RaiseOpenFileLimit() = %d, %d, %v; want %d, %d, nil", before, after, err, orig.Max-1, orig.Max)
	}
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil || now.Cur != orig.Max || now.Max != orig.Max {
		t.Errorf("limit now %d/%d, want %d/%d", now.Cur, now.Max, orig.Max, orig.Max)
	}
	// Already at the hard limit: nothing to do.
	before, after, err = agent.RaiseOpenFileLimit()
	if err != nil || before != orig.Max || after != orig.Max {
		t.Errorf("second RaiseOpenFileLimit() = %d, %d, %v; want %d, %d, nil", before, after, err, orig.Max, orig.Max)
	}
}
