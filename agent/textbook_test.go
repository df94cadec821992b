package agent_test

import (
	"io"
	"net"
	"strings"
	"testing"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

const hello = "Hello, World!"

// The four textbook programs, re-enacted: each of their calls is an RPC on the agent, and the
// program on the other side is a plain Go socket program on loopback.

// TCP client through the agent -> plain TCP server program (receives, answers).
func TestTextbookTCPClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() { // the plain TCP server program
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		buf := make([]byte, len(hello))
		if _, err := io.ReadFull(c, buf); err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf)
		_, _ = c.Write(buf)
	}()

	cli := e.dial(t, "tcp", ln.Addr().String())
	if cli.GetRemoteAddress() != ln.Addr().String() || cli.GetKind() != sockagentv1.SocketKind_SOCKET_KIND_STREAM {
		t.Errorf("dial socket = %v", cli)
	}
	e.send(t, cli.GetSocketId(), hello)
	if s := <-got; s != hello {
		t.Fatalf("server received %q, want %q", s, hello)
	}
	if s := e.recvExact(t, cli.GetSocketId(), len(hello)); s != hello {
		t.Fatalf("client received %q, want %q", s, hello)
	}
	r, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: cli.GetSocketId()})
	if err != nil {
		t.Fatal(err)
	}
	s := r.GetSocket()
	if s.GetBytesSent() != 13 || s.GetBytesReceived() != 13 || s.GetMessagesSent() != 1 || s.GetMessagesReceived() != 1 ||
		s.GetState() != sockagentv1.SocketState_SOCKET_STATE_CLOSED {
		t.Errorf("final socket = %v, want 13 bytes each way, 1 message each way, CLOSED", s)
	}
	_, err = e.sc.GetSocket(ctxT(t), &sockagentv1.GetSocketRequest{SocketId: cli.GetSocketId()})
	wantStatus(t, err, 5 /* NotFound */, "UNKNOWN_SOCKET", cli.GetSocketId())
}

// Plain TCP client program -> TCP server through the agent (Listen, Accept, Recv, Send).
func TestTextbookTCPServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lis := e.listen(t, "tcp", "127.0.0.1:0")
	got := make(chan string, 1)
	go func() { // the plain TCP client program
		c, err := net.Dial("tcp", lis.GetLocalAddress())
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		if _, err := c.Write([]byte(hello)); err != nil {
			got <- err.Error()
			return
		}
		b, err := io.ReadAll(c)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
	}()
	conn := e.accept(t, lis.GetSocketId())
	if conn.GetParentId() != lis.GetSocketId() || conn.GetLocalAddress() != lis.GetLocalAddress() {
		t.Errorf("accepted socket = %v", conn)
	}
	if s := e.recvExact(t, conn.GetSocketId(), len(hello)); s != hello {
		t.Fatalf("server received %q", s)
	}
	e.send(t, conn.GetSocketId(), hello)
	if _, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: conn.GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != hello {
		t.Fatalf("client received %q, want %q", s, hello)
	}
	g, err := e.sc.GetSocket(ctxT(t), &sockagentv1.GetSocketRequest{SocketId: lis.GetSocketId()})
	if err != nil || g.GetSocket().GetAccepted() != 1 {
		t.Fatalf("listener after one accept = %v, %v", g, err)
	}
}

// UDP client through the agent (Bind, SendTo, RecvFrom) -> plain UDP server program.
func TestTextbookUDPClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() { // the plain UDP server program: answer one datagram
		buf := make([]byte, 1500)
		n, from, err := srv.ReadFrom(buf)
		if err == nil {
			_, _ = srv.WriteTo(buf[:n], from)
		}
	}()
	cli := e.bind(t, "udp", "127.0.0.1:0")
	r, err := e.sc.SendTo(ctxT(t), &sockagentv1.SendToRequest{SocketId: cli.GetSocketId(), Address: srv.LocalAddr().String(), Data: []byte(hello)})
	if err != nil || r.GetBytesSent() != 13 {
		t.Fatalf("sendto = %v, %v", r, err)
	}
	rf, err := e.sc.RecvFrom(ctxT(t), &sockagentv1.RecvFromRequest{SocketId: cli.GetSocketId(), Timeout: dur(5e9)})
	if err != nil {
		t.Fatal(err)
	}
	if string(rf.GetData()) != hello || rf.GetAddress() != srv.LocalAddr().String() {
		t.Fatalf("recvfrom = %q from %q, want %q from %q", rf.GetData(), rf.GetAddress(), hello, srv.LocalAddr())
	}
}

