//go:build !windows && !darwin

package rlimit

import "syscall"

// capFileLimit: outside macOS the soft limit may be raised to the hard one as it is.
func capFileLimit(*syscall.Rlimit) {}
