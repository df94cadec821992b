package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent/policy"
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
}

const (
	defaultReadSize = 64 << 10
	// farPast is a deadline in the past: setting it wakes a blocked call at once.
	farPastUnix = 1
)

var (
	streamListenNets = []string{"tcp", "tcp4", "tcp6", "unix"}
	datagramNets     = []string{"udp", "udp4", "udp6", "unixgram"}
	dialNets         = []string{"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix", "unixgram"}
)

// Networks lists every network name the agent accepts.
func Networks() []string { return append([]string(nil), dialNets...) }

// gate is a FIFO lock: Go serves goroutines blocked on one channel in arrival order.
type gate chan struct{}

func newGate() gate {
	g := make(gate, 1)
	g <- struct{}{}
	return g
}

func (g gate) enter(ctx context.Context, closed <-chan struct{}) error {
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
		return net.ErrClosed
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
	conn                net.Conn       // stream socket, or connected datagram socket
	pc                  net.PacketConn // bound (unconnected) datagram socket
	unlink              string         // unixgram path to remove on close

	readGate, writeGate gate
	closed              chan struct{}
	closeOnce           sync.Once
	leftover            []byte        // bytes of an interrupted exact read; guarded by readGate; set with setLeftover
	held                *atomic.Int64 // the table's count of leftover bytes (limits_budget.go)

	mu        sync.Mutex // guards readShut, writeShut
	readShut  bool
	writeShut bool

	pending                                  atomic.Int32
	lastUsed                                 atomic.Int64           // UnixNano of the last call naming it
	why                                      atomic.Pointer[string] // why the agent closed it on its own
	bytesSent, bytesRecv, msgsSent, msgsRecv atomic.Uint64
	accepted                                 atomic.Uint64
	serving                                  atomic.Pointer[server] // the behaviour serving it (serve.go)
	attached                                 atomic.Bool            // an Attach stream owns it (attach.go)
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
	switch {
	case s.ln != nil:
		in.Local = s.ln.Addr().String()
	case s.conn != nil:
		in.Local = addrString(s.conn.LocalAddr())
		in.Remote = addrString(s.conn.RemoteAddr())
	case s.pc != nil:
		in.Local = addrString(s.pc.LocalAddr())
	}
	s.mu.Lock()
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

func addrString(a net.Addr) string {
	if a == nil {
		return ""
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

// closeFile closes the OS socket (and removes a unixgram path the socket bound).
func (s *sock) closeFile() error {
	var err error
	switch {
	case s.ln != nil:
		err = s.ln.Close()
	case s.conn != nil:
		err = s.conn.Close()
	case s.pc != nil:
		err = s.pc.Close()
	}
	if s.unlink != "" {
		_ = os.Remove(s.unlink)
	}
	return err
}

// table owns every live socket of the agent. It knows nothing of gRPC.
//
// Every socket belongs to the caller that opened it (CallerFrom(ctx).ID; an accepted socket to
// the caller of Accept). To any other caller it does not exist: calls on it answer
// ErrUnknownSocket, as for an id never opened, and List leaves it out.
//
// The policy decides, per caller, what may be opened and used; the table counts each caller's
// open sockets (with slots reserved by calls still opening one) and blocking calls in progress.
type table struct {
	defaultTimeout time.Duration
	maxRecv        int
	policy         *policy.Policy

	instance string    // the agent instance, named in UNKNOWN_SOCKET
	started  time.Time // when the agent instance started
	idle     time.Duration
	leftover atomic.Int64 // bytes held in every socket's leftover (agent_limits.buffered_bytes)

	mu        sync.Mutex
	next      uint64
	socks     map[string]*sock
	stopped   bool
	total     int            // open sockets plus reserved slots
	owned     map[string]int // per owner: open sockets plus reserved slots
	calls     map[string]int // per caller: blocking calls in progress
	sessions  map[string]*session
	idleTimer *time.Timer // the idle reaper, nil when idle <= 0
	reqs      map[reqKey]*reqEntry
	reqOrder  []reqRef // reqs, oldest first
	// reclaimed remembers the sockets the agent closed on its own (ids never come back), so
	// that UNKNOWN_SOCKET says why; reclaimedOrder is oldest first, at most maxReclaimed.
	reclaimed      map[string]reclaim
	reclaimedOrder []string
	// onReclaim, when set, is told of every socket the agent closed on its own (closeAll).
	onReclaim func(in Info, cause, why string)
}

func newTable(defaultTimeout time.Duration, maxRecv int, pol *policy.Policy) *table {
	if pol == nil {
		pol = policy.Default()
	}
	return &table{
		defaultTimeout: defaultTimeout, maxRecv: maxRecv, policy: pol,
		socks: map[string]*sock{}, owned: map[string]int{}, calls: map[string]int{},
		sessions: map[string]*session{}, reqs: map[reqKey]*reqEntry{}, started: time.Now(),
		reclaimed: map[string]reclaim{},
	}
}

// who returns the caller of ctx and the policy rule set that applies to it.
func (t *table) who(ctx context.Context) (Caller, *policy.RuleSet) {
	c := CallerFrom(ctx)
	return c, t.policy.For(policy.Identity{ID: c.ID, Subject: c.Subject, SANs: c.SANs, Token: c.Token})
}

// reserve takes a socket slot for owner in session sess (empty outside one), within the
// agent-wide, the caller's and the session's limits; the slot is freed by release, or by
// closing the socket that add registers in it.
func (t *table) reserve(owner, sess string, set *policy.RuleSet) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	ss := t.sessions[sess]
	switch {
	case t.stopped:
		return ErrAgentStopping
	case t.total >= t.policy.MaxSockets:
		return &limitError{Limit: "agent_limits.sockets", Max: t.policy.MaxSockets,
			Detail: fmt.Sprintf("the agent has %d open sockets; close some first", t.total)}
	case t.owned[owner] >= set.Limits.Sockets:
		return &limitError{Limit: "limits.sockets", Max: set.Limits.Sockets, RuleSet: set.Name,
			Detail: fmt.Sprintf("caller %q has %d open sockets; close some first", owner, t.owned[owner])}
	case ss != nil && ss.socks >= set.SessionLimits.Sockets:
		return &limitError{Limit: "session_limits.sockets", Max: set.SessionLimits.Sockets, RuleSet: set.Name,
			Detail: fmt.Sprintf("session %s has %d open sockets; close some first", sess, ss.socks)}
	}
	t.total++
	t.owned[owner]++
	if ss != nil {
		ss.socks++
	}
	return nil
}

// release frees a slot taken by reserve; releaseLocked does it with t.mu held.
func (t *table) release(owner, sess string) {
	t.mu.Lock()
	t.releaseLocked(owner, sess)
	t.mu.Unlock()
}

func (t *table) releaseLocked(owner, sess string) {
	if t.total > 0 {
		t.total--
	}
	if t.owned[owner] > 1 {
		t.owned[owner]--
	} else {
		delete(t.owned, owner)
	}
	if ss := t.sessions[sess]; ss != nil && ss.socks > 0 {
		ss.socks--
	}
}

// enterBlocking counts a blocking call of caller holding n bytes against the set's limits,
// and against the session_limits of session sess (the call's, or its socket's; empty outside
// one); call the returned func when the call ends.
func (t *table) enterBlocking(caller, sess string, n int, set *policy.RuleSet) (func(), error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.calls[caller]; c >= set.Limits.BlockingCalls {
		return nil, &limitError{Limit: "limits.blocking_calls", Max: set.Limits.BlockingCalls, RuleSet: set.Name,
			Detail: fmt.Sprintf("caller %q has %d blocking calls in progress; wait for some to end", caller, c)}
	}
	ss := t.sessions[sess]
	if ss != nil {
		lim := set.SessionLimits
		switch {
		case ss.calls >= lim.BlockingCalls:
			return nil, &limitError{Limit: "session_limits.blocking_calls", Max: lim.BlockingCalls, RuleSet: set.Name,
				Detail: fmt.Sprintf("session %s has %d blocking calls in progress; wait for some to end", sess, ss.calls)}
		case ss.bytes+n > lim.BufferedBytes:
			return nil, &limitError{Limit: "session_limits.buffered_bytes", Max: lim.BufferedBytes, RuleSet: set.Name,
				Detail: fmt.Sprintf("session %s holds %d bytes for calls in progress and this call needs %d; wait for some to end or use smaller calls", sess, ss.bytes, n)}
		}
		ss.calls++
		ss.bytes += n
	}
	t.calls[caller]++
	return func() {
		t.mu.Lock()
		if t.calls[caller] > 1 {
			t.calls[caller]--
		} else {
			delete(t.calls, caller)
		}
		if ss != nil {
			ss.calls--
			ss.bytes -= n
		}
		t.mu.Unlock()
	}, nil
}

// add registers a new socket in the slot its owner reserved; when the table is stopped, or
// the socket's session ended meanwhile, it closes it and refuses.
func (t *table) add(s *sock) error {
	s.created = time.Now()
	s.lastUsed.Store(s.created.UnixNano())
	s.readGate, s.writeGate = newGate(), newGate()
	s.closed = make(chan struct{})
	s.held = &t.leftover
	t.mu.Lock()
	var refuse error
	if t.stopped {
		refuse = ErrAgentStopping
	} else if ss, ok := t.sessions[s.session]; s.session != "" && (!ok || ss.owner != s.owner) {
		refuse = fmt.Errorf("session %s: %w", s.session, ErrUnknownSession)
	}
	if refuse != nil {
		t.releaseLocked(s.owner, s.session)
		t.mu.Unlock()
		_ = s.close()
		return refuse
	}
	t.next++
	s.id = "s" + strconv.FormatUint(t.next, 10)
	t.socks[s.id] = s
	t.mu.Unlock()
	return nil
}

// get returns the socket id of ctx's caller, marking it used; another caller's socket is
// ErrUnknownSocket.
func (t *table) get(ctx context.Context, id string) (*sock, error) {
	s, err := t.peek(ctx, id)
	if err == nil {
		s.lastUsed.Store(time.Now().UnixNano())
		if sv := s.serving.Load(); sv != nil {
			return s, &busyError{fmt.Sprintf("socket is served with %s (Serve); no other call may use it: Close it to stop serving", sv.behaviour)}
		}
	}
	return s, err
}

// peek is get without marking the socket used (GetSocket, ListSockets).
func (t *table) peek(ctx context.Context, id string) (*sock, error) {
	owner := CallerFrom(ctx).ID
	t.mu.Lock()
	s, ok := t.socks[id]
	t.mu.Unlock()
	if !ok || s.owner != owner {
		return nil, t.unknownSocket(owner, id)
	}
	return s, nil
}

// Len counts open sockets.
func (t *table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.socks)
}

// List returns every open socket of ctx's caller, oldest first.
func (t *table) List(ctx context.Context) []Info {
	owner := CallerFrom(ctx).ID
	t.mu.Lock()
	ss := make([]*sock, 0, len(t.socks))
	for _, s := range t.socks {
		if s.owner == owner {
			ss = append(ss, s)
		}
	}
	t.mu.Unlock()
	out := make([]Info, len(ss))
	for i, s := range ss {
		out[i] = s.info()
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.ParseUint(strings.TrimPrefix(out[i].ID, "s"), 10, 64)
		b, _ := strconv.ParseUint(strings.TrimPrefix(out[j].ID, "s"), 10, 64)
		return a < b
	})
	return out
}

