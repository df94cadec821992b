package ctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// openPTY opens a pseudo-terminal and returns its master and its slave, a real terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pty's slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// drain closes the slave and returns what the master received.
func drain(t *testing.T, master, slave *os.File) string {
	t.Helper()
	slave.Close()
	var buf bytes.Buffer
	_, err := io.Copy(&buf, master)
	if err != nil && !errors.Is(err, syscall.EIO) { // EIO: the slave is closed
		t.Fatalf("read the pty: %v", err)
	}
	return buf.String()
}

// recv on a terminal ends its output with a newline when the data has none; elsewhere the
// bytes are written as they came.
func TestRecvOnTerminal(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	var l sockagentv1.ListenResponse
	okJSON(t, addr, &l, "listen", "tcp", "127.0.0.1:0")
	var d sockagentv1.DialResponse
	okJSON(t, addr, &d, "dial", "tcp", l.GetSocket().GetLocalAddress())
	var a sockagentv1.AcceptResponse
	okJSON(t, addr, &a, "accept", l.GetSocket().GetSocketId())
	cli, srv := d.GetSocket().GetSocketId(), a.GetSocket().GetSocketId()
	recvOn := func(stdout io.Writer) int {
		return run(context.Background(), []string{"--agent", addr, "recv", srv, "--exact", "5"}, nil, nil, stdout, io.Discard)
	}
	for _, tc := range []struct{ data, want string }{
		{"Hello", "Hello\r\n"}, // the terminal shows \n as \r\n
		{"Hi!\n\n", "Hi!\r\n\r\n"},
	} {
		ok(t, addr, "send", cli, tc.data[:5])
		master, slave := openPTY(t)
		if code := recvOn(slave); code != ExitOK {
			t.Fatalf("recv: exit %d", code)
		}
		if got := drain(t, master, slave); got != tc.want {
			t.Errorf("terminal shows %q, want %q", got, tc.want)
		}
	}
	ok(t, addr, "send", cli, "World")
	var buf bytes.Buffer
	if code := recvOn(&buf); code != ExitOK || buf.String() != "World" {
		t.Errorf("recv to a pipe: exit %d, %q; want the bytes alone", code, buf.String())
	}
	for _, id := range []string{cli, srv, l.GetSocket().GetSocketId()} {
		ok(t, addr, "close", id)
	}
}
