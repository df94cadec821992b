package auth

import (
	"testing"

	"github.com/sockagent/sockagent/agent/internal/testwatchdog"
)

// A hang fails the tests when SOCKAGENT_TEST_WATCHDOG is set (mutation testing).
func TestMain(m *testing.M) { testwatchdog.Main(m) }
