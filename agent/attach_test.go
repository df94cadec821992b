package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"github.com/sockagent/sockagent/lab/labtest"
	"google.golang.org/grpc/codes"
)

// attachPeer is a raw TCP listener of the test with one accepted connection, and an agent
// socket dialled to it.
type attachPeer struct {
	conn *net.TCPConn // the test's end
	sock *sockagentv1.Socket
}

func (e *env) dialPeer(t *testing.T) *attachPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := e.dial(t, "tcp", ln.Addr().String())
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &attachPeer{conn: c.(*net.TCPConn), sock: s}
}

// attach opens an Attach stream on id; the stream ends with the test.
func (e *env) attach(t *testing.T, ctx context.Context, id string) sockagentv1.SocketService_AttachClient {
	t.Helper()
	st, err := e.sc.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// io.EOF: the agent ended the stream already (a refusal); Recv returns its status.
	if err := st.Send(&sockagentv1.AttachRequest{SocketId: id}); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return st
}

// waitAttached polls GetSocket until the socket's attached flag is want.
func (e *env) waitAttached(t *testing.T, id string, want bool) *sockagentv1.Socket {
	t.Helper()
	return e.waitSocket(t, id, fmt.Sprintf("attached %v", want), func(s *sockagentv1.Socket) bool { return s.GetAttached() == want })
}

// recvAll reads responses until eof=true and then the stream's end, which must be OK.
func recvAll(st sockagentv1.SocketService_AttachClient) ([]byte, error) {
	var buf bytes.Buffer
	for {
		r, err := st.Recv()
		if err != nil {
			return buf.Bytes(), err
		}
		buf.Write(r.GetData())
		if r.GetEof() {
			if len(r.GetData()) != 0 {
				return buf.Bytes(), errors.New("eof response carries data")
			}
			if _, err := st.Recv(); err != io.EOF {
				return buf.Bytes(), errors.Join(errors.New("stream did not end OK after eof"), err)
			}
			return buf.Bytes(), nil
		}
	}
}

