//go:build windows

package daemon

import (
	"net"
	"os"
)

// listenOwnerOnly binds a UNIX socket; Windows has no umask: the socket takes the directory's
// access rules.
func listenOwnerOnly(path string) (net.Listener, error) { return net.Listen("unix", path) }

// ownerOf is unknown on Windows.
func ownerOf(os.FileInfo) (int, bool) { return 0, false }
