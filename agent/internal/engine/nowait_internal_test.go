//go:build !windows

package engine

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockagent/sockagent/agent/contract"
)

// rawPair is a connected TCP pair on loopback, closed at the end of the test.
func rawPair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	ca, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cb, err := lis.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca.(*net.TCPConn), cb.(*net.TCPConn)
}

// waitReadable waits (5 s at most) until c has something to read: bytes, the end or an error.
// It polls, which consumes nothing (a peek would take a pending reset).
func waitReadable(t *testing.T, c *net.TCPConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var perr error
	if err := rc.Control(func(fd uintptr) {
		n, perr = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 5000)
	}); err != nil || perr != nil || n != 1 {
		t.Fatalf("poll: %d ready, %v, %v; want 1 within 5s", n, err, perr)
	}
}

// TestReadNowWriteNow: noWait's read and write do the I/O the kernel can do at once and say
// so; they decline (ok false, nothing consumed) when they would wait, and on a read deadline
// already past.
func TestReadNowWriteNow(t *testing.T) {
	t.Parallel()
	a, b := rawPair(t)
	buf := make([]byte, 16)
	if n, ok, err := new(noWait).read(b, buf); n != 0 || ok || err != nil {
		t.Fatalf("readNow with nothing sent = %d, %v, %v; want 0, false, nil", n, ok, err)
	}
	if n, ok, err := new(noWait).write(a, []byte("hello")); n != 5 || !ok || err != nil {
		t.Fatalf("new(noWait).write(hello) = %d, %v, %v; want 5, true, nil", n, ok, err)
	}
	waitReadable(t, b)
	if n, ok, err := new(noWait).read(b, buf[:3]); n != 3 || !ok || err != nil || string(buf[:3]) != "hel" {
		t.Fatalf("new(noWait).read(3) = %d %q, %v, %v; want 3 \"hel\", true, nil", n, buf[:n], ok, err)
	}
	if n, ok, err := new(noWait).read(b, nil); n != 0 || ok || err != nil {
		t.Fatalf("readNow into no buffer = %d, %v, %v; want a decline", n, ok, err)
	}

	// A read deadline already past: declined, the bytes stay for the usual way.
	if err := b.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if n, ok, err := new(noWait).read(b, buf); n != 0 || ok || err != nil {
		t.Fatalf("readNow past its deadline = %d, %v, %v; want a decline", n, ok, err)
	}
	if err := b.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n, ok, err := new(noWait).read(b, buf); n != 2 || !ok || err != nil || string(buf[:2]) != "lo" {
		t.Fatalf("readNow after the deadline's reset = %d %q, %v, %v; want \"lo\"", n, buf[:n], ok, err)
	}

}

// TestReadNowEndAndDeclines: the end of the stream comes back as io.EOF; a closed conn and a
// stream without a file descriptor (TLS) are declined, for the usual way to say what is wrong.
func TestReadNowEndAndDeclines(t *testing.T) {
	t.Parallel()
	a, b := rawPair(t)
	buf := make([]byte, 16)
	if err := a.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	waitReadable(t, b)
	if n, ok, err := new(noWait).read(b, buf); n != 0 || !ok || err != io.EOF {
		t.Fatalf("readNow at the end = %d, %v, %v; want 0, true, EOF", n, ok, err)
	}

	// Closed: declined (the usual way says net.ErrClosed).
	b.Close()
	if _, ok, _ := new(noWait).read(b, buf); ok {
		t.Fatal("readNow on a closed conn did not decline")
	}
	if _, ok, _ := new(noWait).write(b, []byte("x")); ok {
		t.Fatal("writeNow on a closed conn did not decline")
	}

	// TLS: no file descriptor to try.
	tc := tls.Client(a, &tls.Config{InsecureSkipVerify: true})
	if _, ok, _ := new(noWait).read(tc, buf); ok {
		t.Fatal("readNow on a TLS conn did not decline")
	}
	if _, ok, _ := new(noWait).write(tc, []byte("x")); ok {
		t.Fatal("writeNow on a TLS conn did not decline")
	}
}

