package engine

import (
	"os"
	"testing"

	"github.com/sockagent/sockagent/agent/internal/testwatchdog"
)

// A hang fails the tests when SOCKAGENT_TEST_WATCHDOG is set (mutation testing).
func TestMain(m *testing.M) { testwatchdog.Main(m) }

// stepAsideInMutation skips a test in .ci/mutation's runs (SOCKAGENT_MUTATION set) that
// guards none of the files it mutates (errors, admission, sessions, exact reads) and costs
// every mutant seconds: the proxy's toxics measure real time, the UNIX path races burn CPU.
// The plain test runs, CI's included, run them all.
func stepAsideInMutation(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("SOCKAGENT_MUTATION") != "" {
		t.Skipf("SOCKAGENT_MUTATION: %s steps aside in mutation runs", what)
	}
}