// Get returns one socket's snapshot, whoever owns it: for the agent's own use (audit lines),
// never to answer a caller (GetFor checks the owner).
func (t *table) Get(id string) (Info, error) {
	t.mu.Lock()
	s, ok := t.socks[id]
	t.mu.Unlock()
	if !ok {
		return Info{}, &OpError{Op: "get", SocketID: id, Err: ErrUnknownSocket}
	}
	return s.info(), nil
}

// GetFor returns the snapshot of one socket of ctx's caller.
func (t *table) GetFor(ctx context.Context, id string) (Info, error) {
	s, err := t.peek(ctx, id)
	if err != nil {
		return Info{}, &OpError{Op: "get", SocketID: id, Err: err}
	}
	return s.info(), nil
}

// Close closes one socket of ctx's caller and returns its final snapshot.
func (t *table) Close(ctx context.Context, id string) (Info, error) {
	owner := CallerFrom(ctx).ID
	t.mu.Lock()
	s, ok := t.socks[id]
	ok = ok && s.owner == owner
	if ok {
		delete(t.socks, id)
		t.releaseLocked(owner, s.session)
	}
	t.mu.Unlock()
	if !ok {
		return Info{}, &OpError{Op: "close", SocketID: id, Err: t.unknownSocket(owner, id)}
	}
	// Close first, then read the counters: closing stops a serving behaviour and waits for its
	// goroutines, so the response's counters are final (an echo's last write is counted).
	_ = s.close() // the socket is gone either way; a close error has no remedy
	in := s.info()
	in.State = StateClosed
	return in, nil
}