// TestNowErrorsAsNet: a reset read by readNow is the error c.Read returns on a twin pair (op,
// network, addresses, errno, text), and a write after it fails as c.Write's does.
func TestNowErrorsAsNet(t *testing.T) {
	t.Parallel()
	reset := func() *net.TCPConn {
		a, b := rawPair(t)
		if err := a.SetLinger(0); err != nil {
			t.Fatal(err)
		}
		a.Close()
		waitReadable(t, b)
		return b
	}
	ours, twin := reset(), reset()
	_, ok, err := new(noWait).read(ours, make([]byte, 8))
	_, werr := twin.Read(make([]byte, 8))
	if !ok || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("readNow after a reset = %v, %v; want ECONNRESET", ok, err)
	}
	var got, want *net.OpError
	if !errors.As(err, &got) || !errors.As(werr, &want) {
		t.Fatalf("errors %T and %T, want *net.OpError", err, werr)
	}
	if got.Op != want.Op || got.Net != want.Net || got.Err.Error() != want.Err.Error() ||
		got.Source.String() != ours.LocalAddr().String() || got.Addr.String() != ours.RemoteAddr().String() {
		t.Errorf("readNow's error %#v (%v), want it as c.Read's %#v (%v)", got, got, want, want)
	}
	_, ok, err = new(noWait).write(ours, []byte("x"))
	_, werr = twin.Write([]byte("x"))
	if !ok || !errors.As(err, &got) || !errors.As(werr, &want) || got.Op != "write" || !errors.Is(err, syscall.EPIPE) || got.Err.Error() != want.Err.Error() {
		t.Errorf("writeNow after a reset = %v, %v; want c.Write's %v", ok, err, werr)
	}
}

// TestWriteNowFull: writeNow stops where the send buffer does, without waiting: a partial
// write or a decline, and what it wrote arrives in order.
func TestWriteNowFull(t *testing.T) {
	t.Parallel()
	a, b := rawPair(t)
	if err := a.SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
	const pattern = "0123456789abcdef"
	chunk := bytes.Repeat([]byte(pattern), 4097)
	var sent int
	declined := false
	for i := 0; i < 1024 && !declined; i++ { // at most 64 MiB; the buffers hold far less
		from := sent % len(pattern) // the stream continues the pattern where the last write stopped
		n, ok, err := new(noWait).write(a, chunk[from:from+64<<10])
		switch {
		case err != nil:
			t.Fatal(err)
		case !ok:
			declined = true
		case n <= 0 || n > 64<<10:
			t.Fatalf("writeNow wrote %d of %d", n, 64<<10)
		}
		sent += n
	}
	if !declined {
		t.Fatalf("writeNow took %d bytes and never declined", sent)
	}
	got := make([]byte, sent)
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	for i, c := range got {
		if c != pattern[i%len(pattern)] {
			t.Fatalf("byte %d of %d is %q, want %q", i, sent, c, pattern[i%len(pattern)])
		}
	}
}

// TestSendRecvNoWaitAllocs: a Send whose bytes the kernel takes at once, and a Recv of bytes
// already there, arm no deadline and no wake-up on cancel (the slow way's allocations: the
// wake-up's channel and context.AfterFunc's record).
func TestSendRecvNoWaitAllocs(t *testing.T) {
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	ctx, cancel := context.WithCancel(WithCaller(t.Context(), Caller{ID: "a"}))
	defer cancel()
	cli, srv := streamPair(t, tb, ctx)
	payload := []byte("0123456789abcdef0123456789abcdef")
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := tb.Send(ctx, cli, payload, time.Second); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tb.Recv(ctx, srv, 0, uint32(len(payload)), time.Second); err != nil {
			t.Fatal(err)
		}
	})
	// 3 with go1.26 (the two admissions and the bytes received); the usual way makes 4 more
	// per call (a deadline's timer, a channel and an AfterFunc's record).
	if allocs > 3 {
		t.Errorf("%.1f allocations per Send+Recv of bytes that are there, want at most 3: did they wait the usual way, or box a caller, a deadline or an error?", allocs)
	}
}