// Plain UDP client program -> UDP server through the agent (Bind, RecvFrom, SendTo).
func TestTextbookUDPServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := e.bind(t, "udp", "127.0.0.1:0")
	c, err := net.Dial("udp", srv.GetLocalAddress())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(hello)); err != nil {
		t.Fatal(err)
	}
	rf, err := e.sc.RecvFrom(ctxT(t), &sockagentv1.RecvFromRequest{SocketId: srv.GetSocketId(), Timeout: dur(5e9)})
	if err != nil {
		t.Fatal(err)
	}
	if string(rf.GetData()) != hello || rf.GetAddress() != c.LocalAddr().String() {
		t.Fatalf("recvfrom = %q from %q, want %q from %q", rf.GetData(), rf.GetAddress(), hello, c.LocalAddr())
	}
	if _, err := e.sc.SendTo(ctxT(t), &sockagentv1.SendToRequest{SocketId: srv.GetSocketId(), Address: rf.GetAddress(), Data: []byte(hello)}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != hello {
		t.Fatalf("client read %q, %v", buf[:n], err)
	}
}

// unixIn is address, or on a UNIX network the name address in e's socket directory.
func unixIn(e *env, network, address string) string {
	if strings.HasPrefix(network, "unix") {
		return e.sockPath(address)
	}
	return address
}

// Agent to agent, every network family: stream pairs over tcp4, tcp6 and unix; datagrams over
// udp4, udp6 and unixgram, both bound and connected.
func TestNetworks(t *testing.T) {
	t.Parallel()
	// UNIX addresses are names in each agent's socket directory.
	streams := []struct{ network, address string }{
		{"tcp", "127.0.0.1:0"}, {"tcp4", "127.0.0.2:0"}, {"tcp6", "[::1]:0"}, {"unix", "s.sock"},
	}
	for _, tc := range streams {
		t.Run(tc.network, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			lis := e.listen(t, tc.network, unixIn(e, tc.network, tc.address))
			cli := e.dial(t, tc.network, lis.GetLocalAddress())
			srv := e.accept(t, lis.GetSocketId())
			e.send(t, cli.GetSocketId(), hello)
			if s := e.recvExact(t, srv.GetSocketId(), 13); s != hello {
				t.Fatalf("got %q", s)
			}
			e.send(t, srv.GetSocketId(), "pong")
			if s := e.recvExact(t, cli.GetSocketId(), 4); s != "pong" {
				t.Fatalf("got %q", s)
			}
		})
	}
	datagrams := []struct{ network, a, b string }{
		{"udp4", "127.0.0.1:0", "127.0.0.1:0"}, {"udp6", "[::1]:0", "[::1]:0"},
		{"unixgram", "a.dg", "b.dg"},
	}
	for _, tc := range datagrams {
		t.Run(tc.network, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			a := e.bind(t, tc.network, unixIn(e, tc.network, tc.a))
			b := e.bind(t, tc.network, unixIn(e, tc.network, tc.b))
			if _, err := e.sc.SendTo(ctxT(t), &sockagentv1.SendToRequest{SocketId: a.GetSocketId(), Address: b.GetLocalAddress(), Data: []byte(hello)}); err != nil {
				t.Fatal(err)
			}
			rf, err := e.sc.RecvFrom(ctxT(t), &sockagentv1.RecvFromRequest{SocketId: b.GetSocketId(), Timeout: dur(5e9)})
			if err != nil || string(rf.GetData()) != hello || rf.GetAddress() != a.GetLocalAddress() {
				t.Fatalf("recvfrom = %v, %v; want %q from %q", rf, err, hello, a.GetLocalAddress())
			}
			// A connected datagram socket (Dial) to b: Send, and Recv the answer.
			c := e.dial(t, tc.network, b.GetLocalAddress())
			if tc.network == "unixgram" { // an unnamed UNIX sender cannot be answered; this one only sends
				e.send(t, c.GetSocketId(), "one")
				rf, err = e.sc.RecvFrom(ctxT(t), &sockagentv1.RecvFromRequest{SocketId: b.GetSocketId(), Timeout: dur(5e9)})
				if err != nil || string(rf.GetData()) != "one" {
					t.Fatalf("recvfrom = %v, %v", rf, err)
				}
				return
			}
			e.send(t, c.GetSocketId(), "one")
			rf, err = e.sc.RecvFrom(ctxT(t), &sockagentv1.RecvFromRequest{SocketId: b.GetSocketId(), Timeout: dur(5e9)})
			if err != nil || string(rf.GetData()) != "one" || rf.GetAddress() != c.GetLocalAddress() {
				t.Fatalf("recvfrom = %v, %v", rf, err)
			}
			if _, err := e.sc.SendTo(ctxT(t), &sockagentv1.SendToRequest{SocketId: b.GetSocketId(), Address: rf.GetAddress(), Data: []byte("two")}); err != nil {
				t.Fatal(err)
			}
			r, err := e.sc.Recv(ctxT(t), &sockagentv1.RecvRequest{SocketId: c.GetSocketId(), Timeout: dur(5e9)})
			if err != nil || string(r.GetData()) != "two" {
				t.Fatalf("recv = %v, %v", r, err)
			}
		})
	}
}
