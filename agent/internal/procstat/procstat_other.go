//go:build !linux

package procstat

// readOS tells nothing beyond goroutines outside Linux.
func readOS(*Stats) {}
