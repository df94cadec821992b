package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

// streamPair opens a listener, dials it and accepts, all on loopback: it returns the ids of
// the dialled and the accepted socket.
func streamPair(t testing.TB, tb *Table, ctx context.Context) (client, server string) {
	t.Helper()
	lis, err := tb.Listen(ctx, "tcp", "127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := tb.Dial(ctx, "tcp", lis.Local, "", 5*time.Second, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tb.Accept(ctx, lis.ID, 5*time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	return cli.ID, srv.ID
}

// pairedTable is a table (newTable's arguments), stopped when the test ends, a context of
// caller "a", and a connected TCP pair on the table (streamPair).
func pairedTable(t testing.TB, timeout time.Duration, maxRecv int, p *policy.Policy) (tb *Table, ctx context.Context, cli, srv string) {
	t.Helper()
	tb = newTable(timeout, maxRecv, p)
	t.Cleanup(tb.Stop)
	ctx = WithCaller(t.Context(), Caller{ID: "a"})
	cli, srv = streamPair(t, tb, ctx)
	return tb, ctx, cli, srv
}

func send(t *testing.T, tb *Table, ctx context.Context, id, data string) {
	t.Helper()
	if n, err := tb.Send(ctx, id, []byte(data), time.Second); err != nil || n != len(data) {
		t.Fatalf("Send(%q) = %d, %v", data, n, err)
	}
}

// recvWant is one Recv and what it must return.
func recvWant(t *testing.T, tb *Table, ctx context.Context, id string, maxBytes, exact uint32, want string, wantEOF bool) {
	t.Helper()
	data, eof, err := tb.Recv(ctx, id, maxBytes, exact, 5*time.Second)
	if err != nil || string(data) != want || eof != wantEOF {
		t.Fatalf("Recv(max %d, exact %d) = %q, eof %v, %v; want %q, eof %v", maxBytes, exact, data, eof, err, want, wantEOF)
	}
}

func leftoverOf(t *testing.T, tb *Table) int64 {
	t.Helper()
	if n := tb.leftover.Load(); n < 0 {
		t.Fatalf("the table counts %d leftover bytes", n)
	}
	return tb.leftover.Load()
}

// TestExactReadInterrupted: an exact read that times out keeps what it read; the next Recv,
// plain or exact, gets those bytes first, in order, and the table counts them until they are
// taken; a closing socket gives its count back.
func TestExactReadInterrupted(t *testing.T) {
	t.Parallel()
	tb, ctx, cli, srv := pairedTable(t, time.Second, 1<<20, nil)
	send(t, tb, ctx, cli, "hel")

	start := time.Now()
	data, eof, err := tb.Recv(ctx, srv, 0, 5, 200*time.Millisecond)
	if took := time.Since(start); took < 200*time.Millisecond || took > 3*time.Second {
		t.Errorf("the exact read timed out after %v, want 200ms (at most 3s)", took)
	}
	if data != nil || eof || Reason(err) != contract.ReasonTimeout {
		t.Fatalf("exact read of 5 with 3 sent: %q, eof %v, %v (%s); want TIMEOUT", data, eof, err, Reason(err))
	}
	if n := leftoverOf(t, tb); n != 3 {
		t.Fatalf("leftover after the interrupted read: %d, want 3", n)
	}
	recvWant(t, tb, ctx, srv, 2, 0, "he", false) // a plain Recv takes the kept bytes first
	if n := leftoverOf(t, tb); n != 1 {
		t.Errorf("leftover after taking 2: %d, want 1", n)
	}
	send(t, tb, ctx, cli, "lo world")
	recvWant(t, tb, ctx, srv, 0, 4, "llo ", false) // the kept byte, then 3 from the wire
	if n := leftoverOf(t, tb); n != 0 {
		t.Errorf("leftover after an exact read took it: %d, want 0", n)
	}
	recvWant(t, tb, ctx, srv, 0, 5, "world", false)

	// Interrupted again, then the socket closes with bytes kept: the count goes back to 0.
	send(t, tb, ctx, cli, "xy")
	if _, _, err := tb.Recv(ctx, srv, 0, 3, 100*time.Millisecond); Reason(err) != contract.ReasonTimeout {
		t.Fatalf("second interrupted read: %v", err)
	}
	if n := leftoverOf(t, tb); n != 2 {
		t.Fatalf("leftover: %d, want 2", n)
	}
	if _, err := tb.Close(ctx, srv); err != nil {
		t.Fatal(err)
	}
	if n := leftoverOf(t, tb); n != 0 {
		t.Errorf("leftover after the socket closed: %d, want 0", n)
	}
}

// TestExactReadEOF: an exact read cut short by the end of the stream returns what came, with
// eof; the next Recv says eof with no data.
func TestExactReadEOF(t *testing.T) {
	t.Parallel()
	tb, ctx, cli, srv := pairedTable(t, time.Second, 1<<20, nil)
	send(t, tb, ctx, cli, "abcdef")
	recvWant(t, tb, ctx, srv, 0, 2, "ab", false)
	if _, err := tb.Shutdown(ctx, cli, ShutWrite); err != nil {
		t.Fatal(err)
	}
	recvWant(t, tb, ctx, srv, 0, 10, "cdef", true)
	recvWant(t, tb, ctx, srv, 0, 10, "", true)
	recvWant(t, tb, ctx, srv, 10, 0, "", true)
	if info, err := tb.GetFor(ctx, srv); err != nil || info.BytesRecv != 6 || info.MsgsRecv != 2 {
		t.Errorf("counters after reading 6 bytes in 2 reads: %+v, %v", info, err)
	}
	if info, err := tb.GetFor(ctx, cli); err != nil || info.BytesSent != 6 || info.MsgsSent != 1 {
		t.Errorf("counters after sending 6 bytes once: %+v, %v", info, err)
	}
}

// TestExactReadNeedsStream: exact_bytes on a datagram socket is refused before anything is
// read: a datagram socket reads one datagram per call.
func TestExactReadNeedsStream(t *testing.T) {
	t.Parallel()
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	ctx := WithCaller(t.Context(), Caller{ID: "a"})
	for _, network := range []string{"udp"} {
		b, err := tb.Bind(ctx, network, "127.0.0.1:0", "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, _, err = tb.Recv(ctx, b.ID, 0, 4, 5*time.Second)
		if Reason(err) != contract.ReasonInvalidArgument || !strings.Contains(err.Error(), "exact_bytes needs a stream socket") {
			t.Errorf("%s: exact Recv: %v (%s), want INVALID_ARGUMENT", network, err, Reason(err))
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s: the refusal took %v: it waited for data", network, took)
		}
		// Without exact_bytes, Recv reads one datagram.
		c, err := net.Dial(network, b.Local)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("dgram")); err != nil {
			t.Fatal(err)
		}
		recvWant(t, tb, ctx, b.ID, 0, 0, "dgram", false)
	}
}

// TestRecvTimeouts: a Recv's own timeout bounds it; none (0) means the table's default; a
// cancelled RPC ends it at once with CANCELLED, not TIMEOUT; afterwards no call is pending.
func TestRecvTimeouts(t *testing.T) {
	t.Parallel()
	tb, ctx, _, srv := pairedTable(t, 500*time.Millisecond, 1<<20, nil)
	for _, tc := range []struct {
		timeout  time.Duration
		min, max time.Duration
	}{
		{100 * time.Millisecond, 100 * time.Millisecond, 450 * time.Millisecond},
		{0, 500 * time.Millisecond, 3 * time.Second},
		{-time.Second, 500 * time.Millisecond, 3 * time.Second},
	} {
		start := time.Now()
		_, _, err := tb.Recv(ctx, srv, 0, 0, tc.timeout)
		took := time.Since(start)
		if Reason(err) != contract.ReasonTimeout || took < tc.min || took > tc.max {
			t.Errorf("Recv with timeout %v: %v after %v; want TIMEOUT within [%v, %v]", tc.timeout, err, took, tc.min, tc.max)
		}
	}
	tb.mu.Lock()
	s := tb.socks[srv]
	tb.mu.Unlock()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, _, err := tb.Recv(cctx, srv, 0, 0, 10*time.Second)
		done <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); s.pending.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the Recv never became pending")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	err := <-done
	if took := time.Since(start); !errors.Is(err, context.Canceled) || Reason(err) != contract.ReasonCancelled || took > 3*time.Second {
		t.Errorf("cancelled Recv: %v (%s) after %v; want CANCELLED at once", err, Reason(err), took)
	}
	if n := s.pending.Load(); n != 0 {
		t.Errorf("%d calls pending after every Recv returned", n)
	}
}

