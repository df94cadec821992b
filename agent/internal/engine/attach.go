package engine

// Attach: one bidirectional stream joins a caller to a socket, like netcat.
//
// Two goroutines move the data, each one message at a time, so memory stays bounded by gRPC's
// flow-control windows plus one read buffer: the upstream one receives a request, writes it to
// the socket and only then receives the next (a socket that takes bytes slowly slows the
// caller's Send); the downstream one reads the socket into one reused buffer and sends it as a
// response before reading again (a caller that takes responses slowly leaves the bytes in the
// socket's buffers, so the peer's writes block). The handler only waits for them, for the
// socket being closed, and for the RPC to end.
//
// How an Attach ends:
//   - stream socket: OK once the caller half-closed (CloseSend or close_write: the socket's
//     write half is shut down) and the socket read EOF (sent as eof=true);
//   - datagram socket: OK when the caller half-closes (datagrams have no EOF); datagrams that
//     arrive later stay queued in the socket for the next Recv or Attach;
//   - the socket closed by Close or by its session ending: ABORTED SOCKET_CLOSED (the closing
//     call wins: there is nothing left to attach to; a session's end says so in the message);
//     the agent stopping: UNAVAILABLE AGENT_STOPPING;
//   - a socket error (CONNECTION_RESET, BROKEN_PIPE, ...), the caller cancelling (CANCELLED)
//     or the RPC deadline (DEADLINE_EXCEEDED TIMEOUT): that status.
//
// The socket stays open after any of these but a close: Close it when done. While attached it
// counts as a pending call (pending_calls 1, idle 0), so the idle reaper leaves it alone, and
// every other data call on it (Accept, Send, Recv, SendTo, RecvFrom, another Attach) answers
// FAILED_PRECONDITION SOCKET_BUSY; Shutdown, GetSocket and Close still work.
//
// Requests: the first names socket_id (and read_size); its data, if any, is written like any
// other. A first request with no data, address or close_write only opens the Attach: on a
// datagram socket it sends no empty datagram (later empty requests do).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

// maxAttachRead bounds AttachRequest.read_size.
const maxAttachRead = 1 << 20

// AttachIn is one request of an Attach stream: the first names the socket (and the read
// size); any may carry data, a datagram's destination, or the end of the caller's direction.
type AttachIn struct {
	SocketID string
	ReadSize uint32
	// Data is the request's data, or its first piece: More holds the rest, in the pieces the
	// adapter received it in, so that a stream socket takes them in one vectored write with no
	// copy to gather them (a datagram socket gathers them: a datagram is one write). Data is
	// not empty when More is not.
	Data       []byte
	More       [][]byte
	Address    string
	CloseWrite bool
}

// size is the length of the request's data, all pieces.
func (in *AttachIn) size() int {
	n := len(in.Data)
	for _, b := range in.More {
		n += len(b)
	}
	return n
}

// AttachOut is one response of an Attach stream: bytes (or one datagram and its sender) read
// from the socket, or the end of the stream.
type AttachOut struct {
	Data          []byte
	RemoteAddress string
	EOF           bool
}

// AttachStream is the stream an Attach moves data over. Send may keep nothing of out after it
// returns: the engine reuses out and its buffer for the next read. Recv's data is the
// engine's until its next Recv (which it calls only once it wrote the data): the adapter may
// reuse the buffers it lent then.
type AttachStream interface {
	Send(out *AttachOut) error
	Recv() (*AttachIn, error)
}

// StreamCounts are the bytes an Attach wrote to its socket and read from it, and the
// destinations its datagrams went to, for the RPC's log and audit line.
type StreamCounts struct {
	Written, Read atomic.Uint64

	mu    sync.Mutex
	dests []string // distinct, in the order first sent to; at most MaxAuditDestinations
	more  int      // datagrams sent to destinations left out of dests
}

// MaxAuditDestinations bounds the destinations an Attach's audit line lists: a stream may
// address a datagram anywhere the policy allows, and a log line must stay small.
const MaxAuditDestinations = 16

// sentTo records a destination of a datagram.
func (c *StreamCounts) sentTo(dst string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.dests {
		if d == dst {
			return
		}
	}
	if len(c.dests) < MaxAuditDestinations {
		c.dests = append(c.dests, dst)
		return
	}
	c.more++
}

// Destinations returns the destinations the Attach's datagrams went to (on an unconnected
// socket), at most MaxAuditDestinations in the order first used, and how many datagrams went
// to others besides.
func (c *StreamCounts) Destinations() ([]string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.dests...), c.more
}