func TestAttachEcho(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	p := e.dialPeer(t)
	go func() { // echo until EOF, then half-close
		_, _ = io.Copy(p.conn, p.conn)
		_ = p.conn.CloseWrite()
	}()
	st := e.attach(t, ctx, p.sock.GetSocketId())
	if err := st.Send(&sockagentv1.AttachRequest{Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil || string(r.GetData()) != "hello" {
		t.Fatalf("echo: %q, %v; want hello", r.GetData(), err)
	}
	in := e.waitAttached(t, p.sock.GetSocketId(), true)
	if in.GetPendingCalls() != 1 || in.GetIdle().AsDuration() != 0 {
		t.Errorf("attached socket: pending_calls %d idle %s, want 1 and 0", in.GetPendingCalls(), in.GetIdle().AsDuration())
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	rest, err := recvAll(st)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after half-close: %q, %v; want eof and OK", rest, err)
	}
	in = e.waitAttached(t, p.sock.GetSocketId(), false)
	if in.GetBytesSent() != 5 || in.GetBytesReceived() != 5 || in.GetMessagesSent() != 1 || in.GetMessagesReceived() != 1 {
		t.Errorf("counters sent %d/%d received %d/%d, want 5/1 5/1", in.GetBytesSent(), in.GetMessagesSent(), in.GetBytesReceived(), in.GetMessagesReceived())
	}
	if in.GetState() != sockagentv1.SocketState_SOCKET_STATE_WRITE_SHUT || in.GetPendingCalls() != 0 {
		t.Errorf("after attach: state %s pending %d, want WRITE_SHUT and 0", in.GetState(), in.GetPendingCalls())
	}
}

func TestAttachHalfClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)

	t.Run("caller first", func(t *testing.T) {
		p := e.dialPeer(t)
		st := e.attach(t, ctx, p.sock.GetSocketId())
		if err := st.Send(&sockagentv1.AttachRequest{Data: []byte("abc"), CloseWrite: true}); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(p.conn) // ends at the EOF close_write caused
		if err != nil || string(got) != "abc" {
			t.Fatalf("peer read %q, %v; want abc then EOF", got, err)
		}
		if _, err := p.conn.Write([]byte("xyz")); err != nil {
			t.Fatal(err)
		}
		if err := p.conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		back, err := recvAll(st)
		if err != nil || string(back) != "xyz" {
			t.Fatalf("caller got %q, %v; want xyz, eof, OK", back, err)
		}
	})

	t.Run("peer first", func(t *testing.T) {
		p := e.dialPeer(t)
		st := e.attach(t, ctx, p.sock.GetSocketId())
		if _, err := p.conn.Write([]byte("bye")); err != nil {
			t.Fatal(err)
		}
		if err := p.conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		var got []byte
		for {
			r, err := st.Recv()
			if err != nil {
				t.Fatalf("recv: %v", err)
			}
			got = append(got, r.GetData()...)
			if r.GetEof() {
				break
			}
		}
		if string(got) != "bye" {
			t.Fatalf("caller got %q, want bye", got)
		}
		// The socket's read half ended; the caller can still write.
		for _, s := range []string{"late ", "data"} {
			if err := st.Send(&sockagentv1.AttachRequest{Data: []byte(s)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("stream end: %v, want OK", err)
		}
		rest, err := io.ReadAll(p.conn)
		if err != nil || string(rest) != "late data" {
			t.Fatalf("peer read %q, %v; want \"late data\" then EOF", rest, err)
		}
	})

	t.Run("data after close_write", func(t *testing.T) {
		p := e.dialPeer(t)
		st := e.attach(t, ctx, p.sock.GetSocketId())
		_ = st.Send(&sockagentv1.AttachRequest{CloseWrite: true})
		_ = st.Send(&sockagentv1.AttachRequest{Data: []byte("x")})
		_, err := st.Recv()
		wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "data after close_write")
	})
}

func TestAttach8MiBBothWays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	p := e.dialPeer(t)
	const size = 8 << 20
	up, down := make([]byte, size), make([]byte, size)
	_, _ = rand.Read(up)
	_, _ = rand.Read(down)

	peerGot := make(chan [32]byte, 1)
	go func() { // the peer reads everything while it writes
		h := sha256.New()
		_, _ = io.Copy(h, p.conn)
		peerGot <- [32]byte(h.Sum(nil))
	}()
	peerWrote := make(chan error, 1)
	go func() {
		_, err := p.conn.Write(down)
		if err == nil {
			err = p.conn.CloseWrite()
		}
		peerWrote <- err
	}()
	st, err := e.sc.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() {
		err := st.Send(&sockagentv1.AttachRequest{SocketId: p.sock.GetSocketId(), ReadSize: 256 << 10})
		for off := 0; off < size && err == nil; off += 100_000 { // odd sizes: boundaries need not line up
			err = st.Send(&sockagentv1.AttachRequest{Data: up[off:min(off+100_000, size)]})
		}
		if err == nil {
			err = st.CloseSend()
		}
		sent <- err
	}()
	got, err := recvAll(st)
	if err != nil {
		t.Fatalf("receive: %v (after %d bytes)", err, len(got))
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err := <-peerWrote; err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(down) {
		t.Errorf("socket -> caller: %d bytes, sha256 differs from the %d written", len(got), size)
	}
	if <-peerGot != sha256.Sum256(up) {
		t.Errorf("caller -> socket: sha256 differs")
	}
	in := e.waitAttached(t, p.sock.GetSocketId(), false)
	if in.GetBytesSent() != size || in.GetBytesReceived() != size {
		t.Errorf("counters sent %d received %d, want %d each", in.GetBytesSent(), in.GetBytesReceived(), size)
	}
}

func TestAttachDatagram(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	_ = peer.SetDeadline(time.Now().Add(15 * time.Second))
	readFrom := func() (string, net.Addr) {
		t.Helper()
		buf := make([]byte, 2048)
		n, from, err := peer.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n]), from
	}

	t.Run("connected", func(t *testing.T) { attachDatagramConnected(t, e, ctx, peer, readFrom) })
	t.Run("unconnected", func(t *testing.T) { attachDatagramUnconnected(t, e, ctx, peer, readFrom) })
	t.Run("unixgram", func(t *testing.T) { attachDatagramUnixgram(t, e, ctx, peer, readFrom) })
}