// Stop refuses new sockets and closes every open one; blocked calls return AGENT_STOPPING.
func (t *table) Stop() {
	t.mu.Lock()
	t.stopped = true
	t.stopTimersLocked()
	socks := t.socks
	t.socks = map[string]*sock{}
	t.total, t.owned = 0, map[string]int{}
	t.mu.Unlock()
	for _, s := range socks { // first mark them all: a peer closed first must not look like EOF
		s.markClosed()
	}
	for _, s := range socks {
		_ = s.close()
	}
}

func (t *table) isStopped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopped
}

func checkNetwork(op, network string, allowed []string) error {
	for _, n := range allowed {
		if n == network {
			return nil
		}
	}
	return badArg(ReasonInvalidNetwork, "%s: network %q not allowed here; use one of %s", op, network, strings.Join(allowed, ", "))
}

// checkAddress validates an address before any policy check or system call: it must not be
// empty, and on a UNIX network it must be a valid path (see checkUnixPath).
func checkAddress(op, network, address string) error {
	if address == "" {
		return badArg(ReasonInvalidAddress, "%s: address is empty; give host:port (\"127.0.0.1:0\", \"[::1]:8080\") or a UNIX socket path", op)
	}
	if isUnix(network) {
		return checkUnixPath(op, address)
	}
	return nil
}

