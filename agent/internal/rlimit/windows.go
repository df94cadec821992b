//go:build windows

package rlimit

// Current is unknown on Windows, which has no RLIMIT_NOFILE.
func Current() (soft, hard uint64) { return 0, 0 }

// Raise does nothing on Windows, which has no RLIMIT_NOFILE; it returns 0, 0, nil.
func Raise() (before, after uint64, err error) { return 0, 0, nil }