// TestSendPartThenWait: a Send larger than what the socket buffers take at once writes a part
// without waiting and the rest the usual way, as the peer reads: every byte arrives once, in
// order, and the Send returns and counts the whole.
func TestSendPartThenWait(t *testing.T) {
	t.Parallel()
	tb := newTable(5*time.Second, 1<<20, nil)
	defer tb.Stop()
	ctx := WithCaller(t.Context(), Caller{ID: "a"})
	lis, err := tb.Listen(ctx, "tcp", "127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	small := uint32(4096)
	cli, err := tb.Dial(ctx, "tcp", lis.Local, "", 5*time.Second, "", &Options{SendBuffer: &small})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tb.Accept(ctx, lis.ID, 5*time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	const pattern = "0123456789abcdef"
	data := bytes.Repeat([]byte(pattern), (1<<20)/len(pattern)) // 1 MiB: far past 8 KiB of buffer
	sent := make(chan error, 1)
	go func() {
		n, err := tb.Send(ctx, cli.ID, data, 10*time.Second)
		if err == nil && n != len(data) {
			err = fmt.Errorf("Send returned %d of %d bytes", n, len(data))
		}
		sent <- err
	}()
	var got []byte
	for len(got) < len(data) {
		part, eof, err := tb.Recv(ctx, srv.ID, 1<<20, 0, 10*time.Second)
		if err != nil || eof {
			t.Fatalf("Recv after %d bytes: eof %v, %v", len(got), eof, err)
		}
		got = append(got, part...)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("received %d bytes that differ from the %d sent", len(got), len(data))
	}
	if info, err := tb.GetFor(ctx, cli.ID); err != nil || info.BytesSent != uint64(len(data)) || info.MsgsSent != 1 {
		t.Errorf("sender's counters: %d bytes, %d sends, %v; want %d, 1", info.BytesSent, info.MsgsSent, err, len(data))
	}
}

// TestNoWaitNotForAbandonedCalls: a Recv or Send whose caller has given up (its context done)
// takes no bytes and writes none, even when the kernel could at once: the bytes stay for
// the next Recv, and nothing reaches the peer.
func TestNoWaitNotForAbandonedCalls(t *testing.T) {
	t.Parallel()
	tb, ctx, cli, srv := pairedTable(t, time.Second, 1<<20, nil)
	send(t, tb, ctx, cli, "kept")
	gone, cancel := context.WithCancel(ctx)
	cancel()
	for range 20 { // the gate once chose at random between a free gate and a done context
		if data, _, err := tb.Recv(gone, srv, 0, 4, time.Second); err == nil {
			t.Fatalf("Recv with its context done took %q", data)
		}
		if n, err := tb.Send(gone, cli, []byte("lost"), time.Second); err == nil || n != 0 {
			t.Fatalf("Send with its context done wrote %d bytes, %v", n, err)
		}
	}
	late, cancelLate := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancelLate()
	if _, _, err := tb.Recv(late, srv, 0, 4, time.Second); Reason(err) != contract.ReasonTimeout {
		t.Fatalf("Recv past its deadline: %v (%s), want TIMEOUT", err, Reason(err))
	}
	if _, err := tb.Send(late, cli, []byte("lost"), time.Second); Reason(err) != contract.ReasonTimeout {
		t.Fatalf("Send past its deadline: %v (%s), want TIMEOUT", err, Reason(err))
	}
	recvWant(t, tb, ctx, srv, 0, 4, "kept", false)
	send(t, tb, ctx, cli, "next")
	recvWant(t, tb, ctx, srv, 0, 4, "next", false) // nothing of "lost" came first
}

// TestNoWaitMarksUseAfterGateWait: a call that needs no wait at the socket spares the clock
// at its end (its start marked the socket used), unless it first waited for the gate: then
// the socket is marked used again as it ends, or the idle reaper would count the time it
// queued as idle.
func TestNoWaitMarksUseAfterGateWait(t *testing.T) {
	t.Parallel()
	tb, ctx, cli, srv := pairedTable(t, 5*time.Second, 1<<20, nil)
	if _, err := tb.Send(ctx, cli, []byte("ping"), time.Second); err != nil {
		t.Fatal(err)
	}
	tb.mu.Lock()
	s := tb.socks[srv]
	tb.mu.Unlock()
	waitReadable(t, s.conn.(*net.TCPConn))

	// Alone at the gate: one mark, at the start.
	s.lastUsed.Store(1)
	if _, _, err := tb.Recv(ctx, srv, 0, 2, time.Second); err != nil {
		t.Fatal(err)
	}
	first := s.lastUsed.Load()
	if first <= 1 {
		t.Fatalf("lastUsed %d after a Recv, want its start", first)
	}

	// Queued behind another holder of the gate: marked again at its end.
	if err := s.readGate.enter(ctx, s.closed); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		data, _, err := tb.Recv(ctx, srv, 0, 2, time.Second)
		if err == nil && string(data) != "ng" {
			err = fmt.Errorf("got %q, want \"ng\"", data)
		}
		done <- err
	}()
	waitFor(t, 5*time.Second, "the Recv queues at the gate", func() bool { return s.pending.Load() == 1 })
	s.lastUsed.Store(1) // as if it had queued for ages
	released := time.Now().UnixNano()
	s.readGate.leave()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := s.lastUsed.Load(); got < released {
		t.Errorf("lastUsed %d after a Recv that queued at the gate, want its end (>= %d)", got, released)
	}
}
