package agent

import (
	"time"

	"github.com/sockagent/sockagent/agent/internal/engine"
)

// SetSourceStopAfter shortens how long a datagram source keeps a test alive without a
// SourceStart keepalive (for Serve calls made after it); it returns a func restoring it.
func SetSourceStopAfter(d time.Duration) (restore func()) { return engine.SetSourceStopAfter(d) }

// SourceTestsRunning counts the datagram source tests sending now on served socket id.
func SourceTestsRunning(a *Agent, id string) int { return a.table.SourceTestsRunning(id) }