func attachDatagramConnected(t *testing.T, e *env, ctx context.Context, peer net.PacketConn, readFrom func() (string, net.Addr)) {
	s := e.dial(t, "udp", peer.LocalAddr().String())
	st := e.attach(t, ctx, s.GetSocketId())
	for _, d := range []string{"one", "", "three"} {
		if err := st.Send(&sockagentv1.AttachRequest{Data: []byte(d)}); err != nil {
			t.Fatal(err)
		}
	}
	var from net.Addr
	for _, want := range []string{"one", "", "three"} {
		var got string
		got, from = readFrom()
		if got != want {
			t.Fatalf("peer got datagram %q, want %q", got, want)
		}
	}
	for _, d := range []string{"ab", "cde"} {
		if _, err := peer.WriteTo([]byte(d), from); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"ab", "cde"} {
		r, err := st.Recv()
		if err != nil || string(r.GetData()) != want || r.GetEof() {
			t.Fatalf("response %v, %v; want datagram %q", r, err, want)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("stream end after half-close: %v, want OK", err)
	}
	in := e.waitAttached(t, s.GetSocketId(), false)
	if in.GetMessagesSent() != 3 || in.GetMessagesReceived() != 2 || in.GetBytesSent() != 8 || in.GetBytesReceived() != 5 {
		t.Errorf("counters %v", in)
	}
}

func attachDatagramUnconnected(t *testing.T, e *env, ctx context.Context, peer net.PacketConn, readFrom func() (string, net.Addr)) {
	s := e.bind(t, "udp", "127.0.0.1:0")
	st := e.attach(t, ctx, s.GetSocketId())
	if err := st.Send(&sockagentv1.AttachRequest{Data: []byte("ping"), Address: peer.LocalAddr().String()}); err != nil {
		t.Fatal(err)
	}
	got, from := readFrom()
	if got != "ping" || from.String() != s.GetLocalAddress() {
		t.Fatalf("peer got %q from %s, want ping from %s", got, from, s.GetLocalAddress())
	}
	if _, err := peer.WriteTo([]byte("pong"), from); err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil || string(r.GetData()) != "pong" || r.GetRemoteAddress() != peer.LocalAddr().String() {
		t.Fatalf("response %v, %v; want pong from %s", r, err, peer.LocalAddr())
	}
	// A datagram without an address on an unconnected socket says what is missing.
	_ = st.Send(&sockagentv1.AttachRequest{Data: []byte("lost")})
	_, err = st.Recv()
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidAddress, "address is empty")
}

func attachDatagramUnixgram(t *testing.T, e *env, ctx context.Context, peer net.PacketConn, readFrom func() (string, net.Addr)) {
	upath := e.sockPath("peer")
	up, err := net.ListenPacket("unixgram", upath)
	if err != nil {
		labtest.SkipOutsideCI(t, fmt.Sprintf("unixgram: %v", err))
	}
	defer up.Close()
	_ = up.SetDeadline(time.Now().Add(15 * time.Second))
	s := e.bind(t, "unixgram", e.sockPath("agent"))
	st := e.attach(t, ctx, s.GetSocketId())
	for _, d := range []string{"a", "bc"} {
		if err := st.Send(&sockagentv1.AttachRequest{Data: []byte(d), Address: upath}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 100)
	for _, want := range []string{"a", "bc"} {
		n, from, err := up.ReadFrom(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("peer got %q, %v; want %q", buf[:n], err, want)
		}
		if want == "bc" {
			if _, err := up.WriteTo([]byte("back"), from); err != nil {
				t.Fatal(err)
			}
		}
	}
	r, err := st.Recv()
	if err != nil || string(r.GetData()) != "back" || r.GetRemoteAddress() != upath {
		t.Fatalf("response %v, %v; want back from %s", r, err, upath)
	}
	_ = st.CloseSend()
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v, want OK", err)
	}
}

