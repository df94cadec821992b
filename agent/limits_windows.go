//go:build windows

package agent

// openFileLimits is unknown on Windows, which has no RLIMIT_NOFILE.
func openFileLimits() (soft, hard uint64) { return 0, 0 }

// RaiseOpenFileLimit does nothing on Windows, which has no RLIMIT_NOFILE; it returns 0, 0, nil.
func RaiseOpenFileLimit() (before, after uint64, err error) { return 0, 0, nil }
