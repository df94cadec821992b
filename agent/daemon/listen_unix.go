//go:build !windows

package daemon

import (
	"net"
	"os"
	"syscall"
)

// listenOwnerOnly binds a UNIX socket that only the agent's user may connect to: the socket
// file is created with mode 0600 (umask 0177 during the bind), never world-writable even for
// an instant.
func listenOwnerOnly(path string) (net.Listener, error) {
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}

// ownerOf returns the uid owning fi's file.
func ownerOf(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
