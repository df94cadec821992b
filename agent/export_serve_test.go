package agent

import "time"

// SetSourceStopAfter shortens how long a datagram source keeps a test alive without a
// SourceStart keepalive (for Serve calls made after it); it returns a func restoring it.
func SetSourceStopAfter(d time.Duration) (restore func()) {
	old := sourceStopAfter
	sourceStopAfter = d
	return func() { sourceStopAfter = old }
}

// SourceTestsRunning counts the datagram source tests sending now on served socket id.
func SourceTestsRunning(a *Agent, id string) int {
	a.table.mu.Lock()
	s := a.table.socks[id]
	a.table.mu.Unlock()
	if s == nil || s.serving.Load() == nil {
		return -1
	}
	sv := s.serving.Load()
	sv.testsMu.Lock()
	defer sv.testsMu.Unlock()
	return sv.running
}
