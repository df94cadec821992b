package engine

import (
	"bytes"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/testpki"
)

// TestTLSCloseStuckSend: closing a TLS socket while a Send is stuck writing to a peer that
// reads nothing ends both at once; the Send ends SOCKET_CLOSED.
func TestTLSCloseStuckSend(t *testing.T) {
	t.Parallel()
	tb, ctx := tlsTable(t, 5*time.Second)
	ca := testpki.NewCA(t, "ca")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLS(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hold := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
		}
		hold <- c // reads nothing more until the test ends
	}()
	d, err := tb.DialTLS(ctx, "tcp", ln.Addr().String(), "", 5*time.Second, "", &TLSClient{RootCAsPEM: ca.PEM, ServerName: "localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if peer := <-hold; peer != nil {
		defer peer.Close()
	}
	sent := make(chan error, 1)
	go func() {
		_, err := tb.Send(ctx, d.ID, bytes.Repeat([]byte("x"), 4<<20), 30*time.Second)
		sent <- err
	}()
	// The Send is inside tls.Conn.Write (holding its lock) once its bytes wait in the kernel:
	// more than the handshake could leave there.
	tb.mu.Lock()
	raw := tb.socks[d.ID].tls.raw.(*net.TCPConn)
	tb.mu.Unlock()
	rc, err := raw.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var outq int
		_ = rc.Control(func(fd uintptr) { outq, _ = unix.IoctlGetInt(int(fd), unix.TIOCOUTQ) })
		if outq > 64<<10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Send never reached the kernel")
		}
		time.Sleep(time.Millisecond) // polling interval; the queue decides
	}
	start := time.Now()
	if _, err := tb.Close(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < closeNotifyWait || took > time.Second {
		t.Errorf("close took %s; want %s, under a second", took, closeNotifyWait)
	}
	select {
	case err := <-sent:
		if Reason(err) != contract.ReasonSocketClosed {
			t.Errorf("the stuck Send: %v, want SOCKET_CLOSED", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the stuck Send did not end with the close")
	}
}