func isUnix(network string) bool { return network == "unix" || network == "unixgram" }

// checkUnixPath accepts an absolute path without ".." elements, or an abstract name ("@name").
// A relative path would depend on the agent's working directory, and ".." could walk out of
// the directories a policy allows, so both are refused.
func checkUnixPath(op, p string) error {
	switch {
	case strings.HasPrefix(p, "@"):
		return nil
	case strings.ContainsRune(p, 0):
		return badArg(ReasonInvalidAddress, "%s: UNIX socket path %q contains a NUL byte", op, p)
	case !filepath.IsAbs(p):
		return badArg(ReasonInvalidAddress, "%s: UNIX socket path %q is relative; give an absolute path (a relative one would depend on the agent's working directory)", op, p)
	case slices.Contains(strings.Split(filepath.ToSlash(p), "/"), ".."):
		return badArg(ReasonInvalidAddress, "%s: UNIX socket path %q contains \"..\"; give the path without it (\"..\" is refused so no path escapes the directories the policy allows)", op, p)
	}
	return nil
}

// control is the Control hook of a net.Dialer or net.ListenConfig: it sees the address the
// socket is about to bind (local) or connect to, after name resolution, and asks the policy.
// What the kernel is given is what the policy judges, so a name that resolves somewhere
// unexpected gains nothing. A local port 0 is judged later, by checkBound, once it is known.
func control(set *policy.RuleSet, local bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		if isUnix(network) {
			return set.CheckUnixPath(address)
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("policy: cannot check address %q: %w", address, err)
		}
		if !local {
			return set.CheckDestination(ap)
		}
		if ap.Port() == 0 {
			return nil
		}
		return set.CheckLocal(ap)
	}
}