// busy refuses a data call (Accept, Send, Recv, SendTo, RecvFrom) on a socket an Attach stream
// owns; called by blocking.
func (s *sock) busy() error {
	if s.attached.Load() {
		return &busyError{fmt.Sprintf("socket %s is attached to an Attach stream, which owns its data until it ends; end the Attach (or Close the socket) first", s.id)}
	}
	return nil
}

// attachRun is one Attach in progress.
type attachRun struct {
	t        *Table
	s        *sock
	set      *policy.RuleSet
	stream   AttachStream
	readSize int
	counts   *StreamCounts // for the RPC's log and audit line; nil without one

	stop     atomic.Bool // set when the Attach ends: the goroutines touch the socket no more
	rmu, wmu sync.Mutex  // held by a goroutine while it reads / writes the socket

	shut  chan struct{} // closed when the caller ended its direction (half-close, close_write)
	wdone chan error    // the upstream goroutine's end: nil after the caller's half-close
	rdone chan error    // the downstream goroutine's end: nil after EOF was sent
}

// Attach joins stream to a socket of ctx's caller until either side ends (see the top of this
// file); counts, if not nil, receives the bytes moved.
func (t *Table) Attach(ctx context.Context, stream AttachStream, counts *StreamCounts) error {
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return badArg(contract.ReasonInvalidArgument, "attach: the stream ended before its first request; the first AttachRequest must name socket_id")
		}
		return err
	}
	id := first.SocketID
	if id == "" {
		return badArg(contract.ReasonInvalidArgument, "attach: the first AttachRequest must name socket_id")
	}
	s, err := t.get(ctx, id)
	wrap := func(err error) error {
		return &OpError{Op: "attach", SocketID: id, Network: networkOf(s), Address: addressOf(s), Err: err}
	}
	if err != nil {
		return wrap(err)
	}
	if s.kind == KindListener {
		return wrap(&kindError{"socket is a listener; Accept a connection and Attach to that"})
	}
	c, set := t.who(ctx)
	n := int(first.ReadSize)
	switch {
	case n == 0:
		n = min(defaultReadSize, set.Limits.BytesPerCall)
	case n > maxAttachRead:
		return wrap(badArg(contract.ReasonInvalidArgument, "attach: read_size %d over the limit of %d; give 0 (64 KiB) up to 1 MiB", n, maxAttachRead))
	default:
		if err := bytesLimit(n, set, "give a smaller read_size"); err != nil {
			return wrap(err)
		}
	}
	// The Attach holds its read buffer and, while it writes one, a request's data: up to
	// bytes_per_call (a larger request is refused), or the largest message gRPC accepts.
	msg := set.Limits.BytesPerCall
	if t.maxMessage > 0 {
		msg = min(msg, t.maxMessage)
	}
	adm, err := t.admit(c.ID, s.session, set, claim{blocking: true, bytes: n + msg, waits: true})
	if err != nil {
		return wrap(err)
	}
	defer adm.release()
	release, err := s.own()
	if err != nil {
		return wrap(err)
	}
	defer release()
	r := &attachRun{t: t, s: s, set: set, stream: stream, readSize: n, counts: counts,
		shut: make(chan struct{}), wdone: make(chan error, 1), rdone: make(chan error, 1)}
	if err := r.run(ctx, first); err != nil {
		t.sockError(s, err)
		return wrap(err)
	}
	return nil
}

// own marks s attached and takes both its gates for the Attach, or says who has it; release
// gives them back.
func (s *sock) own() (release func(), err error) {
	if !s.attached.CompareAndSwap(false, true) {
		return nil, &busyError{fmt.Sprintf("socket %s is attached to another Attach stream already; end that one first", s.id)}
	}
	if !tryEnter(s.readGate) {
		s.attached.Store(false)
		return nil, &busyError{fmt.Sprintf("socket %s has a Recv (or RecvFrom) in progress; wait for it to end, then Attach", s.id)}
	}
	if !tryEnter(s.writeGate) {
		s.readGate.leave()
		s.attached.Store(false)
		return nil, &busyError{fmt.Sprintf("socket %s has a Send (or SendTo) in progress; wait for it to end, then Attach", s.id)}
	}
	s.pending.Add(1) // not idle while attached: the idle reaper leaves it alone
	return func() {
		s.lastUsed.Store(time.Now().UnixNano())
		s.pending.Add(-1)
		s.attached.Store(false)
		s.writeGate.leave()
		s.readGate.leave()
	}, nil
}

func (s *sock) setWriteDeadline(d time.Time) error {
	if s.conn != nil {
		return s.conn.SetWriteDeadline(d)
	}
	return s.pc.SetWriteDeadline(d)
}

