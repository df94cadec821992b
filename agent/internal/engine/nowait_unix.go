//go:build !windows

package engine

import (
	"io"
	"net"
	"os"
	"syscall"
)

// noWait is one direction of a socket's I/O tried without waiting: a read that takes what the
// kernel holds now, a write of what the send buffer takes now. A Send or Recv that does not
// have to wait (most of them) then costs one system call, and arms no deadline and no wake-up
// on cancel (the usual way's cost, about a microsecond). A socket has one noWait for reads and
// one for writes, each used under its gate, one call at a time; its function is made on first
// use, so later calls allocate nothing.
type noWait struct {
	rc    syscall.RawConn
	off   bool // the stream has no file descriptor to try (TLS)
	op    func(fd uintptr) bool
	buf   []byte
	n     int
	errno error
}

// read reads into buf what the kernel holds for the stream c now: data, the end of the stream
// (io.EOF), or the socket's error, each as c.Read would return it (ok). ok is false when the
// read would have to wait, or cannot be tried here (a TLS stream, a closed socket, a read
// deadline already past): the caller then reads the usual way, which says what is wrong if
// anything is.
func (w *noWait) read(c net.Conn, buf []byte) (n int, ok bool, err error) {
	n, ok, err = w.try(c, buf, "read", syscall.Read, syscall.RawConn.Read)
	if ok && err == nil && n == 0 {
		return 0, true, io.EOF
	}
	return n, ok, err
}

// write writes to the stream c what its send buffer takes now: n bytes of b (all of them, or
// part when the buffer fills), or the socket's error as c.Write would return it (ok). ok is
// false when nothing could be written without waiting, or the write cannot be tried here (see
// read): the caller then writes the rest the usual way.
func (w *noWait) write(c net.Conn, b []byte) (n int, ok bool, err error) {
	return w.try(c, b, "write", syscall.Write, syscall.RawConn.Write)
}

// try runs sys (syscall.Read or syscall.Write) once on b through raw (the RawConn's Read or
// Write, which holds the descriptor against a concurrent Close); op names it in an error.
func (w *noWait) try(c net.Conn, b []byte, op string, sys func(int, []byte) (int, error), raw func(syscall.RawConn, func(uintptr) bool) error) (int, bool, error) {
	if len(b) == 0 || !w.ready(c, sys) {
		return 0, false, nil
	}
	w.buf = b
	rerr := raw(w.rc, w.op)
	n, errno := w.n, w.errno
	w.buf, w.errno = nil, nil
	if rerr != nil || errno == syscall.EAGAIN || errno == syscall.EINTR {
		return 0, false, nil
	}
	if errno != nil {
		return 0, true, nowError(c, op, errno)
	}
	return n, true, nil
}

// ready makes w's function (sys: syscall.Read or syscall.Write) on first use; false when c has
// no file descriptor.
func (w *noWait) ready(c net.Conn, sys func(int, []byte) (int, error)) bool {
	if w.op != nil {
		return true
	}
	if w.off {
		return false
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		w.off = true
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	w.rc = rc
	w.op = func(fd uintptr) bool {
		w.n, w.errno = sys(int(fd), w.buf) // n is -1 with an errno: read and write then return 0
		return true                        // never wait here
	}
	return true
}

// nowError is errno as the net package returns it from c's op ("read", "write").
func nowError(c net.Conn, op string, errno error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