// checkBound asks the policy about the address a socket was bound to, with the port the OS
// picked for port 0. UNIX addresses were judged by control.
func checkBound(set *policy.RuleSet, a net.Addr) error {
	if ap, ok := addrPort(a); ok {
		return set.CheckLocal(ap)
	}
	return nil
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort(), true
	case *net.UDPAddr:
		return a.AddrPort(), true
	}
	return netip.AddrPort{}, false
}

// Listen opens a stream listener; a repeated requestID returns the first result.
func (t *table) Listen(ctx context.Context, network, address, requestID string) (Info, error) {
	return t.idempotent(ctx, "Listen", requestID, func() (Info, error) { return t.listen(ctx, network, address) })
}

func (t *table) listen(ctx context.Context, network, address string) (Info, error) {
	return t.bindLocal(ctx, "listen", network, address, streamListenNets, func(lc net.ListenConfig, s *sock) (net.Addr, error) {
		ln, err := lc.Listen(ctx, ipv4Wildcard(network, address), address)
		if err != nil {
			return nil, err
		}
		s.kind, s.ln = KindListener, ln
		return ln.Addr(), nil
	})
}

// Bind opens a bound datagram socket; a repeated requestID returns the first result.
func (t *table) Bind(ctx context.Context, network, address, requestID string) (Info, error) {
	return t.idempotent(ctx, "Bind", requestID, func() (Info, error) { return t.bind(ctx, network, address) })
}

func (t *table) bind(ctx context.Context, network, address string) (Info, error) {
	return t.bindLocal(ctx, "bind", network, address, datagramNets, func(lc net.ListenConfig, s *sock) (net.Addr, error) {
		pc, err := lc.ListenPacket(ctx, ipv4Wildcard(network, address), address)
		if err != nil {
			return nil, err
		}
		s.kind, s.pc = KindDatagram, pc
		if network == "unixgram" && !strings.HasPrefix(address, "@") {
			s.unlink = address
		}
		return pc.LocalAddr(), nil
	})
}

// bindLocal is what Listen and Bind share: the request and policy checks, a socket slot, the
// bind itself (open fills s), the check of the address bound, and registering s.
func (t *table) bindLocal(ctx context.Context, op, network, address string, nets []string, open func(net.ListenConfig, *sock) (net.Addr, error)) (Info, error) {
	wrap := func(err error) error { return &OpError{Op: op, Network: network, Address: address, Err: err} }
	if err := checkNetwork(op, network, nets); err != nil {
		return Info{}, err
	}
	if err := checkAddress(op, network, address); err != nil {
		return Info{}, err
	}
	c, set := t.who(ctx)
	if err := set.CheckNetwork(network); err != nil {
		return Info{}, wrap(err)
	}
	sess, err := t.sessionOfCall(ctx)
	if err != nil {
		return Info{}, wrap(err)
	}
	if err := t.reserve(c.ID, sess, set); err != nil {
		return Info{}, wrap(err)
	}
	s := &sock{owner: c.ID, session: sess, network: network}
	bound, err := open(net.ListenConfig{Control: control(set, true)}, s)
	if err == nil {
		if err = checkBound(set, bound); err != nil {
			_ = s.closeFile()
		}
	}
	if err != nil {
		t.release(c.ID, sess)
		return Info{}, wrap(err)
	}
	if err := t.add(s); err != nil {
		return Info{}, wrap(err)
	}
	return s.info(), nil
}