// run moves the data until both directions ended or something failed.
func (r *attachRun) run(ctx context.Context, first *AttachIn) error {
	s := r.s
	if s.isClosed() {
		return r.t.closedErr(s, net.ErrClosed)
	}
	// Earlier calls left their deadlines: an Attach has none but the RPC's.
	var deadline time.Time
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	if err := s.setReadDeadline(deadline); err != nil {
		return r.t.closedErr(s, err)
	}
	if err := s.setWriteDeadline(deadline); err != nil {
		return r.t.closedErr(s, err)
	}
	woken := make(chan struct{})
	stopWake := context.AfterFunc(ctx, func() {
		r.wake()
		close(woken)
	})
	defer func() {
		if !stopWake() {
			<-woken
		}
	}()
	defer r.end()

	go r.upstream(first)
	go r.downstream()
	shut, rdone, wdone := r.shut, r.rdone, r.wdone
	for shut != nil || rdone != nil {
		select {
		case <-shut:
			shut = nil
			if s.kind == KindDatagram {
				return nil // no EOF will come: the caller's half-close ends the Attach
			}
		case err := <-wdone:
			wdone = nil
			if err != nil {
				return r.socketErr(err)
			}
		case err := <-rdone:
			rdone = nil
			if err != nil {
				return r.socketErr(err)
			}
		case <-s.closed:
			return r.t.closedErr(s, net.ErrClosed)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// socketErr says why the socket failed under an Attach: closed (by whom), or the error itself.
func (r *attachRun) socketErr(err error) error {
	if r.s.isClosed() {
		return r.t.closedErr(r.s, net.ErrClosed)
	}
	return r.t.closedErr(r.s, err)
}

// wake moves both deadlines into the past, so a blocked read or write returns at once.
func (r *attachRun) wake() {
	past := time.Unix(farPastUnix, 0)
	_ = r.s.setReadDeadline(past)
	_ = r.s.setWriteDeadline(past)
}

// end stops both goroutines' use of the socket: once it returns, neither reads nor writes it
// again (one may still be in a Send or Recv on the stream, which ends with the RPC).
func (r *attachRun) end() {
	r.stop.Store(true)
	r.wake()
	r.rmu.Lock()
	r.rmu.Unlock() //nolint:staticcheck // an empty critical section: waits for a read in progress
	r.wmu.Lock()
	r.wmu.Unlock() //nolint:staticcheck // waits for a write in progress
}

// upstream receives requests and writes them to the socket, one at a time; it reports nil
// after the caller's half-close.
func (r *attachRun) upstream(first *AttachIn) { r.wdone <- r.up(first) }

func (r *attachRun) up(req *AttachIn) error {
	s := r.s
	shut := false // close_write seen
	if len(req.Data) == 0 && req.Address == "" && !req.CloseWrite {
		// A first request with nothing but socket_id (and read_size) opens the Attach: on a
		// datagram socket it sends no empty datagram, later empty requests do.
		var err error
		if req, err = r.stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return r.shutWrite()
			}
			return err
		}
	}
	var (
		lastAddr string
		lastDst  net.Addr
		lastDone = func() {} // lets go of lastDst's open file (a UNIX path)
	)
	defer func() { lastDone() }()
	for {
		data, addr := req.Data, req.Address
		size := req.size()
		switch {
		case shut && size > 0:
			return badArg(contract.ReasonInvalidArgument, "attach: data after close_write; the socket's write half is shut down already")
		case shut:
		case s.pc == nil && addr != "":
			return badArg(contract.ReasonInvalidArgument, "attach: address %q given for a connected socket; address is only for an unconnected datagram socket (Bind)", addr)
		default:
			if err := bytesLimit(size, r.set, "send smaller requests"); err != nil {
				return err
			}
			// On a datagram socket every request is a datagram, even empty, but one that only
			// says close_write.
			if size > 0 || (s.kind == KindDatagram && !req.CloseWrite) {
				var dst net.Addr
				if s.pc != nil {
					if addr != lastAddr || lastDst == nil {
						lastDone()
						d, done, err := r.destination(addr)
						if err != nil {
							lastDst, lastDone = nil, func() {}
							return err
						}
						lastAddr, lastDst, lastDone = addr, d, done
					}
					dst = lastDst
				}
				if err := r.write(data, req.More, dst); err != nil {
					return err
				}
			}
			if req.CloseWrite {
				shut = true
				if err := r.shutWrite(); err != nil {
					return err
				}
			}
		}
		var err error
		req, err = r.stream.Recv()
		switch {
		case errors.Is(err, io.EOF) && shut:
			return nil
		case errors.Is(err, io.EOF):
			return r.shutWrite()
		case err != nil:
			return err
		}
	}
}

// destination checks and resolves the address of a datagram on an unconnected socket, as
// SendTo does; done lets go of what it opened.
func (r *attachRun) destination(addr string) (net.Addr, func(), error) {
	if err := checkAddress("attach", r.s.network, addr); err != nil {
		return nil, func() {}, err
	}
	return destination(r.set, r.s.network, addr)
}

// write writes data and then more to the socket (to dst on an unconnected datagram socket).
func (r *attachRun) write(data []byte, more [][]byte, dst net.Addr) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.stop.Load() {
		return net.ErrClosed
	}
	var (
		n   int
		err error
	)
	if len(more) > 0 && r.s.kind != KindStream { // dst is set only on a datagram socket
		// A datagram is one write of all its bytes.
		data, more = slices.Concat(append([][]byte{data}, more...)...), nil
	}
	switch {
	case dst != nil:
		n, err = r.s.pc.WriteTo(data, dst)
		if r.counts != nil {
			r.counts.sentTo(dst.String())
		}
	case len(more) > 0: // a stream's pieces in one vectored write (writev), not gathered first
		bufs := append(net.Buffers{data}, more...)
		var m int64
		m, err = bufs.WriteTo(r.s.conn)
		n = int(m)
	default:
		n, err = r.s.conn.Write(data)
	}
	r.s.bytesSent.Add(uint64(n))
	if r.counts != nil {
		r.counts.Written.Add(uint64(n))
	}
	if err != nil {
		return err
	}
	r.s.msgsSent.Add(1)
	return nil
}

