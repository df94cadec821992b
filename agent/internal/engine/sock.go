package engine

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockagent/sockagent/agent/internal/unixpath"
)

// Kind says what a socket can do.
type Kind int

// Socket kinds.
const (
	KindListener Kind = iota + 1
	KindStream
	KindDatagram
)

func (k Kind) String() string {
	switch k {
	case KindListener:
		return "listener"
	case KindStream:
		return "stream"
	case KindDatagram:
		return "datagram"
	}
	return "unknown"
}

// State is a socket's life stage.
type State int

// Socket states.
const (
	StateOpen State = iota + 1
	StateReadShut
	StateWriteShut
	StateShut
	StateClosed
)

// Direction selects a half of a connection for Shutdown.
type Direction int

// Shutdown directions.
const (
	ShutRead Direction = iota + 1
	ShutWrite
	ShutBoth
)

// Info is a snapshot of one socket.
type Info struct {
	ID, Network, Parent  string
	Owner                string // Caller.ID of the caller that opened it
	Kind                 Kind
	State                State
	Local, Remote        string
	BytesSent, BytesRecv uint64
	MsgsSent, MsgsRecv   uint64
	Accepted             uint64
	Created              time.Time
	Pending              uint32
	Session              string    // the session the socket belongs to; empty outside one
	LastUsed             time.Time // when a call last named it or a blocking call on it ended

	Serving  *ServingInfo // the behaviour serving it (Serve); nil if none
	Attached bool         // an Attach stream owns its data (attach.go)

	Options *Options // effective options, read back by GetFor and SetOptions; nil otherwise
	Groups  []string // multicast groups joined (options.go)
	TLS     *TLSInfo // its TLS session, or that it is a TLS listener; nil if plain (tls.go)
}

const (
	defaultReadSize = 64 << 10
	// farPast is a deadline in the past: setting it wakes a blocked call at once.
	farPastUnix = 1
)

// gate is a FIFO lock: Go serves goroutines blocked on one channel in arrival order.
type gate chan struct{}

func newGate() gate {
	g := make(gate, 1)
	g <- struct{}{}
	return g
}

func (g gate) enter(ctx context.Context, closed <-chan struct{}) error {
	if g.tryEnter() { // free: a receive that cannot wait costs a fraction of the select below
		return nil
	}
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
		return net.ErrClosed
	}
}

// tryEnter enters g if it is free, without waiting.
func (g gate) tryEnter() bool {
	select {
	case <-g:
		return true
	default:
		return false
	}
}

func (g gate) leave() { g <- struct{}{} }

// sock is one entry of the table.
type sock struct {
	id, network, parent string
	owner               string // Caller.ID of the caller that opened it (for accepted sockets, of Accept)
	kind                Kind
	session             string // the session it belongs to; empty outside one
	created             time.Time
	ln                  net.Listener
	conn                net.Conn        // stream socket, or connected datagram socket
	pc                  net.PacketConn  // bound (unconnected) datagram socket
	readNow, writeNow   noWait          // conn's I/O without waiting; each used under its gate
	unix                *unixpath.Bound // the directory a UNIX path is bound in; its file goes at close
	tls                 *tlsState       // a TLS socket's state (tls.go); nil if plain

	readGate, writeGate gate
	closed              chan struct{}
	closeOnce           sync.Once
	leftover            []byte        // bytes of an interrupted exact read; guarded by readGate; set with setLeftover
	held                *atomic.Int64 // the table's count of leftover bytes (limits_budget.go)

	mu        sync.Mutex // guards readShut, writeShut, groups
	readShut  bool
	writeShut bool
	groups    []membership // multicast groups joined (options.go)

	pending                                  atomic.Int32
	lastUsed                                 atomic.Int64           // UnixNano of the last call naming it
	why                                      atomic.Pointer[string] // why the agent closed it on its own
	bytesSent, bytesRecv, msgsSent, msgsRecv atomic.Uint64
	accepted                                 atomic.Uint64
	serving                                  atomic.Pointer[server] // the behaviour serving it (serve.go)
	attached                                 atomic.Bool            // an Attach stream owns it (attach.go)
	noted                                    atomic.Uint32          // what watchers heard of once (events.go)
}

