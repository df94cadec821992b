//go:build !linux

package engine

import "syscall"

// platformHas reports whether the platform has the option: the agent sets socket options on
// Linux only, so every option is UNSUPPORTED_OPTION elsewhere rather than half applied.
func platformHas(string) bool { return false }

func sockFamily(int) int { return 0 }

func familyOf(string) int { return -1 }

func isUnsupportedErrno(syscall.Errno) bool { return false }

func congestionAvailable() []string { return nil }

func setOption(int, int, string, *Options) error { return syscall.ENOPROTOOPT }

func readOption(int, int, string, *Options) {}
