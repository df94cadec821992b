// Package testwatchdog ends a test binary that is still running past a deadline, with exit
// status 1 and a message, so that a hang is a test failure rather than a run that only an
// outer timeout stops. Mutation testing needs this: gremlins counts a mutant whose tests fail
// as killed, but one whose tests hang only as "timed out", after a timeout it derives from the
// package's first run, too short on a loaded machine and too long for a hang.
//
// A package opts in with
//
//	func TestMain(m *testing.M) { testwatchdog.Main(m) }
//
// and the watchdog is armed only when SOCKAGENT_TEST_WATCHDOG holds a duration (.ci/mutation
// sets it); plain `go test` runs are unchanged.
package testwatchdog

import (
	"fmt"
	"io"
	"os"
	"testing"
	"time"
)

// Env names the variable holding the deadline, a Go duration such as "30s".
const Env = "SOCKAGENT_TEST_WATCHDOG"

// Main runs the package's tests under the watchdog and exits with their status.
func Main(m *testing.M) {
	stop, err := Arm(os.Getenv(Env), os.Stderr, os.Exit)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// Arm starts the watchdog for the duration in v (nothing when v is empty): once it passes,
// it writes why to w and calls exit(1). The returned stop disarms it.
func Arm(v string, w io.Writer, exit func(int)) (stop func(), err error) {
	if v == "" {
		return func() {}, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return nil, fmt.Errorf("%s=%q: want a positive duration such as 30s", Env, v)
	}
	t := time.AfterFunc(d, func() {
		fmt.Fprintf(w, "testwatchdog: the tests still run after %v (%s): taken as a hang, failing\n", d, Env)
		exit(1)
	})
	return func() { t.Stop() }, nil
}
