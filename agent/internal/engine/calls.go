package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

func (t *Table) timeout(d time.Duration) time.Duration {
	if d <= 0 {
		return t.defaultTimeout
	}
	return d
}

// blocking runs fn under a FIFO gate with a deadline: the call's timeout, bounded by the RPC's
// deadline. Cancelling ctx wakes fn at once by moving the deadline into the past.
//
// now, when not nil, is tried first in the gate: the same I/O without waiting (sock.readNow,
// sock.writeNow). When it is done (the kernel had the bytes, or the room, or an error), fn
// does not run and no deadline or wake-up is armed: they are the cost of a call that waits,
// about a microsecond, and most Sends and Recvs do not.
func (t *Table) blocking(ctx context.Context, s *sock, g gate, timeout time.Duration, dl deadline, now func() (bool, error), fn func() error) error {
	if err := s.busy(); err != nil {
		return err
	}
	s.pending.Add(1)
	// A call that waited is marked used as it ends (get marked its start); one that found the
	// gate free and did not wait ends within microseconds of that mark, so it spares the clock.
	quick := g.tryEnter()
	mark := true
	defer func() {
		if mark {
			s.lastUsed.Store(time.Now().UnixNano())
		}
		s.pending.Add(-1)
	}()
	if !quick {
		if err := g.enter(ctx, s.closed); err != nil {
			return t.closedErr(s, err)
		}
	}
	defer g.leave()
	if err := ctx.Err(); err != nil {
		// Its caller gave up while it waited for the gate: it must not take bytes nobody
		// will receive, nor write bytes its caller thinks were not sent.
		if errors.Is(err, context.Canceled) {
			return context.Canceled
		}
		return os.ErrDeadlineExceeded
	}
	if now != nil {
		if done, err := now(); done {
			mark = !quick
			return t.closedErr(s, err)
		}
	}
	deadline := time.Now().Add(t.timeout(timeout))
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := dl.set(deadline); err != nil {
		return t.closedErr(s, err)
	}
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = dl.set(time.Unix(farPastUnix, 0))
		close(woken)
	})
	err := fn()
	if !stop() {
		<-woken // the wake-up ran: let it finish before the next call in the gate sets its deadline
	}
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return context.Canceled
	}
	return t.closedErr(s, err)
}

// deadline sets the deadline of what a blocking call waits on. It is an interface of pointer
// types, not a func: a method value (s.conn.SetWriteDeadline) costs an allocation on every
// call, and blocking is on every Send's and Recv's path.
type deadline interface{ set(time.Time) error }

// readDeadline is a socket's read side.
type readDeadline sock

func (r *readDeadline) set(d time.Time) error { return (*sock)(r).setReadDeadline(d) }

// writeDeadline is a socket's write side: its connection's, or its datagram socket's.
type writeDeadline sock

func (w *writeDeadline) set(d time.Time) error {
	if s := (*sock)(w); s.conn != nil {
		return s.conn.SetWriteDeadline(d)
	}
	return w.pc.SetWriteDeadline(d)
}

// closedErr says why s was closed under a blocked call: the agent stopping, or the agent
// closing it on its own (session ended, idle).
func (t *Table) closedErr(s *sock, err error) error {
	if !errors.Is(err, net.ErrClosed) {
		return err
	}
	if t.isStopped() {
		return ErrAgentStopping
	}
	if why := s.why.Load(); why != nil {
		return &closedError{why: *why}
	}
	return err
}

func bytesLimit[N int | uint32](n N, set *policy.RuleSet, hint string) error {
	if int64(n) > int64(set.Limits.BytesPerCall) {
		return &limitError{Limit: "limits.bytes_per_call", Max: set.Limits.BytesPerCall, RuleSet: set.Name,
			Detail: fmt.Sprintf("%d bytes in one call; %s", n, hint)}
	}
	return nil
}

// Send writes all of data to a connected socket.
func (t *Table) Send(ctx context.Context, id string, data []byte, timeout time.Duration) (int, error) {
	s, err := t.get(ctx, id)
	wrap := func(err error) error {
		return &OpError{Op: "send", SocketID: id, Network: networkOf(s), Address: addressOf(s), Err: err}
	}
	if err != nil {
		return 0, wrap(err)
	}
	if s.conn == nil {
		if s.kind == KindListener {
			return 0, wrap(&kindError{"socket is a listener; Accept a connection and Send on that"})
		}
		return 0, wrap(&kindError{"socket is not connected; use SendTo with a destination, or Dial"})
	}
	c, set := t.who(ctx)
	if err := bytesLimit(len(data), set, "send in several calls"); err != nil {
		return 0, wrap(err)
	}
	adm, err := t.admit(c.ID, s.session, set, claim{blocking: true, bytes: len(data)})
	if err != nil {
		return 0, wrap(err)
	}
	defer adm.release()
	n, err := t.write(ctx, s, timeout, data, nil)
	if err != nil {
		t.sockError(s, err)
		return n, wrap(err)
	}
	return n, nil
}

