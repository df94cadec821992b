//go:build !windows

// Package rlimit reads and raises the process's open-file limit (RLIMIT_NOFILE), which bounds
// how many sockets the agent can hold.
package rlimit

import (
	"fmt"
	"syscall"
)

// Current returns the soft and hard RLIMIT_NOFILE.
func Current() (soft, hard uint64) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, 0
	}
	return uint64(r.Cur), uint64(r.Max)
}

// Raise raises the process's soft open-file limit (RLIMIT_NOFILE) to its hard
// limit, so the agent can hold as many sockets as the system lets it; on macOS to at most
// kern.maxfilesperproc, the most setrlimit accepts. It returns the soft limit before and
// after. The Go runtime raises the soft limit at start too, but only to the hard limit minus
// one (syscall's init), so "before" is usually hard-1. Call it from a daemon's main, not from a
// library: the limit is the whole process's.
func Raise() (before, after uint64, err error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, 0, fmt.Errorf("getrlimit RLIMIT_NOFILE: %w", err)
	}
	before = uint64(r.Cur)
	if r.Cur >= r.Max {
		return before, before, nil
	}
	want := r
	want.Cur = r.Max
	capFileLimit(&want)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return before, before, fmt.Errorf("setrlimit RLIMIT_NOFILE soft %d (hard %d): %w", uint64(want.Cur), uint64(r.Max), err)
	}
	after, _ = Current()
	return before, after, nil
}
