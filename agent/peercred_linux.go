package agent

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// peerUID asks the kernel which user the process at the other end of a UNIX socket runs as.
func peerUID(c syscall.Conn) (int, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	cerr := rc.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cerr != nil || err != nil {
		return 0, false
	}
	return int(cred.Uid), true
}
