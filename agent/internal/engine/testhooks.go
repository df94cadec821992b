package engine

import "time"

// SetSourceStopAfter shortens how long a datagram source keeps a test alive without a
// SourceStart keepalive (for Serve calls made after it); it returns a func restoring it. For
// tests: it changes a package-wide value.
func SetSourceStopAfter(d time.Duration) (restore func()) {
	old := sourceStopAfter
	sourceStopAfter = d
	return func() { sourceStopAfter = old }
}

// SourceTestsRunning counts the datagram source tests sending now on served socket id, -1 when
// id is not a served socket. For tests.
func (t *Table) SourceTestsRunning(id string) int {
	t.mu.Lock()
	s := t.socks[id]
	t.mu.Unlock()
	if s == nil || s.serving.Load() == nil {
		return -1
	}
	sv := s.serving.Load()
	sv.testsMu.Lock()
	defer sv.testsMu.Unlock()
	return sv.running
}