func TestAttachBusyAndKinds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	p := e.dialPeer(t)
	id := p.sock.GetSocketId()
	st := e.attach(t, ctx, id)
	e.waitAttached(t, id, true)

	_, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: id, Timeout: dur(time.Second)})
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonSocketBusy, "attached")
	_, err = e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: id, Data: []byte("x")})
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonSocketBusy, "attached")
	second := e.attach(t, ctx, id)
	_, err = second.Recv()
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonSocketBusy, "another Attach")

	// The first Attach still works.
	if _, err := p.conn.Write([]byte("still")); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Recv(); err != nil || string(r.GetData()) != "still" {
		t.Fatalf("first attach: %v, %v", r, err)
	}

	// An Attach on a socket with a Recv in progress is refused, not queued.
	q := e.dialPeer(t)
	recvd := make(chan error, 1)
	go func() {
		_, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: q.sock.GetSocketId(), Timeout: dur(15 * time.Second)})
		recvd <- err
	}()
	e.waitPending(t, q.sock.GetSocketId(), 1)
	_, err = e.attach(t, ctx, q.sock.GetSocketId()).Recv()
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonSocketBusy, "Recv")
	_, _ = q.conn.Write([]byte("z"))
	if err := <-recvd; err != nil {
		t.Fatal(err)
	}

	l := e.listen(t, "tcp", "127.0.0.1:0")
	_, err = e.attach(t, ctx, l.GetSocketId()).Recv()
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonWrongSocketKind, "listener")
	_, err = e.attach(t, ctx, "s999999").Recv()
	wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSocket)
	_, err = e.attach(t, ctx, "").Recv()
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "socket_id")
	big, err := e.sc.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = big.Send(&sockagentv1.AttachRequest{SocketId: q.sock.GetSocketId(), ReadSize: 2 << 20})
	_, err = big.Recv()
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "read_size")
}

func TestAttachEndsWhenTheSocketCloses(t *testing.T) {
	t.Parallel()
	e := newSessEnv(t, agent.Config{})
	ctx := ctxT(t)

	t.Run("Close", func(t *testing.T) {
		p := e.dialPeer(t)
		st := e.attach(t, ctx, p.sock.GetSocketId())
		e.waitAttached(t, p.sock.GetSocketId(), true)
		if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: p.sock.GetSocketId()}); err != nil {
			t.Fatal(err)
		}
		_, err := st.Recv()
		wantStatus(t, err, codes.Aborted, contract.ReasonSocketClosed)
	})

	t.Run("Close after eof", func(t *testing.T) { // the caller's direction is still open
		p := e.dialPeer(t)
		st := e.attach(t, ctx, p.sock.GetSocketId())
		_ = p.conn.CloseWrite()
		if r, err := st.Recv(); err != nil || !r.GetEof() {
			t.Fatalf("want eof, got %v, %v", r, err)
		}
		if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: p.sock.GetSocketId()}); err != nil {
			t.Fatal(err)
		}
		_, err := st.Recv()
		wantStatus(t, err, codes.Aborted, contract.ReasonSocketClosed)
	})

	t.Run("session closed", func(t *testing.T) {
		s := e.open(t, ctx, time.Minute)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		d, err := e.sc.Dial(inSess(ctx, s.GetSessionId()), &sockagentv1.DialRequest{Network: "tcp", Address: ln.Addr().String()})
		if err != nil {
			t.Fatal(err)
		}
		st := e.attach(t, ctx, d.GetSocket().GetSocketId())
		e.waitAttached(t, d.GetSocket().GetSocketId(), true)
		if _, err := e.ss.CloseSession(ctx, &sockagentv1.CloseSessionRequest{SessionId: s.GetSessionId()}); err != nil {
			t.Fatal(err)
		}
		_, err = st.Recv()
		wantStatus(t, err, codes.Aborted, contract.ReasonSocketClosed, "session "+s.GetSessionId()+" was closed")
	})

	t.Run("caller cancels", func(t *testing.T) {
		p := e.dialPeer(t)
		cctx, cancel := context.WithCancel(ctx)
		st := e.attach(t, cctx, p.sock.GetSocketId())
		e.waitAttached(t, p.sock.GetSocketId(), true)
		cancel()
		_, _ = st.Recv()
		e.waitAttached(t, p.sock.GetSocketId(), false) // the socket stays, free again
		e.send(t, p.sock.GetSocketId(), "after")
		buf := make([]byte, 5)
		if _, err := io.ReadFull(p.conn, buf); err != nil || string(buf) != "after" {
			t.Fatalf("peer read %q, %v", buf, err)
		}
	})
}