func (s *sock) info() Info {
	in := Info{
		ID: s.id, Network: s.network, Parent: s.parent, Owner: s.owner, Kind: s.kind, State: StateOpen,
		Created:   s.created,
		BytesSent: s.bytesSent.Load(), BytesRecv: s.bytesRecv.Load(),
		MsgsSent: s.msgsSent.Load(), MsgsRecv: s.msgsRecv.Load(),
		Accepted: s.accepted.Load(), Pending: uint32(max(s.pending.Load(), 0)),
		Session: s.session, LastUsed: time.Unix(0, s.lastUsed.Load()), Attached: s.attached.Load(),
	}
	if sv := s.serving.Load(); sv != nil {
		in.Serving = sv.info()
	}
	if s.tls != nil {
		in.TLS = s.tls.info()
	}
	switch {
	case s.ln != nil:
		in.Local = addrString(s.ln.Addr())
	case s.conn != nil:
		in.Local = addrString(s.conn.LocalAddr())
		in.Remote = addrString(s.conn.RemoteAddr())
	case s.pc != nil:
		in.Local = addrString(s.pc.LocalAddr())
	}
	s.mu.Lock()
	for _, m := range s.groups {
		in.Groups = append(in.Groups, m.String())
	}
	switch {
	case s.readShut && s.writeShut:
		in.State = StateShut
	case s.readShut:
		in.State = StateReadShut
	case s.writeShut:
		in.State = StateWriteShut
	}
	s.mu.Unlock()
	return in
}

// addrString names an address for callers; a UNIX socket this agent bound is named by its
// path, not by the directory handle the kernel was given.
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	if ua, ok := a.(*net.UnixAddr); ok && ua != nil {
		return unixpath.Display(ua.Name)
	}
	return a.String()
}

// setReadDeadline sets the read deadline of a connected or bound socket.
func (s *sock) setReadDeadline(d time.Time) error {
	if s.conn != nil {
		return s.conn.SetReadDeadline(d)
	}
	return s.pc.SetReadDeadline(d)
}

// markClosed tells calls queued or blocked on s that it is being closed.
func (s *sock) markClosed() { s.closeOnce.Do(func() { close(s.closed) }) }

// isClosed reports whether s is closed or being closed.
func (s *sock) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

func (s *sock) close() error {
	s.markClosed()
	s.dropLeftover()
	err := s.closeFile()
	s.stopServing()
	return err
}

// closeFile closes the OS socket and removes the file of a UNIX path it bound, through the
// directory handle and only while it is still that socket's file. Every way a socket ends
// (Close, session end, idle reaping, Stop) comes here.
func (s *sock) closeFile() error {
	var err error
	switch {
	case s.ln != nil:
		err = s.ln.Close()
	case s.tls != nil:
		err = s.tls.close()
	case s.conn != nil:
		err = s.conn.Close()
	case s.pc != nil:
		err = s.pc.Close()
	}
	_, _ = s.unix.Close()
	return err
}

// table owns every live socket of the agent. It knows nothing of gRPC.
//
// Every socket belongs to the caller that opened it (CallerFrom(ctx).ID; an accepted socket to
// the caller of Accept). To any other caller it does not exist: calls on it answer
// ErrUnknownSocket, as for an id never opened, and List leaves it out.
//
// The policy decides, per caller, what may be opened and used; the table counts each caller's

func networkOf(s *sock) string {
	if s == nil {
		return ""
	}
	return s.network
}

// addressOf names a socket in messages: its peer when connected, else its local address.
func addressOf(s *sock) string {
	switch {
	case s == nil:
		return ""
	case s.conn != nil:
		if r := addrString(s.conn.RemoteAddr()); r != "" {
			return r
		}
		return addrString(s.conn.LocalAddr())
	case s.ln != nil:
		return addrString(s.ln.Addr())
	case s.pc != nil:
		return addrString(s.pc.LocalAddr())
	}
	return ""
}
