//go:build linux || darwin

package agent

import "syscall"

// peerUID asks the kernel which user the process at the other end of a UNIX socket runs as.
func peerUID(c syscall.Conn) (int, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var uid int
	cerr := rc.Control(func(fd uintptr) { uid, err = sockPeerUID(int(fd)) })
	if cerr != nil || err != nil {
		return 0, false
	}
	return uid, true
}