// shutWrite ends the caller's direction: a stream socket's write half is shut down (the peer
// reads EOF).
func (r *attachRun) shutWrite() error {
	if r.s.kind == KindStream {
		r.wmu.Lock()
		defer r.wmu.Unlock()
		if r.stop.Load() {
			return net.ErrClosed
		}
		hc, ok := r.s.halves()
		if !ok {
			return &kindError{"socket cannot shut down its write half"}
		}
		if err := hc.CloseWrite(); err != nil {
			return err
		}
		r.s.mu.Lock()
		r.s.writeShut = true
		r.s.mu.Unlock()
	}
	close(r.shut)
	return nil
}

// downstream reads the socket into one reused buffer and sends each read as a response, the
// next read only once the response is sent.
func (r *attachRun) downstream() {
	s := r.s
	buf := make([]byte, r.readSize)
	resp := &AttachOut{}
	for {
		n, from, msg, err := r.read(buf)
		if r.stop.Load() {
			return
		}
		switch {
		case msg:
			// AttachStream.Send keeps nothing of resp once it returns, so buf is free again.
			resp.Data, resp.RemoteAddress = buf[:n], from
			if err := r.stream.Send(resp); err != nil {
				r.rdone <- err
				return
			}
		case errors.Is(err, io.EOF):
			if s.isClosed() { // the end came from closing the socket itself
				r.rdone <- net.ErrClosed
				return
			}
			r.t.sockEvent(EventPeerClosed, s)
			resp.Data, resp.RemoteAddress, resp.EOF = nil, "", true
			r.rdone <- r.stream.Send(resp)
			return
		default:
			r.rdone <- err
			return
		}
	}
}

// read reads once from the socket, leftover bytes of an interrupted exact Recv first. msg says
// it read something to send: bytes of a stream, or one datagram (maybe empty); else err is
// io.EOF at a stream's end, or the error.
func (r *attachRun) read(buf []byte) (n int, from string, msg bool, err error) {
	s := r.s
	r.rmu.Lock()
	defer r.rmu.Unlock()
	if r.stop.Load() {
		return 0, "", false, net.ErrClosed
	}
	switch {
	case len(s.leftover) > 0: // the Attach holds readGate, which guards leftover
		n = copy(buf, s.leftover)
		s.setLeftover(s.leftover[n:])
	case s.pc != nil:
		var addr net.Addr
		n, addr, err = s.pc.ReadFrom(buf)
		from = addrString(addr)
	default:
		n, err = s.conn.Read(buf)
	}
	if n > 0 || (err == nil && s.kind == KindDatagram) {
		s.bytesRecv.Add(uint64(n))
		s.msgsRecv.Add(1)
		if r.counts != nil {
			r.counts.Read.Add(uint64(n))
		}
		return n, from, true, nil
	}
	if err == nil || (errors.Is(err, io.EOF) && s.kind != KindStream) {
		err = io.ErrNoProgress // a stream read of 0 bytes, or EOF on a datagram socket: never expected
	}
	return 0, "", false, err
}