// ipv4Wildcard binds "tcp"/"udp" on 0.0.0.0 as tcp4/udp4, as a textbook AF_INET server does:
// Go would otherwise open a dual-stack [::] socket and report [::] as the local address.
func ipv4Wildcard(network, address string) string {
	if host, _, err := net.SplitHostPort(address); err == nil && host == "0.0.0.0" && (network == "tcp" || network == "udp") {
		return network + "4"
	}
	return network
}

func resolveLocal(network, address string) (net.Addr, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		return net.ResolveTCPAddr(network, address)
	case "udp", "udp4", "udp6":
		return net.ResolveUDPAddr(network, address)
	default:
		return net.ResolveUnixAddr(network, address)
	}
}

// Dial opens a connected socket; a repeated requestID returns the first result.
func (t *table) Dial(ctx context.Context, network, address, local string, timeout time.Duration, requestID string) (Info, error) {
	return t.idempotent(ctx, "Dial", requestID, func() (Info, error) { return t.dial(ctx, network, address, local, timeout) })
}

func (t *table) dial(ctx context.Context, network, address, local string, timeout time.Duration) (Info, error) {
	wrap := func(err error) error { return &OpError{Op: "dial", Network: network, Address: address, Err: err} }
	if err := checkNetwork("dial", network, dialNets); err != nil {
		return Info{}, err
	}
	if err := checkAddress("dial", network, address); err != nil {
		return Info{}, err
	}
	c, set := t.who(ctx)
	if err := set.CheckNetwork(network); err != nil {
		return Info{}, wrap(err)
	}
	sess, err := t.sessionOfCall(ctx)
	if err != nil {
		return Info{}, wrap(err)
	}
	d := net.Dialer{Timeout: t.timeout(timeout), Control: control(set, false)}
	if local != "" {
		if err := checkAddress("dial: local_address", network, local); err != nil {
			return Info{}, err
		}
		la, err := resolveLocal(network, local)
		if err != nil {
			return Info{}, wrap(fmt.Errorf("local address %q: %w", local, err))
		}
		if isUnix(network) {
			err = set.CheckUnixPath(local)
		} else if ap, ok := addrPort(la); ok && ap.Port() != 0 {
			err = set.CheckLocal(ap)
		}
		if err != nil {
			return Info{}, wrap(err)
		}
		d.LocalAddr = la
	}
	done, err := t.enterBlocking(c.ID, sess, 0, set)
	if err != nil {
		return Info{}, wrap(err)
	}
	defer done()
	if err := t.reserve(c.ID, sess, set); err != nil {
		return Info{}, wrap(err)
	}
	conn, err := d.DialContext(ctx, network, address)
	if err == nil && local != "" {
		if err = checkBound(set, conn.LocalAddr()); err != nil {
			_ = conn.Close()
		}
	}
	if err != nil {
		t.release(c.ID, sess)
		return Info{}, wrap(err)
	}
	s := &sock{owner: c.ID, session: sess, network: network, kind: KindStream, conn: conn}
	if strings.HasPrefix(network, "udp") || network == "unixgram" {
		s.kind = KindDatagram
		if network == "unixgram" && local != "" && !strings.HasPrefix(local, "@") {
			s.unlink = local
		}
	}
	if err := t.add(s); err != nil {
		return Info{}, wrap(err)
	}
	return s.info(), nil
}

func (t *table) timeout(d time.Duration) time.Duration {
	if d <= 0 {
		return t.defaultTimeout
	}
	return d
}