// TestReadLimits: a read of exactly the agent's MaxRecvBytes and a send of exactly the
// caller's bytes_per_call are let through; one byte more is refused with the limit's reason.
func TestReadLimits(t *testing.T) {
	t.Parallel()
	p, err := policy.Parse("limits.yaml", []byte("default: {limits: {bytes_per_call: 2000}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tb, ctx, cli, srv := pairedTable(t, time.Second, 1000, p)
	send(t, tb, ctx, cli, "x")
	recvWant(t, tb, ctx, srv, 1000, 0, "x", false)
	_, _, err = tb.Recv(ctx, srv, 1001, 0, time.Second)
	if Reason(err) != contract.ReasonInvalidArgument || !strings.Contains(err.Error(), "1001 bytes asked, the agent's limit is 1000") {
		t.Errorf("Recv of 1001 over MaxRecvBytes 1000: %v", err)
	}
	if _, _, err := tb.Recv(ctx, srv, 0, 1001, time.Second); Reason(err) != contract.ReasonInvalidArgument {
		t.Errorf("exact Recv of 1001 over MaxRecvBytes 1000: %v", err)
	}
	send(t, tb, ctx, cli, strings.Repeat("y", 2000))
	if _, err := tb.Send(ctx, cli, make([]byte, 2001), time.Second); Reason(err) != contract.ReasonLimitExceeded || limitOf(err) != "limits.bytes_per_call" {
		t.Errorf("Send of 2001 over bytes_per_call 2000: %v", err)
	}
}

// TestShutdownDirections: read, write and both are accepted and recorded, anything else is
// refused; a peer that shut its write side reads as EOF.
func TestShutdownDirections(t *testing.T) {
	t.Parallel()
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	ctx := WithCaller(t.Context(), Caller{ID: "a"})
	for _, dir := range []Direction{ShutRead, ShutWrite, ShutBoth} {
		cli, srv := streamPair(t, tb, ctx)
		if _, err := tb.Shutdown(ctx, cli, dir); err != nil {
			t.Fatalf("Shutdown(%d): %v", dir, err)
		}
		tb.mu.Lock()
		s := tb.socks[cli]
		tb.mu.Unlock()
		s.mu.Lock()
		rd, wr := s.readShut, s.writeShut
		s.mu.Unlock()
		if rd != (dir != ShutWrite) || wr != (dir != ShutRead) {
			t.Errorf("Shutdown(%d): read shut %v, write shut %v", dir, rd, wr)
		}
		if dir != ShutRead {
			recvWant(t, tb, ctx, srv, 0, 0, "", true)
		}
	}
	cli, _ := streamPair(t, tb, ctx)
	for _, dir := range []Direction{ShutRead - 1, ShutBoth + 1} {
		if _, err := tb.Shutdown(ctx, cli, dir); Reason(err) != contract.ReasonInvalidArgument {
			t.Errorf("Shutdown(%d): %v, want INVALID_ARGUMENT", dir, err)
		}
	}
}

// TestRecvOnSocketClosedByAgent: a Recv blocked on a socket the agent closes on its own (its
// session closed) fails with SOCKET_CLOSED saying why, not with an end of stream, whichever of
// the session's two ends the agent closes first (the order varies: 20 rounds see both).
func TestRecvOnSocketClosedByAgent(t *testing.T) {
	t.Parallel()
	tb := newTable(5*time.Second, 1<<20, nil)
	defer tb.Stop()
	ctx := WithCaller(t.Context(), Caller{ID: "a"})
	for range 20 {
		si, err := tb.OpenSession(ctx, time.Minute, "")
		if err != nil {
			t.Fatal(err)
		}
		_, srv := streamPair(t, tb, WithSession(ctx, si.ID))
		tb.mu.Lock()
		s := tb.socks[srv]
		tb.mu.Unlock()
		done := make(chan error, 1)
		go func() {
			data, eof, err := tb.Recv(ctx, srv, 0, 0, 5*time.Second)
			if err == nil {
				err = fmt.Errorf("no error: data %q, eof %v", data, eof)
			}
			done <- err
		}()
		waitFor(t, 5*time.Second, "the Recv is pending", func() bool { return s.pending.Load() == 1 })
		if _, _, err := tb.CloseSession(ctx, si.ID); err != nil {
			t.Fatal(err)
		}
		err = <-done
		if Reason(err) != contract.ReasonSocketClosed || !strings.Contains(err.Error(), "socket closed by the agent: session "+si.ID+" was closed") {
			t.Fatalf("the blocked Recv: %v (%s), want SOCKET_CLOSED naming the session", err, Reason(err))
		}
	}
}

// TestRecvLargeAndNamed: a read larger than the pooled buffers gets its own and returns what
// came; an error on a connected socket names its peer's address.
func TestRecvLargeAndNamed(t *testing.T) {
	t.Parallel()
	tb, ctx, cli, srv := pairedTable(t, time.Second, 1<<20, nil)
	send(t, tb, ctx, cli, "0123456789")
	recvWant(t, tb, ctx, srv, defaultReadSize+1000, 0, "0123456789", false)
	send(t, tb, ctx, cli, "ab")
	recvWant(t, tb, ctx, srv, defaultReadSize, 0, "ab", false)
	peer, err := tb.GetFor(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = tb.Recv(ctx, srv, 0, 0, 50*time.Millisecond)
	if md := Metadata(err); Reason(err) != contract.ReasonTimeout || md["address"] != peer.Local || md["socket_id"] != srv || md["op"] != "recv" {
		t.Errorf("Recv timeout: %v, metadata %v; want TIMEOUT naming the peer %s", err, md, peer.Local)
	}
}
