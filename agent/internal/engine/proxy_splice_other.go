//go:build !linux

package engine

import "net"

// spliceCopy is splice(2)'s fast path, on Linux only: elsewhere the proxy copies.
func spliceCopy(_, _ net.Conn, _ func(int)) (handled bool, err error) { return false, nil }