// blocking runs fn under a FIFO gate with a deadline: the call's timeout, bounded by the RPC's
// deadline. Cancelling ctx wakes fn at once by moving the deadline into the past.
func (t *table) blocking(ctx context.Context, s *sock, g gate, timeout time.Duration, setDeadline func(time.Time) error, fn func() error) error {
	if err := s.busy(); err != nil {
		return err
	}
	s.pending.Add(1)
	defer func() {
		s.lastUsed.Store(time.Now().UnixNano())
		s.pending.Add(-1)
	}()
	if err := g.enter(ctx, s.closed); err != nil {
		return t.closedErr(s, err)
	}
	defer g.leave()
	deadline := time.Now().Add(t.timeout(timeout))
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := setDeadline(deadline); err != nil {
		return t.closedErr(s, err)
	}
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = setDeadline(time.Unix(farPastUnix, 0))
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

// closedErr says why s was closed under a blocked call: the agent stopping, or the agent
// closing it on its own (session ended, idle).
func (t *table) closedErr(s *sock, err error) error {
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

type deadliner interface{ SetDeadline(time.Time) error }

// Accept waits for the next connection on a listener; a repeated requestID returns the first
// result. The connection joins the call's session, else the listener's.
func (t *table) Accept(ctx context.Context, id string, timeout time.Duration, requestID string) (Info, error) {
	return t.idempotent(ctx, "Accept", requestID, func() (Info, error) { return t.accept(ctx, id, timeout) })
}

func (t *table) accept(ctx context.Context, id string, timeout time.Duration) (Info, error) {
	s, err := t.get(ctx, id)
	wrap := func(err error) error {
		return &OpError{Op: "accept", SocketID: id, Network: networkOf(s), Address: addressOf(s), Err: err}
	}
	if err != nil {
		return Info{}, wrap(err)
	}
	if s.kind != KindListener {
		return Info{}, wrap(&kindError{fmt.Sprintf("socket is a %s socket, not a listener; Accept needs a socket from Listen", s.kind)})
	}
	dl, ok := s.ln.(deadliner)
	if !ok {
		return Info{}, wrap(&kindError{"listener does not support deadlines"})
	}
	c, set := t.who(ctx)
	sess, err := t.sessionOfCall(ctx)
	if err != nil {
		return Info{}, wrap(err)
	}
	if sess == "" {
		sess = s.session
	}
	done, err := t.enterBlocking(c.ID, sess, 0, set)
	if err != nil {
		return Info{}, wrap(err)
	}
	defer done()
	if err := t.reserve(c.ID, sess, set); err != nil { // the accepted socket's slot, taken before waiting
		return Info{}, wrap(err)
	}
	var conn net.Conn
	err = t.blocking(ctx, s, s.readGate, timeout, dl.SetDeadline, func() error {
		var aerr error
		conn, aerr = s.ln.Accept()
		return aerr
	})
	if err != nil {
		t.release(c.ID, sess)
		return Info{}, wrap(err)
	}
	s.accepted.Add(1)
	a := &sock{owner: c.ID, session: sess, network: s.network, kind: KindStream, conn: conn, parent: s.id}
	if err := t.add(a); err != nil {
		return Info{}, wrap(err)
	}
	return a.info(), nil
}

// readLimit turns a Recv or RecvFrom size (0 = the default) into a buffer size within the
// agent's MaxRecvBytes (INVALID_ARGUMENT past it) and the caller's bytes_per_call.
func (t *table) readLimit(op string, n uint32, set *policy.RuleSet) (int, error) {
	if n == 0 {
		return min(defaultReadSize, t.maxRecv, set.Limits.BytesPerCall), nil
	}
	if int64(n) > int64(t.maxRecv) {
		return 0, badArg(ReasonInvalidArgument, "%s: %d bytes asked, the agent's limit is %d; read in several calls", op, n, t.maxRecv)
	}
	if err := bytesLimit(n, set, "read in several calls"); err != nil {
		return 0, err
	}
	return int(n), nil
}

func bytesLimit[N int | uint32](n N, set *policy.RuleSet, hint string) error {
	if int64(n) > int64(set.Limits.BytesPerCall) {
		return &limitError{Limit: "limits.bytes_per_call", Max: set.Limits.BytesPerCall, RuleSet: set.Name,
			Detail: fmt.Sprintf("%d bytes in one call; %s", n, hint)}
	}
	return nil
}

// Recv reads from a connected socket: up to maxBytes, or exactly exact bytes on a stream.
func (t *table) Recv(ctx context.Context, id string, maxBytes, exact uint32, timeout time.Duration) ([]byte, bool, error) {
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
		return nil, false, wrap(badArg(ReasonInvalidArgument, "recv: exact_bytes needs a stream socket; a datagram socket reads one datagram per call"))
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
	done, err := t.enterBlocking(c.ID, s.session, n, set)
	if err != nil {
		return nil, false, wrap(err)
	}
	defer done()
	var (
		data []byte
		eof  bool
	)
	err = t.blocking(ctx, s, s.readGate, timeout, s.setReadDeadline, func() error {
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
		return nil, false, wrap(err)
	}
	return data, eof, nil
}

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
		return s.ln.Addr().String()
	case s.pc != nil:
		return addrString(s.pc.LocalAddr())
	}
	return ""
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

// Send writes all of data to a connected socket.
func (t *table) Send(ctx context.Context, id string, data []byte, timeout time.Duration) (int, error) {
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
	done, err := t.enterBlocking(c.ID, s.session, len(data), set)
	if err != nil {
		return 0, wrap(err)
	}
	defer done()
	var n int
	err = t.blocking(ctx, s, s.writeGate, timeout, s.conn.SetWriteDeadline, func() error {
		var werr error
		n, werr = s.conn.Write(data)
		return werr
	})
	s.bytesSent.Add(uint64(n))
	if err != nil {
		return n, wrap(err)
	}
	s.msgsSent.Add(1)
	return n, nil
}

// SendTo sends one datagram from a bound datagram socket.
func (t *table) SendTo(ctx context.Context, id, address string, data []byte, timeout time.Duration) (int, error) {
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
	dst, err := resolveLocal(s.network, address)
	if err != nil {
		return 0, wrap(err)
	}
	if ap, ok := addrPort(dst); ok {
		err = set.CheckDestination(ap)
	} else {
		err = set.CheckUnixPath(address)
	}
	if err != nil {
		return 0, wrap(err)
	}
	done, err := t.enterBlocking(c.ID, s.session, len(data), set)
	if err != nil {
		return 0, wrap(err)
	}
	defer done()
	var n int
	err = t.blocking(ctx, s, s.writeGate, timeout, s.pc.SetWriteDeadline, func() error {
		var werr error
		n, werr = s.pc.WriteTo(data, dst)
		return werr
	})
	s.bytesSent.Add(uint64(n))
	if err != nil {
		return n, wrap(err)
	}
	s.msgsSent.Add(1)
	return n, nil
}

// RecvFrom receives one datagram and its sender.
func (t *table) RecvFrom(ctx context.Context, id string, maxBytes uint32, timeout time.Duration) ([]byte, string, error) {
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
	done, err := t.enterBlocking(c.ID, s.session, n, set)
	if err != nil {
		return nil, "", wrap(err)
	}
	defer done()
	var (
		data []byte
		from string
	)
	err = t.blocking(ctx, s, s.readGate, timeout, s.setReadDeadline, func() error {
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
func (t *table) Shutdown(ctx context.Context, id string, dir Direction) (Info, error) {
	s, err := t.get(ctx, id)
	wrap := func(err error) error {
		return &OpError{Op: "shutdown", SocketID: id, Network: networkOf(s), Address: addressOf(s), Err: err}
	}
	if err != nil {
		return Info{}, wrap(err)
	}
	hc, ok := s.conn.(halfCloser)
	if s.kind != KindStream || !ok {
		return Info{}, wrap(&kindError{fmt.Sprintf("socket is a %s socket; Shutdown needs a connected stream socket", s.kind)})
	}
	if dir < ShutRead || dir > ShutBoth {
		return Info{}, wrap(badArg(ReasonInvalidArgument, "shutdown: direction must be read, write or both"))
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
