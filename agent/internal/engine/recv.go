package engine

// Recv and the reads under it: exact reads keep what an interrupted read got for the next one,
// so no byte is lost to a timeout.

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

// Recv reads from a connected socket: up to maxBytes, or exactly exact bytes on a stream.
func (t *Table) Recv(ctx context.Context, id string, maxBytes, exact uint32, timeout time.Duration) ([]byte, bool, error) {
	s, err := t.get(ctx, id)
	wrap := func(err error) error {
		return &OpError{Op: "recv", SocketID: id, Network: networkOf(s), Address: addressOf(s), Err: err}
	}
	if err != nil {
		return nil, false, wrap(err)
	}
	if s.kind == KindListener {
		return nil, false, wrap(&kindError{"socket is a listener; Accept a connection and Recv on that"})
	}
	if exact > 0 && s.kind != KindStream {
		return nil, false, wrap(badArg(contract.ReasonInvalidArgument, "recv: exact_bytes needs a stream socket; a datagram socket reads one datagram per call"))
	}
	ask := maxBytes
	if exact > 0 {
		ask = exact
	}
	c, set := t.who(ctx)
	n, err := t.readLimit("recv", ask, set)
	if err != nil {
		return nil, false, wrap(err)
	}
	adm, err := t.admit(c.ID, s.session, set, claim{blocking: true, bytes: n, drains: true, waits: true})
	if err != nil {
		return nil, false, wrap(err)
	}
	defer adm.release()
	var (
		data []byte
		eof  bool
	)
	var now func() (bool, error)
	if s.kind == KindStream && s.conn != nil {
		now = func() (done bool, err error) {
			if exact > 0 {
				data, eof, done, err = s.readExactNow(n)
			} else {
				data, eof, done, err = s.readSomeNow(n)
			}
			return done, err
		}
	}
	err = t.blocking(ctx, s, s.readGate, timeout, (*readDeadline)(s), now, func() error {
		switch {
		case s.pc != nil:
			var rerr error
			data = withBuffer(n, func(buf []byte) int {
				var m int
				m, _, rerr = s.pc.ReadFrom(buf)
				return m
			})
			return rerr
		case exact > 0:
			data, eof, err = s.readExact(n)
			return err
		default:
			data, eof, err = s.readSome(n)
			return err
		}
	})
	if len(data) > 0 {
		s.bytesRecv.Add(uint64(len(data)))
		s.msgsRecv.Add(1)
	}
	if err == nil && eof && len(data) == 0 && s.isClosed() {
		// The end of stream came from closing the socket itself (or its peer in the same
		// session, closed together with it): say so, not "eof".
		err = t.closedErr(s, net.ErrClosed)
	}
	if err != nil {
		t.sockError(s, err)
		return nil, false, wrap(err)
	}
	if eof {
		t.sockEvent(EventPeerClosed, s)
	}
	return data, eof, nil
}

// readLimit is how many bytes a read of n asks (0: the default size, within limits), checked
// against the agent's MaxRecvBytes (INVALID_ARGUMENT past it) and the caller's bytes_per_call.
func (t *Table) readLimit(op string, n uint32, set *policy.RuleSet) (int, error) {
	if n == 0 {
		return min(defaultReadSize, t.maxRecv, set.Limits.BytesPerCall), nil
	}
	if int64(n) > int64(t.maxRecv) {
		return 0, badArg(contract.ReasonInvalidArgument, "%s: %d bytes asked, the agent's limit is %d; read in several calls", op, n, t.maxRecv)
	}
	if err := bytesLimit(n, set, "read in several calls"); err != nil {
		return 0, err
	}
	return int(n), nil
}

var readBuffers = sync.Pool{New: func() any { b := make([]byte, defaultReadSize); return &b }}

// withBuffer lends read a buffer of n bytes and returns a copy of the first k bytes it filled,
// so a 64 KiB read that brings 10 bytes keeps 10 bytes, not 64 KiB.
func withBuffer(n int, read func(buf []byte) int) []byte {
	if n > defaultReadSize {
		buf := make([]byte, n)
		return buf[:read(buf)]
	}
	bp := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(bp)
	k := read((*bp)[:n])
	if k <= 0 {
		return nil
	}
	return append([]byte(nil), (*bp)[:k]...)
}