func TestAttachAgentShutdown(t *testing.T) {
	t.Parallel()
	a, conn := serveBufconn(t, agent.Config{})
	e := &env{a: a, sc: sockagentv1.NewSocketServiceClient(conn)} // no closeAtEnd: Shutdown closes
	ctx := ctxT(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	id := d.GetSocket().GetSocketId()
	st := e.attach(t, ctx, id)
	e.waitAttached(t, id, true)
	done := make(chan error, 1)
	go func() { done <- a.Shutdown(ctx) }()
	_, err = st.Recv()
	wantStatus(t, err, codes.Unavailable, contract.ReasonAgentStopping)
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if n := a.NumSockets(); n != 0 {
		t.Errorf("%d sockets after Shutdown", n)
	}
}

func TestAttachNotReapedWhenIdle(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, agent.Config{IdleTimeout: 100 * time.Millisecond})
	ctx := ctxT(t)
	p := e.dialPeer(t)
	st := e.attach(t, ctx, p.sock.GetSocketId())
	e.waitAttached(t, p.sock.GetSocketId(), true)
	witness := e.listen(t, "tcp", "127.0.0.1:0") // unused from now on, as the attached socket
	e.waitGone(t, ctx, 10*time.Second, witness.GetSocketId())
	in := e.waitAttached(t, p.sock.GetSocketId(), true)
	if in.GetPendingCalls() != 1 {
		t.Errorf("pending_calls %d, want 1", in.GetPendingCalls())
	}
	if _, err := p.conn.Write([]byte("alive")); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Recv(); err != nil || string(r.GetData()) != "alive" {
		t.Fatalf("after the reaper ran: %v, %v", r, err)
	}
}

// TestAttachFlowControl: a caller that takes no responses slows the peer down to a stop;
// the agent reads only what gRPC's windows and its one buffer hold.
func TestAttachFlowControl(t *testing.T) {
	t.Parallel()
	t.Run("bufconn", func(t *testing.T) { t.Parallel(); testAttachFlowControl(t, newEnv(t)) })
	t.Run("tcp", func(t *testing.T) { t.Parallel(); testAttachFlowControl(t, newTCPEnv(t)) })
}

// newTCPEnv is newEnv served over real TCP loopback, where gRPC's flow-control windows grow
// with the measured bandwidth-delay product.
func newTCPEnv(t *testing.T) *env {
	t.Helper()
	a, conn := benchAgent(t)
	t.Cleanup(func() { // runs first
		if n := a.NumSockets(); n != 0 {
			t.Errorf("socket table not empty at the end of the test: %d sockets", n)
		}
	})
	return &env{a: a, conn: conn, sc: sockagentv1.NewSocketServiceClient(conn), ac: sockagentv1.NewAgentServiceClient(conn)}
}