// SendTo sends one datagram from a bound datagram socket.
func (t *Table) SendTo(ctx context.Context, id, address string, data []byte, timeout time.Duration) (int, error) {
	s, err := t.get(ctx, id)
	wrap := func(err error) error {
		return &OpError{Op: "sendto", SocketID: id, Network: networkOf(s), Address: address, Err: err}
	}
	if err != nil {
		return 0, wrap(err)
	}
	if s.pc == nil {
		if s.kind == KindDatagram {
			return 0, wrap(&kindError{"socket is connected (Dial); use Send, or Bind a socket for SendTo"})
		}
		return 0, wrap(&kindError{fmt.Sprintf("socket is a %s socket; SendTo needs a datagram socket from Bind", s.kind)})
	}
	if err := checkAddress("sendto", s.network, address); err != nil {
		return 0, wrap(err)
	}
	c, set := t.who(ctx)
	if err := bytesLimit(len(data), set, "send smaller datagrams"); err != nil {
		return 0, wrap(err)
	}
	dst, done, err := destination(set, s.network, address)
	if err != nil {
		return 0, wrap(err)
	}
	defer done()
	adm, err := t.admit(c.ID, s.session, set, claim{blocking: true, bytes: len(data)})
	if err != nil {
		return 0, wrap(err)
	}
	defer adm.release()
	n, err := t.write(ctx, s, timeout, data, dst)
	if err != nil {
		t.sockError(s, err)
		return n, wrap(callerAddrs(err, s.network, "", address))
	}
	return n, nil
}

// write runs one write of data (a Send, or a SendTo to dst) under the socket's write gate, and
// counts it. On a stream, what the send buffer takes at once is written without waiting
// (sock.writeNow), and the rest, if any, the usual way.
func (t *Table) write(ctx context.Context, s *sock, timeout time.Duration, data []byte, dst net.Addr) (int, error) {
	var n int
	var now func() (bool, error)
	if s.kind == KindStream && s.conn != nil {
		now = func() (bool, error) {
			k, ok, err := s.writeNow.write(s.conn, data)
			n = k
			return ok && (err != nil || k == len(data)), err
		}
	}
	err := t.blocking(ctx, s, s.writeGate, timeout, (*writeDeadline)(s), now, func() error {
		var k int
		var werr error
		if dst != nil {
			k, werr = s.pc.WriteTo(data[n:], dst)
		} else {
			k, werr = s.conn.Write(data[n:])
		}
		n += k
		return werr
	})
	s.bytesSent.Add(uint64(n))
	if err == nil {
		s.msgsSent.Add(1)
	}
	return n, err
}

// RecvFrom receives one datagram and its sender.
func (t *Table) RecvFrom(ctx context.Context, id string, maxBytes uint32, timeout time.Duration) ([]byte, string, error) {
	s, err := t.get(ctx, id)
	wrap := func(err error) error {
		return &OpError{Op: "recvfrom", SocketID: id, Network: networkOf(s), Address: addressOf(s), Err: err}
	}
	if err != nil {
		return nil, "", wrap(err)
	}
	if s.kind != KindDatagram {
		return nil, "", wrap(&kindError{fmt.Sprintf("socket is a %s socket; RecvFrom needs a datagram socket (use Recv on streams)", s.kind)})
	}
	c, set := t.who(ctx)
	n, err := t.readLimit("recvfrom", maxBytes, set)
	if err != nil {
		return nil, "", wrap(err)
	}
	adm, err := t.admit(c.ID, s.session, set, claim{blocking: true, bytes: n, waits: true})
	if err != nil {
		return nil, "", wrap(err)
	}
	defer adm.release()
	var (
		data []byte
		from string
	)
	err = t.blocking(ctx, s, s.readGate, timeout, (*readDeadline)(s), nil, func() error {
		var rerr error
		data = withBuffer(n, func(buf []byte) int {
			var m int
			if s.conn != nil {
				m, rerr = s.conn.Read(buf)
				from = addrString(s.conn.RemoteAddr())
				return m
			}
			var addr net.Addr
			m, addr, rerr = s.pc.ReadFrom(buf)
			from = addrString(addr)
			return m
		})
		return rerr
	})
	if err != nil {
		t.sockError(s, err)
		return nil, "", wrap(err)
	}
	s.bytesRecv.Add(uint64(len(data)))
	s.msgsRecv.Add(1)
	return data, from, nil
}

type halfCloser interface {
	CloseRead() error
	CloseWrite() error
}

// Shutdown half-closes a connected stream socket.
func (t *Table) Shutdown(ctx context.Context, id string, dir Direction) (Info, error) {
	s, err := t.get(ctx, id)
	wrap := func(err error) error {
		return &OpError{Op: "shutdown", SocketID: id, Network: networkOf(s), Address: addressOf(s), Err: err}
	}
	if err != nil {
		return Info{}, wrap(err)
	}
	hc, ok := s.halves()
	if s.kind != KindStream || !ok {
		return Info{}, wrap(&kindError{fmt.Sprintf("socket is a %s socket; Shutdown needs a connected stream socket", s.kind)})
	}
	if dir < ShutRead || dir > ShutBoth {
		return Info{}, wrap(badArg(contract.ReasonInvalidArgument, "shutdown: direction must be read, write or both"))
	}
	if dir == ShutRead || dir == ShutBoth {
		if err := hc.CloseRead(); err != nil {
			return Info{}, wrap(err)
		}
		s.mu.Lock()
		s.readShut = true
		s.mu.Unlock()
	}
	if dir == ShutWrite || dir == ShutBoth {
		if err := hc.CloseWrite(); err != nil {
			return Info{}, wrap(err)
		}
		s.mu.Lock()
		s.writeShut = true
		s.mu.Unlock()
	}
	return s.info(), nil
}
