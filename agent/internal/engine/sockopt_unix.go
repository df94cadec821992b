//go:build !windows

package engine

import "syscall"

// setBroadcast turns SO_BROADCAST on or off on a socket's file descriptor.
func setBroadcast(fd uintptr, on bool) error {
	v := 0
	if on {
		v = 1
	}
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, v)
}