func testAttachFlowControl(t *testing.T, e *env) {
	ctx := ctxT(t)
	p := e.dialPeer(t)
	st := e.attach(t, ctx, p.sock.GetSocketId())
	e.waitAttached(t, p.sock.GetSocketId(), true)
	const limit = 256 << 20 // the peer gives up here: the agent would be buffering without bound
	chunk := make([]byte, 64<<10)
	written := 0
	var werr error
	for written < limit {
		_ = p.conn.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		var n int
		n, werr = p.conn.Write(chunk)
		written += n
		if werr != nil {
			break
		}
	}
	var ne net.Error
	if !errors.As(werr, &ne) || !ne.Timeout() {
		t.Fatalf("peer wrote %d MiB without blocking (err %v); want its write to time out", written>>20, werr)
	}
	in := e.waitAttached(t, p.sock.GetSocketId(), true)
	t.Logf("peer blocked after %.1f MiB; the agent read %.1f MiB", float64(written)/(1<<20), float64(in.GetBytesReceived())/(1<<20))
	if in.GetBytesReceived() > 16<<20 {
		t.Errorf("the agent read %d bytes from the socket for a caller that reads nothing, want at most 16 MiB", in.GetBytesReceived())
	}
	// Now the caller reads: every byte arrives.
	_ = p.conn.SetWriteDeadline(time.Time{})
	if err := p.conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		got += len(r.GetData())
		if r.GetEof() {
			break
		}
	}
	if got != written {
		t.Errorf("caller received %d bytes, peer wrote %d", got, written)
	}
}

