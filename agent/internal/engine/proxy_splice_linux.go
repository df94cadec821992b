package engine

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// spliceMax is the pipe's size and the most one splice moves: net's own splice uses the same.
const spliceMax = 1 << 20

// spliceCopy moves src to dst through a pipe with splice(2), as net's TCPConn.ReadFrom does,
// so the bytes never enter the agent's memory; unlike it, it counts every batch as it is
// written, so a proxy's counters are live while a connection lasts. It handles TCP and UNIX
// stream connections (handled false otherwise, and when no pipe can be made), and returns nil
// at src's end of stream, or the failure (a read deadline's included).
func spliceCopy(dst, src net.Conn, count func(int)) (handled bool, err error) {
	srcRC, ok := rawConn(src)
	if !ok {
		return false, nil
	}
	dstRC, ok := rawConn(dst)
	if !ok {
		return false, nil
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return false, nil
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	_, _ = unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, spliceMax) // a smaller pipe only means more calls
	for {
		var (
			n    int64
			serr error
		)
		// On EAGAIN (nothing to read) the callback says "not done", and the poller waits for
		// src to be readable, within its read deadline.
		if err := srcRC.Read(func(fd uintptr) bool {
			n, serr = unix.Splice(int(fd), nil, p[1], nil, spliceMax, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			return serr != unix.EAGAIN
		}); err != nil {
			return true, err
		}
		switch {
		case serr == unix.EINTR:
			continue
		case serr != nil:
			return true, os.NewSyscallError("splice", serr)
		case n == 0:
			return true, nil
		}
		for left := n; left > 0; {
			var (
				m    int64
				werr error
			)
			if err := dstRC.Write(func(fd uintptr) bool {
				m, werr = unix.Splice(p[0], nil, int(fd), nil, int(left), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				return werr != unix.EAGAIN
			}); err != nil {
				return true, err
			}
			if werr == unix.EINTR {
				continue
			}
			if werr != nil {
				return true, os.NewSyscallError("splice", werr)
			}
			left -= m
			count(int(m))
		}
	}
}

// rawConn is the raw connection of a TCP or UNIX stream connection.
func rawConn(c net.Conn) (syscall.RawConn, bool) {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil, false
	}
	rc, err := sc.SyscallConn()
	return rc, err == nil
}
