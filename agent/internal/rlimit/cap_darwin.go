//go:build darwin

package rlimit

import "syscall"

// openMax is OPEN_MAX of <sys/syslimits.h>: macOS refuses a soft RLIMIT_NOFILE above it when
// kern.maxfilesperproc cannot be read.
const openMax = 10240

// capFileLimit lowers a soft RLIMIT_NOFILE to what macOS's setrlimit accepts:
// kern.maxfilesperproc (the hard limit is often "unlimited", which setrlimit refuses).
func capFileLimit(r *syscall.Rlimit) {
	limit := uint64(openMax)
	if n, err := syscall.SysctlUint32("kern.maxfilesperproc"); err == nil && n > 0 {
		limit = uint64(n)
	}
	r.Cur = min(r.Cur, limit)
}