// TestAttachFlowControlUp: a peer that reads nothing stops the caller's Sends; the agent
// receives a request only once the previous one is written.
func TestAttachFlowControlUp(t *testing.T) {
	t.Parallel()
	e := newTCPEnv(t)
	ctx := ctxT(t)
	p := e.dialPeer(t)
	st := e.attach(t, ctx, p.sock.GetSocketId())
	const limit = 256 << 20 // the caller gives up here: something would be buffering without bound
	var sent atomic.Int64
	stop := make(chan struct{})
	sendErr := make(chan error, 1)
	go func() {
		chunk := make([]byte, 64<<10)
		for sent.Load() < limit {
			select {
			case <-stop:
				sendErr <- st.CloseSend()
				return
			default:
			}
			if err := st.Send(&sockagentv1.AttachRequest{Data: chunk}); err != nil {
				sendErr <- err
				return
			}
			sent.Add(int64(len(chunk)))
		}
		sendErr <- errors.New("the caller sent 256 MiB to a peer that reads nothing")
	}()
	// The caller is stuck once its count stops moving for a while (it moves every few
	// microseconds while it can).
	last, still := int64(-1), time.Now()
	for time.Since(still) < 300*time.Millisecond && sent.Load() < limit {
		if n := sent.Load(); n != last {
			last, still = n, time.Now()
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
	stuck := sent.Load()
	t.Logf("caller blocked after %.1f MiB", float64(stuck)/(1<<20))
	if stuck >= 64<<20 {
		t.Errorf("caller sent %d MiB to a peer that reads nothing; want its Send to block", stuck>>20)
	}
	in := e.waitAttached(t, p.sock.GetSocketId(), true)
	if in.GetBytesSent() > uint64(stuck) {
		t.Errorf("the agent wrote %d bytes, more than the caller sent (%d)", in.GetBytesSent(), stuck)
	}
	close(stop)
	// The peer reads everything the caller sent, up to the EOF of its half-close.
	n, err := io.Copy(io.Discard, p.conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	if n != sent.Load() {
		t.Errorf("peer read %d bytes, caller sent %d", n, sent.Load())
	}
	_ = p.conn.CloseWrite()
	if got, err := recvAll(st); err != nil || len(got) != 0 {
		t.Fatalf("end: %q, %v", got, err)
	}
}

// An Attach is audited: one line when it ends, naming the socket, its addresses and the bytes
// it wrote to the socket and read from it.
func TestAttachAudited(t *testing.T) {
	t.Parallel()
	audit := newLogBuf()
	e := newEnvWith(t, agent.Config{AuditLogger: slog.New(slog.NewJSONHandler(audit, nil))})
	ctx := ctxT(t)
	p := e.dialPeer(t)
	st := e.attach(t, ctx, p.sock.GetSocketId())
	if err := st.Send(&sockagentv1.AttachRequest{Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(p.conn, got); err != nil || string(got) != "hello" {
		t.Fatalf("the peer read %q, %v", got, err)
	}
	if _, err := p.conn.Write([]byte("world!")); err != nil {
		t.Fatal(err)
	}
	_ = st.CloseSend()
	_ = p.conn.CloseWrite()
	if back, err := recvAll(st); err != nil || string(back) != "world!" {
		t.Fatalf("streamed back %q, %v", back, err)
	}
	audit.waitFor(t, regexp.MustCompile(`"msg":"audit","rpc":"Attach","caller":"anonymous",.*"audit":true,"socket":"`+
		p.sock.GetSocketId()+`","network":"tcp","local":"`+regexp.QuoteMeta(p.sock.GetLocalAddress())+`","remote":"`+
		regexp.QuoteMeta(p.sock.GetRemoteAddress())+`","bytes":5,"bytes_read":6,"code":"OK"`))
}

// An Attach is one blocking call of its caller (limits.blocking_calls) and of the agent
// (agent_limits.blocking_calls) for as long as it runs.
func TestAttachCountsAsABlockingCall(t *testing.T) {
	t.Parallel()
	e := polEnv(t, "agent_limits: {blocking_calls: 2}\ndefault: {limits: {blocking_calls: 1}}\n", true)
	peer := holdingPeer(t)
	alice, bob, carol := e.as(t, "alice"), e.as(t, "bob"), e.as(t, "carol")
	sa := alice.dial(t, "tcp", peer)
	sb := bob.dial(t, "tcp", peer)
	sc := carol.dial(t, "tcp", peer)
	e.attach(t, alice.ctx, sa.GetSocketId())
	e.waitAttachedAs(t, alice, sa.GetSocketId())
	// alice has her one blocking call.
	_, err := e.sc.Dial(alice.ctx, &sockagentv1.DialRequest{Network: "tcp", Address: peer})
	wantLimit(t, err, "limits.blocking_calls", 1)
	// bob's Attach makes two for the agent; carol's is one too many.
	e.attach(t, bob.ctx, sb.GetSocketId())
	e.waitAttachedAs(t, bob, sb.GetSocketId())
	_, err = e.attach(t, carol.ctx, sc.GetSocketId()).Recv()
	wantLimit(t, err, "agent_limits.blocking_calls", 2)
}

// holdingPeer listens on 127.0.0.1 and holds every connection open until the test ends.
func holdingPeer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	return ln.Addr().String()
}

// waitAttachedAs waits until caller c's socket id shows as attached.
func (e *env) waitAttachedAs(t *testing.T, c *polCaller, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := e.sc.GetSocket(c.ctx, &sockagentv1.GetSocketRequest{SocketId: id})
		if err == nil && r.GetSocket().GetAttached() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s not attached: %v", id, err)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

// Bytes an interrupted exact Recv kept come first on an Attach.
func TestAttachLeftover(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	p := e.dialPeer(t)
	id := p.sock.GetSocketId()
	if _, err := p.conn.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	_, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: id, ExactBytes: 10, Timeout: dur(200 * time.Millisecond)})
	wantStatus(t, err, codes.DeadlineExceeded, contract.ReasonTimeout)
	st := e.attach(t, ctx, id)
	if _, err := p.conn.Write([]byte(" late")); err != nil {
		t.Fatal(err)
	}
	_ = p.conn.CloseWrite()
	_ = st.CloseSend()
	got, err := recvAll(st)
	if err != nil || string(got) != "early late" {
		t.Fatalf("attach read %q, %v; want the kept bytes first", got, err)
	}
}

// An attached datagram socket cannot be served, and a served one cannot be attached.
func TestAttachAndServeExclude(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	b, err := e.sc.Bind(ctx, &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	id := b.GetSocket().GetSocketId()
	st := e.attach(t, ctx, id)
	e.waitAttached(t, id, true)
	_, err = e.sc.Serve(ctx, &sockagentv1.ServeRequest{SocketId: id, Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO})
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonSocketBusy, "Attach")
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != io.EOF { // a datagram socket has no EOF: the half-close ends it
		t.Fatalf("attach after half-close: %v, want the stream's end", err)
	}
	e.waitAttached(t, id, false)
	if _, err := e.sc.Serve(ctx, &sockagentv1.ServeRequest{SocketId: id, Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO}); err != nil {
		t.Fatal(err)
	}
	_, err = e.attach(t, ctx, id).Recv()
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonSocketBusy, "served")
	if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err != nil {
		t.Fatal(err)
	}
}

// Probe and Throughput count against agent_limits.blocking_calls too: with the agent's one
// blocking call taken by an Attach, both are refused naming the limit.
func TestMeasureCallsCountAsBlockingCalls(t *testing.T) {
	t.Parallel()
	e := polEnv(t, "agent_limits: {blocking_calls: 1}\n", true)
	peer := holdingPeer(t)
	alice, bob := e.as(t, "alice"), e.as(t, "bob")
	sa := alice.dial(t, "tcp", peer)
	e.attach(t, alice.ctx, sa.GetSocketId())
	e.waitAttachedAs(t, alice, sa.GetSocketId())
	mc := sockagentv1.NewMeasureServiceClient(e.conn)
	_, err := mc.Probe(bob.ctx, &sockagentv1.ProbeRequest{Network: "tcp", Address: peer, Count: 1})
	wantLimit(t, err, "agent_limits.blocking_calls", 1)
	st, err := mc.Throughput(bob.ctx, &sockagentv1.ThroughputRequest{Network: "tcp", Address: peer, Duration: dur(time.Second)})
	if err == nil {
		_, err = st.Recv()
	}
	wantLimit(t, err, "agent_limits.blocking_calls", 1)
}

// An Attach on an unconnected datagram socket lists in its audit line where its datagrams
// went (each per-message address, judged like SendTo), at most engine.MaxAuditDestinations of
// them and a count of the datagrams sent elsewhere; a refused address ends the stream and
// is named in the line's error.
func TestAttachAuditsDestinations(t *testing.T) {
	t.Parallel()
	audit := newLogBuf()
	p, err := policy.Parse("p.yaml", []byte("default: {destinations: {allow: [{name: anywhere}], deny: [{name: not 127.0.0.2, cidrs: [127.0.0.2]}]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, agent.Config{Policy: p, AuditLogger: slog.New(slog.NewJSONHandler(audit, nil))})
	ctx := ctxT(t)
	b := e.bind(t, "udp", "127.0.0.1:0")
	var addrs []string
	for range engine.MaxAuditDestinations + 2 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		addrs = append(addrs, pc.LocalAddr().String())
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		defer func() {
			buf := make([]byte, 16)
			if n, _, err := pc.ReadFrom(buf); err != nil || string(buf[:n]) != "dg" {
				t.Errorf("%s read %q, %v", pc.LocalAddr(), buf[:n], err)
			}
		}()
	}
	st := e.attach(t, ctx, b.GetSocketId())
	for _, a := range append(addrs, addrs[0]) { // the repeat is listed once
		if err := st.Send(&sockagentv1.AttachRequest{Address: a, Data: []byte("dg")}); err != nil {
			t.Fatal(err)
		}
	}
	_ = st.CloseSend()
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("attach ended with %v, want OK", err)
	}
	audit.waitFor(t, regexp.MustCompile(`"rpc":"Attach",.*"socket":"`+b.GetSocketId()+`",.*"bytes":`+
		fmt.Sprint(2*(len(addrs)+1))+`,"bytes_read":0,"destinations":"`+regexp.QuoteMeta(strings.Join(addrs[:engine.MaxAuditDestinations], " "))+
		`","destinations_more":2,"code":"OK"`))

	st = e.attach(t, ctx, b.GetSocketId())
	for _, a := range []string{addrs[0], "127.0.0.2:9"} {
		if err := st.Send(&sockagentv1.AttachRequest{Address: a, Data: []byte("x")}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
	}
	_, err = st.Recv()
	wantDenied(t, err, "not 127.0.0.2", "default")
	audit.waitFor(t, regexp.MustCompile(`"rpc":"Attach",.*"bytes":1,"bytes_read":0,"destinations":"`+regexp.QuoteMeta(addrs[0])+
		`","code":"PermissionDenied",.*"err":"attach `+b.GetSocketId()+` udp .*: destination 127.0.0.2:9 denied by policy rule`))
}
