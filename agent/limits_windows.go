//go:build windows

package agent

// openFileLimits is unknown on Windows, which has no RLIMIT_NOFILE.
func openFileLimits() (soft, hard uint64) { return 0, 0 }