// readSome reads up to n bytes, leftover first. Called under readGate.
func (s *sock) readSome(n int) ([]byte, bool, error) {
	if len(s.leftover) > 0 {
		k := min(n, len(s.leftover))
		data := append([]byte(nil), s.leftover[:k]...)
		s.setLeftover(s.leftover[k:])
		return data, false, nil
	}
	var m int
	var err error
	data := withBuffer(n, func(buf []byte) int {
		m, err = s.conn.Read(buf)
		return m
	})
	if m > 0 {
		return data, false, nil
	}
	if errors.Is(err, io.EOF) {
		return nil, true, nil
	}
	return nil, false, err
}

// readSomeNow is readSome without waiting (sock.readNow): done is false when it would have to
// wait. Called under readGate.
func (s *sock) readSomeNow(n int) (data []byte, eof, done bool, err error) {
	if len(s.leftover) > 0 {
		data, eof, err = s.readSome(n)
		return data, eof, true, err
	}
	var m int
	data = withBuffer(n, func(buf []byte) int {
		m, done, err = s.readNow.read(s.conn, buf)
		return m
	})
	if !done {
		return nil, false, false, nil
	}
	if m > 0 {
		return data, false, true, nil
	}
	if errors.Is(err, io.EOF) {
		return nil, true, true, nil
	}
	return nil, false, true, err
}

// readExactNow is readExact without waiting (sock.readNow), when no leftover is kept: done
// when the kernel holds all n bytes (or the end of the stream comes first, or an error). A
// part that came keeps as leftover, and the usual readExact waits for the rest. Called under
// readGate.
func (s *sock) readExactNow(n int) (data []byte, eof, done bool, err error) {
	if len(s.leftover) > 0 {
		return nil, false, false, nil
	}
	buf := make([]byte, n)
	m, ok, err := s.readNow.read(s.conn, buf)
	if !ok {
		return nil, false, false, nil
	}
	if m == n {
		return buf, false, true, nil
	}
	if errors.Is(err, io.EOF) {
		return nil, true, true, nil
	}
	if err != nil {
		return nil, false, true, err
	}
	s.setLeftover(slices.Clone(buf[:m])) // not the n-byte array: it holds what it counts
	return nil, false, false, nil
}

// readExact reads exactly n bytes unless EOF comes first. On another error the bytes read so
// far are kept for the next Recv, so nothing is lost. Called under readGate.
func (s *sock) readExact(n int) ([]byte, bool, error) {
	buf := make([]byte, n)
	got := copy(buf, s.leftover)
	s.setLeftover(s.leftover[got:])
	m, err := io.ReadFull(s.conn, buf[got:])
	got += m
	switch {
	case err == nil:
		return buf, false, nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return buf[:got], true, nil
	default:
		s.setLeftover(append(buf[:got:got], s.leftover...))
		return nil, false, err
	}
}

// setLeftover replaces the socket's leftover bytes and keeps the table's count of them; a
// closed socket keeps none. Called under readGate.
func (s *sock) setLeftover(b []byte) {
	select {
	case <-s.closed:
		b = nil
	default:
	}
	if len(b) == 0 {
		b = nil // let go of the array of a slice emptied by reading
	}
	if s.held != nil {
		s.held.Add(int64(len(b) - len(s.leftover)))
	}
	s.leftover = b
}

// dropLeftover uncounts a closing socket's leftover bytes: at once when no read holds
// readGate, else once the read in progress leaves it. Called by close after s.closed.
func (s *sock) dropLeftover() {
	if s.readGate == nil {
		return // never registered: never read
	}
	drop := func() {
		s.setLeftover(nil)
		s.readGate.leave()
	}
	select {
	case <-s.readGate:
		drop()
	default:
		go func() {
			<-s.readGate
			drop()
		}()
	}
}
