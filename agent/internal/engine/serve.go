package engine

// Serving behaviours (SocketService.Serve): the agent itself serves a listener or a bound
// datagram socket with echo, discard or source, with no RPC per connection or datagram.
//
// Listeners: one accept loop, one goroutine per connection, at most max_connections at once
// (further connections are reset at once and counted in errors). Served connections are not
// in the socket table (no id, nothing can name them), but each is admitted like any socket the
// Serve caller opens: it holds a slot of agent_limits.sockets, of the caller's limits.sockets
// and of its session's session_limits.sockets while it is open, so a caller cannot take more of
// the agent's file budget by serving than by dialling.
//
// Datagram sockets: one read loop. echo sends each datagram back to its sender; discard counts
// and answers the ReportRequests of Throughput (package wire); source answers SourceStart with
// a stream of Data datagrams to the sender, at most maxSourceTests at once, each at most
// maxSourceRate, stopping at its duration or bytes, on SourceStop, or when no SourceStart
// keepalive came for sourceStopAfter. A test starts only on a SourceStart that carries the
// cookie the source sent to its address (wire.Cookie): a forged sender address never gets Data.
// Every answer of a datagram socket passes replyGuard: never larger than what it answers, never
// to a served socket of this agent, only where the caller's policy allows, and at a bounded
// rate per peer address; a Report, too, goes only to an address that returned its cookie.

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/wire"
	"github.com/sockagent/sockagent/agent/policy"
)

// Behaviour is what a served socket does.
type Behaviour int

// Serving behaviours (the values of sockagent.v1.Behaviour).
const (
	BehaviourEcho Behaviour = iota + 1
	BehaviourDiscard
	BehaviourSource
)

func (b Behaviour) String() string {
	switch b {
	case BehaviourEcho:
		return "echo"
	case BehaviourDiscard:
		return "discard"
	case BehaviourSource:
		return "source"
	case BehaviourProxy:
		return "proxy"
	}
	return "unknown"
}

// Serving bounds and defaults.
const (
	defaultChunk          = 128 << 10
	maxChunk              = 4 << 20
	defaultMaxConnections = 1024
	maxMaxConnections     = 65536
	// maxServeBuffers bounds chunk_size x max_connections of an echo or discard listener
	// (each connection reads into a buffer of chunk_size).
	maxServeBuffers = 1 << 30
	// datagramBuffer is the read buffer of datagram behaviours, whatever chunk_size says: a
	// smaller one would truncate datagrams.
	datagramBuffer = 64 << 10
	// maxTests bounds the per-test counters a datagram discard or source keeps (oldest evicted).
	maxTests = 1024
	// maxSourceTests bounds the datagram source tests running at once on one socket.
	maxSourceTests = 64
	// maxSourceRate caps the rate of one datagram source test; defaultSourceRate is used for 0.
	maxSourceRate     = 10_000_000_000
	defaultSourceRate = 1_000_000_000
	defaultSourceSize = 1400
	maxSourceSize     = 65000
	// maxSourceDuration bounds a datagram source test without bytes (and with).
	maxSourceDuration = time.Hour
	// sourceBatch bounds the datagrams a source test sends between two looks at its stops.
	sourceBatch = 256
)

// sourceStopAfter is how long a datagram source keeps sending a test without hearing its
// SourceStart again; a variable so tests can shorten it.
var sourceStopAfter = 3 * wire.KeepAlive

// ServingInfo is a snapshot of a served socket's behaviour and counters.
type ServingInfo struct {
	Behaviour                                    Behaviour
	Started                                      time.Time
	Connections                                  uint64
	Active                                       uint32
	BytesIn, BytesOut, DatagramsIn, DatagramsOut uint64
	Errors                                       uint64
	LastError                                    string
	Proxy                                        *ProxyInfo // BehaviourProxy only
}

// server runs one behaviour on one socket.
type server struct {
	t         *Table
	s         *sock
	set       *policy.RuleSet // the rule set of the caller of Serve (source destinations)
	behaviour Behaviour
	chunk     int
	maxConns  int
	started   time.Time
	stopAfter time.Duration
	px        *proxy    // BehaviourProxy: the upstream, toxics and pairs (proxy.go)
	replyRate peerRate  // datagram sockets: how fast one peer address is answered
	src       []byte    // source: the bytes written, filled once
	bufs      sync.Pool // stream read buffers of chunk bytes
	cookieKey [32]byte  // source: keys the cookies of SourceStart (random per Serve)

	conns, bytesIn, bytesOut, dgIn, dgOut, errs atomic.Uint64
	active                                      atomic.Int32
	lastErr                                     atomic.Pointer[string]
	seen                                        uint64 // the counters' sum when the idle reaper last looked (table.mu)

	mu      sync.Mutex
	stopped bool
	gates   bool // the socket's gates are held (from start to stop)
	// unregister takes a served UDP socket's address out of the agent's served addresses.
	unregister func()
	open       map[net.Conn]*admission // served connections, each holding a socket slot
	done       chan struct{}
	wg         sync.WaitGroup

	// datagram tests: discard counts received, source counts sent (guarded by testsMu)
	testsMu   sync.Mutex
	tests     map[uint64]*dgTest
	testOrder []uint64
	running   int // source tests sending now
}

// dgTest is one test's counters on a datagram discard or source.
type dgTest struct {
	datagrams, bytes atomic.Uint64
	peer             netip.AddrPort // source: the peer that started the test
	lastStart        atomic.Int64   // source: UnixNano of the last SourceStart
	stop             chan struct{}
	stopOnce         sync.Once
}

func (d *dgTest) halt() { d.stopOnce.Do(func() { close(d.stop) }) }

func (sv *server) info() *ServingInfo {
	in := &ServingInfo{
		Behaviour: sv.behaviour, Started: sv.started, Connections: sv.conns.Load(),
		Active:  uint32(max(sv.active.Load(), 0)),
		BytesIn: sv.bytesIn.Load(), BytesOut: sv.bytesOut.Load(),
		DatagramsIn: sv.dgIn.Load(), DatagramsOut: sv.dgOut.Load(), Errors: sv.errs.Load(),
	}
	if p := sv.lastErr.Load(); p != nil {
		in.LastError = *p
	}
	if sv.px != nil {
		in.Proxy = sv.px.info()
	}
	return in
}

// fail records an error of a connection or datagram. The message is stored before the count
// grows, so whoever sees the count sees its message (or a later one).
func (sv *server) fail(err error) {
	msg := Reason(err) + ": " + innermost(err).Error()
	sv.lastErr.Store(&msg)
	sv.errs.Add(1)
}

// readFailed handles a failed read of a served datagram socket: true when the loop must end
// (the server stopped, the socket closed); else the error is counted and, so that an error
// that repeats does not spin, the loop goes on a millisecond later.
func (sv *server) readFailed(err error) bool {
	if sv.isStopped() || errors.Is(err, net.ErrClosed) {
		return true
	}
	sv.fail(err)
	select {
	case <-sv.done:
		return true
	case <-time.After(time.Millisecond):
		return false
	}
}

func (sv *server) isStopped() bool {
	select {
	case <-sv.done:
		return true
	default:
		return false
	}
}

// Serve starts behaviour b (echo, discard or source) on a listener or bound datagram socket of
// ctx's caller.
func (t *Table) Serve(ctx context.Context, id string, b Behaviour, chunk, maxConns uint32) (Info, error) {
	return t.ServeWith(ctx, id, b, chunk, maxConns, nil)
}

// ServeProxy starts BehaviourProxy on a listener or bound UDP socket of ctx's caller.
func (t *Table) ServeProxy(ctx context.Context, id string, chunk, maxConns uint32, pc ProxyConfig) (Info, error) {
	return t.ServeWith(ctx, id, BehaviourProxy, chunk, maxConns, &pc)
}

// ServeWith starts behaviour b with the proxy configuration pc, which only BehaviourProxy
// takes (nil for the others).
func (t *Table) ServeWith(ctx context.Context, id string, b Behaviour, chunk, maxConns uint32, pc *ProxyConfig) (Info, error) {
	s, err := t.peek(ctx, id)
	wrap := func(err error) error {
		return &OpError{Op: "serve", SocketID: id, Network: networkOf(s), Address: addressOf(s), Err: err}
	}
	if err != nil {
		return Info{}, wrap(err)
	}
	if b < BehaviourEcho || b > BehaviourProxy {
		return Info{}, wrap(badArg(contract.ReasonInvalidArgument, "serve: behaviour must be echo, discard, source or proxy (BEHAVIOUR_ECHO, BEHAVIOUR_DISCARD, BEHAVIOUR_SOURCE, BEHAVIOUR_PROXY)"))
	}
	if chunk > maxChunk {
		return Info{}, wrap(badArg(contract.ReasonInvalidArgument, "serve: chunk_size %d out of range; give 0 (128 KiB) up to %d (4 MiB)", chunk, maxChunk))
	}
	if maxConns > maxMaxConnections {
		return Info{}, wrap(badArg(contract.ReasonInvalidArgument, "serve: max_connections %d out of range; give 0 (%d) up to %d", maxConns, defaultMaxConnections, maxMaxConnections))
	}
	c, n := int(chunk), int(maxConns)
	if c == 0 {
		c = defaultChunk
	}
	if n == 0 {
		n = defaultMaxConnections
	}
	if s.ln != nil && b != BehaviourSource && c*n > maxServeBuffers {
		return Info{}, wrap(badArg(contract.ReasonInvalidArgument, "serve: chunk_size %d x max_connections %d needs up to %d MiB of read buffers, over the agent's %d MiB; lower one of them", c, n, c*n>>20, maxServeBuffers>>20))
	}
	switch {
	case s.kind == KindStream:
		return Info{}, wrap(&kindError{"socket is a connected stream socket; Serve needs a listener (Listen) or a bound datagram socket (Bind)"})
	case s.kind == KindDatagram && s.pc == nil:
		return Info{}, wrap(&kindError{"socket is a connected datagram socket (Dial); Serve needs a bound datagram socket (Bind) or a listener (Listen)"})
	}
	s.lastUsed.Store(time.Now().UnixNano())
	_, set := t.who(ctx)
	sv := &server{
		t: t, s: s, set: set, behaviour: b, chunk: c, maxConns: n,
		started: time.Now(), stopAfter: sourceStopAfter, replyRate: replyLimit,
		open: map[net.Conn]*admission{}, done: make(chan struct{}), tests: map[uint64]*dgTest{},
	}
	_, _ = rand.Read(sv.cookieKey[:]) // crypto/rand.Read never fails on supported platforms
	if s.attached.Load() {
		return Info{}, wrap(&busyError{fmt.Sprintf("socket %s is attached to an Attach stream; end it first, then Serve", s.id)})
	}
	if b == BehaviourProxy {
		if sv.px, err = newProxy(sv, s, set, pc); err != nil {
			return Info{}, wrap(err)
		}
	} else if pc != nil {
		return Info{}, wrap(badArg(contract.ReasonInvalidArgument, "serve: upstream and toxics are for BEHAVIOUR_PROXY only"))
	}
	if !s.serving.CompareAndSwap(nil, sv) {
		what := "a behaviour"
		if cur := s.serving.Load(); cur != nil {
			what = cur.behaviour.String()
		}
		sv.px.close()
		return Info{}, wrap(&busyError{fmt.Sprintf("socket is already served with %s; Close it to stop serving", what)})
	}
	// Own the socket's gates for good, so no call that got it before the swap can use it.
	if !tryEnter(s.readGate) {
		s.serving.Store(nil)
		sv.px.close()
		return Info{}, wrap(&busyError{"a call is in progress on the socket; wait for it to end, then Serve"})
	}
	if !tryEnter(s.writeGate) {
		s.readGate.leave()
		s.serving.Store(nil)
		sv.px.close()
		return Info{}, wrap(&busyError{"a call is in progress on the socket; wait for it to end, then Serve"})
	}
	if err := sv.start(); err != nil {
		sv.px.close()
		return Info{}, wrap(t.closedErr(s, err))
	}
	return s.info(), nil
}

func tryEnter(g gate) bool {
	select {
	case <-g:
		return true
	default:
		return false
	}
}

// start runs the behaviour's loop, holding the socket's gates (taken by Serve) until stop;
// on a socket closed meanwhile it lets go of them and fails.
func (sv *server) start() error {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.stopped || sv.s.isClosed() {
		sv.s.readGate.leave()
		sv.s.writeGate.leave()
		return net.ErrClosed
	}
	sv.gates = true
	if sv.behaviour == BehaviourSource {
		size := sv.chunk
		if sv.s.pc != nil {
			size = maxSourceSize
		}
		sv.src = make([]byte, size)
		for i := range sv.src {
			sv.src[i] = byte('a' + i%26)
		}
	}
	chunk := sv.chunk
	sv.bufs.New = func() any { b := make([]byte, chunk); return &b }
	sv.wg.Add(1)
	if sv.s.ln != nil {
		go sv.acceptLoop()
		return nil
	}
	if ua, ok := sv.s.pc.LocalAddr().(*net.UDPAddr); ok {
		sv.unregister = sv.t.addServed(ua.AddrPort())
	}
	if sv.px != nil {
		go sv.px.datagramLoop()
		return nil
	}
	go sv.datagramLoop()
	return nil
}

// noteServedActivity marks a served socket used (now) when it has an open connection or served
// anything since the last look; called by the idle reaper with the table locked. The counters
// are read, not written, on the served path: serving costs nothing extra for it.
func (s *sock) noteServedActivity(now time.Time) {
	sv := s.serving.Load()
	if sv == nil {
		return
	}
	seen := sv.conns.Load() + sv.dgIn.Load() + sv.dgOut.Load() + sv.bytesIn.Load() + sv.bytesOut.Load()
	if sv.active.Load() > 0 || seen != sv.seen {
		s.lastUsed.Store(now.UnixNano())
	}
	sv.seen = seen
}

// servedAddrs counts the served UDP sockets bound to each local address.
type servedAddrs struct {
	mu sync.Mutex
	n  map[netip.AddrPort]int
}

// addServed registers the local address of a served UDP socket; the returned function takes
// it back.
func (t *Table) addServed(a netip.AddrPort) (remove func()) {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	t.served.mu.Lock()
	if t.served.n == nil {
		t.served.n = map[netip.AddrPort]int{}
	}
	t.served.n[a]++
	t.servedGen.Add(1)
	t.served.mu.Unlock()
	return func() {
		t.served.mu.Lock()
		if t.served.n[a]--; t.served.n[a] <= 0 {
			delete(t.served.n, a)
		}
		t.servedGen.Add(1)
		t.served.mu.Unlock()
	}
}

// isServedPeer reports whether from is the address of a served UDP socket of this agent (the
// answering socket itself included): bound to exactly that address, or to the wildcard address on its port when
// from is an address of this host.
func (t *Table) isServedPeer(from netip.AddrPort) bool {
	port := from.Port()
	t.served.mu.Lock()
	exact := t.served.n[from] > 0
	wild := t.served.n[netip.AddrPortFrom(netip.IPv4Unspecified(), port)] > 0 ||
		t.served.n[netip.AddrPortFrom(netip.IPv6Unspecified(), port)] > 0
	t.served.mu.Unlock()
	if exact {
		return true
	}
	return wild && (from.Addr().IsLoopback() || hostNets().local[from.Addr()])
}

// stopServing stops the socket's behaviour, if any, and waits for its goroutines; called by
// sock.close after the socket's file is closed.
func (s *sock) stopServing() {
	if sv := s.serving.Load(); sv != nil {
		sv.stop()
	}
}

func (sv *server) stop() {
	sv.mu.Lock()
	if !sv.stopped {
		sv.stopped = true
		close(sv.done)
		for c := range sv.open {
			_ = c.Close()
		}
	}
	gates := sv.gates
	sv.gates = false
	unregister := sv.unregister
	sv.unregister = nil
	sv.mu.Unlock()
	if unregister != nil {
		unregister()
	}
	sv.testsMu.Lock()
	for _, d := range sv.tests {
		d.halt()
	}
	sv.testsMu.Unlock()
	if sv.px != nil {
		sv.px.stop()
	}
	sv.wg.Wait()
	sv.px.close()
	if gates { // for dropLeftover, and any call that got the socket before Serve took it
		sv.s.readGate.leave()
		sv.s.writeGate.leave()
	}
}

// acceptLoop accepts connections and serves each in its own goroutine.
func (sv *server) acceptLoop() {
	defer sv.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := sv.s.ln.Accept()
		if err != nil {
			if sv.isStopped() || errors.Is(err, net.ErrClosed) {
				return
			}
			sv.fail(err) // EMFILE and the like: wait a little, then try again
			select {
			case <-sv.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if err := sv.admitConn(c); err != nil {
			sv.fail(err)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // reset: the peer learns at once, and no TIME_WAIT here
			}
			_ = c.Close()
			continue
		}
		sv.conns.Add(1)
		go sv.serveConn(c)
	}
}

// admitConn registers c as served, within max_connections and, through the table's one
// admission path, the socket limits of the Serve caller (its agent-wide, own and session
// limits): a served connection holds a socket slot while it is open.
func (sv *server) admitConn(c net.Conn) error {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	switch {
	case sv.stopped:
		return net.ErrClosed
	case len(sv.open) >= sv.maxConns:
		return &limitError{Limit: "serve max_connections", Max: sv.maxConns,
			Detail: fmt.Sprintf("connection from %s reset; %d connections are being served (raise max_connections in Serve to serve more)", addrString(c.RemoteAddr()), len(sv.open))}
	}
	adm, err := sv.t.admit(sv.s.owner, sv.s.session, sv.set, claim{sockets: 1})
	if err != nil {
		return fmt.Errorf("connection from %s reset: %w", addrString(c.RemoteAddr()), err)
	}
	sv.open[c] = adm
	sv.active.Add(1)
	sv.wg.Add(1)
	return nil
}

func (sv *server) drop(c net.Conn) {
	sv.mu.Lock()
	adm := sv.open[c]
	delete(sv.open, c)
	sv.mu.Unlock()
	_ = c.Close()
	sv.active.Add(-1)
	adm.release()
	sv.wg.Done()
}

// peerEnded reports whether err is the peer (or the agent) ending the connection, not a fault.
func peerEnded(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

func (sv *server) serveConn(c net.Conn) {
	defer sv.drop(c)
	var err error
	if st := sv.s.tls; st != nil {
		// A TLS listener's connections handshake first, within the agent's default timeout:
		// a peer that never sends a ClientHello holds its slot no longer than that.
		tst, herr := serverHandshake(context.Background(), c, st, time.Now().Add(cmp.Or(sv.t.defaultTimeout, 30*time.Second)))
		if herr != nil {
			if !sv.isStopped() && !peerEnded(herr) {
				sv.fail(herr)
			}
			return
		}
		c = tst.conn
	}
	switch sv.behaviour {
	case BehaviourEcho:
		err = sv.echoConn(c)
	case BehaviourDiscard:
		err = sv.discardConn(c)
	case BehaviourSource:
		err = sv.sourceConn(c)
	case BehaviourProxy:
		err = sv.px.serveStream(c)
	}
	if err != nil && !peerEnded(err) && !sv.isStopped() {
		sv.fail(err)
	}
	sv.t.servedEnded(sv.s, addrString(c.RemoteAddr()), err)
}

func (sv *server) echoConn(c net.Conn) error {
	bp := sv.bufs.Get().(*[]byte)
	defer sv.bufs.Put(bp)
	buf := *bp
	for {
		n, err := c.Read(buf)
		if n > 0 {
			sv.bytesIn.Add(uint64(n))
			w, werr := c.Write(buf[:n])
			sv.bytesOut.Add(uint64(w))
			if werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}

func (sv *server) discardConn(c net.Conn) error {
	bp := sv.bufs.Get().(*[]byte)
	defer sv.bufs.Put(bp)
	buf := *bp
	for {
		n, err := c.Read(buf)
		sv.bytesIn.Add(uint64(n))
		if err != nil {
			return err
		}
	}
}

func (sv *server) sourceConn(c net.Conn) error {
	for {
		n, err := c.Write(sv.src)
		sv.bytesOut.Add(uint64(n))
		if err != nil {
			return err
		}
	}
}

// datagramLoop reads the bound socket and applies the behaviour to every datagram.
func (sv *server) datagramLoop() {
	defer sv.wg.Done()
	buf := make([]byte, max(sv.chunk, datagramBuffer))
	out := make([]byte, 0, wire.ReportSize)
	uc, _ := sv.s.pc.(*net.UDPConn)
	g := replyGuard{sv: sv, peers: newPeerLimiter(sv.replyRate)}
	for {
		var (
			n    int
			from netip.AddrPort
			addr net.Addr
			err  error
		)
		if uc != nil {
			n, from, err = uc.ReadFromUDPAddrPort(buf)
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		} else {
			n, addr, err = sv.s.pc.ReadFrom(buf)
		}
		if err != nil {
			if sv.readFailed(err) {
				return
			}
			continue
		}
		sv.dgIn.Add(1)
		sv.bytesIn.Add(uint64(n))
		var reply []byte
		switch sv.behaviour {
		case BehaviourEcho:
			reply = buf[:n]
		case BehaviourDiscard:
			reply = sv.discardDatagram(buf[:n], out[:0], from)
		case BehaviourSource:
			reply = sv.sourceDatagram(buf[:n], out[:0], from, uc)
		}
		if reply == nil || (uc != nil && !g.mayAnswer(from, len(reply), n)) {
			continue
		}
		if uc != nil && sv.behaviour == BehaviourEcho && g.bounces.isLoop(from, reply) {
			g.refuse(func() error {
				return fmt.Errorf("not answering %s: it sent back what this socket answered it %d times in a row, as another echo would (a loop)", from, loopBounces)
			})
			continue
		}
		var w int
		if uc != nil {
			w, err = uc.WriteToUDPAddrPort(reply, from)
		} else if addr != nil {
			w, err = sv.s.pc.WriteTo(reply, addr)
		} else {
			continue
		}
		if err != nil {
			if !sv.isStopped() {
				sv.fail(err)
			}
			continue
		}
		sv.dgOut.Add(1)
		sv.bytesOut.Add(uint64(w))
	}
}

// replyGuard decides whether a served UDP socket answers a datagram. A UDP sender address can
// be forged, and the one answered may be another echo, so an answer goes out only when it is
// no larger than the datagram it answers, the peer is not a served socket of this agent (two
// of them would answer each other for ever), the caller's policy lets the socket send there
// (checkDest, as for SendTo), and the peer's address is within its reply rate (peerLimiter).
type replyGuard struct {
	sv      *server
	peers   *peerLimiter
	bounces bounceGuard
	allowed netip.AddrPort // the last peer that passed the address checks
	gen     uint64         // the agent's served-socket generation when allowed was checked
	noted   time.Time      // when a refusal was last recorded in the socket's last error
}

func (g *replyGuard) mayAnswer(from netip.AddrPort, size, request int) bool {
	if size > request {
		g.refuse(func() error {
			return fmt.Errorf("not answering %s: the answer (%d bytes) would be larger than the request (%d bytes)", from, size, request)
		})
		return false
	}
	if gen := g.sv.t.servedGen.Load(); from != g.allowed || gen != g.gen {
		if g.sv.t.isServedPeer(from) {
			g.refuse(func() error {
				return fmt.Errorf("not answering %s: it is a socket this agent serves, which would answer back for ever", from)
			})
			return false
		}
		// The policy judges whom the socket answers, as it judges SendTo: an echo must not
		// reflect datagrams to destinations the caller may not reach.
		if err := checkDest(g.sv.set, from); err != nil {
			g.sv.fail(fmt.Errorf("reply to %s: %w", from, err))
			return false
		}
		g.allowed, g.gen = from, gen
	}
	// A loopback peer is a process of this host, which cannot be forged from the network: its
	// answers are not rate-limited (probes over loopback run far faster), and a loop with
	// another echo is broken by the bounce guard instead.
	if !from.Addr().IsLoopback() && !g.peers.allow(from.Addr(), time.Now()) {
		g.refuse(func() error {
			r := g.peers.rate
			return &limitError{Limit: "serve replies per peer", Max: int(r.perSecond),
				Detail: fmt.Sprintf("not answering %s: over %.0f datagrams/s to its address (bursts of %.0f)", from.Addr(), r.perSecond, r.burst)}
		})
		return false
	}
	return true
}

// bounceGuard notices an echo loop: a peer that keeps sending back exactly what this socket
// answered it, as another echo does. It remembers the sums of the last bounceRing answers to
// the peer it answers (one peer at a time), and reports a loop once loopBounces datagrams in a
// row from that peer were among them. A client never sends back an answer it got unchanged
// that often (a probe's datagrams carry sequence numbers), so only loops are refused; the
// datagram refused leaves the loop, and after the loop's last datagram the peer is answered
// again.
type bounceGuard struct {
	peer    netip.AddrPort
	ring    [bounceRing]uint64
	next    int
	sums    map[uint64]int // the ring's sums and how often each is in it
	bounces int            // datagrams in a row from peer that were answers it got
}

const (
	bounceRing  = 256
	loopBounces = 256
)

// isLoop records that reply answers the datagram from, which has the same bytes, and reports
// whether from has now bounced loopBounces answers in a row.
func (b *bounceGuard) isLoop(from netip.AddrPort, reply []byte) bool {
	sum := fnv64(reply)
	if from != b.peer || b.sums == nil {
		b.peer, b.bounces, b.next = from, 0, 0
		b.ring = [bounceRing]uint64{}
		b.sums = map[uint64]int{}
	} else if b.sums[sum] > 0 {
		b.bounces++
	} else {
		b.bounces = 0
	}
	if b.bounces >= loopBounces {
		b.bounces = 0
		return true
	}
	if old := b.ring[b.next]; b.sums[old] > 1 {
		b.sums[old]--
	} else {
		delete(b.sums, old)
	}
	b.ring[b.next] = sum
	b.sums[sum]++
	b.next = (b.next + 1) % bounceRing
	return false
}

// fnv64 is the 64-bit FNV-1a sum of p.
func fnv64(p []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range p {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// refuse counts a datagram left unanswered, and says why in the socket's last error at most
// every refusalNoteEvery (a flood of them must not cost a message each).
func (g *replyGuard) refuse(why func() error) {
	now := time.Now()
	if now.Sub(g.noted) < refusalNoteEvery {
		g.sv.errs.Add(1)
		return
	}
	g.noted = now
	g.sv.fail(why())
}

const refusalNoteEvery = 100 * time.Millisecond

// Reply rate of a served UDP socket: at most replyRate answers a second to one peer address
// (all its ports), in bursts of at most replyBurst. It bounds what a forged sender address
// reflects to its victim, and a loop between two echoes of different agents: each answer
// refused takes a datagram out of the loop, and none is ever added.
const (
	replyRate  = 10_000
	replyBurst = 4096
	// maxPeers bounds the peer addresses the limiter tracks; a peer idle long enough to have
	// a full bucket again is forgotten first.
	maxPeers = 4096
)

// replyLimit is the reply rate of served sockets: replyRate and replyBurst.
var replyLimit = peerRate{perSecond: replyRate, burst: replyBurst}

type peerRate struct{ perSecond, burst float64 }

// peerLimiter is a token bucket per peer address; used by one datagram loop only.
type peerLimiter struct {
	rate  peerRate
	peers map[netip.Addr]*peerBucket
}

type peerBucket struct {
	tokens float64
	last   time.Time
}

func newPeerLimiter(rate peerRate) *peerLimiter {
	return &peerLimiter{rate: rate, peers: map[netip.Addr]*peerBucket{}}
}

// allow takes one token of a's bucket, if it has one.
func (l *peerLimiter) allow(a netip.Addr, now time.Time) bool {
	b := l.peers[a]
	if b == nil {
		if len(l.peers) >= maxPeers && !l.sweep(now) {
			return false
		}
		b = &peerBucket{tokens: l.rate.burst, last: now}
		l.peers[a] = b
	}
	b.tokens = min(l.rate.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate.perSecond)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets the peers whose buckets are full again (a fresh bucket is the same) and
// reports whether it freed room.
func (l *peerLimiter) sweep(now time.Time) bool {
	full := time.Duration(l.rate.burst / l.rate.perSecond * float64(time.Second))
	for a, b := range l.peers {
		if now.Sub(b.last) >= full {
			delete(l.peers, a)
		}
	}
	return len(l.peers) < maxPeers
}

// testLocked returns the counters of test id, creating them (and evicting the oldest test
// past maxTests) when create is set.
func (sv *server) testLocked(id uint64, create bool) *dgTest {
	d := sv.tests[id]
	if d != nil || !create {
		return d
	}
	for len(sv.testOrder) >= maxTests {
		old := sv.testOrder[0]
		sv.testOrder = sv.testOrder[1:]
		if o := sv.tests[old]; o != nil {
			o.halt()
		}
		delete(sv.tests, old)
	}
	d = &dgTest{stop: make(chan struct{})}
	sv.tests[id] = d
	sv.testOrder = append(sv.testOrder, id)
	return d
}

// discardDatagram counts a Data datagram in its test, and answers a ReportRequest with the
// counts (appended to out) once it carries the cookie of its sender and test (reportAnswer);
// other datagrams are only counted.
func (sv *server) discardDatagram(b, out []byte, from netip.AddrPort) []byte {
	h, body, err := wire.ParseHeader(b)
	if err != nil {
		return nil
	}
	sv.testsMu.Lock()
	defer sv.testsMu.Unlock()
	switch h.Type {
	case wire.Data:
		d := sv.testLocked(h.Test, true)
		d.datagrams.Add(1)
		d.bytes.Add(uint64(len(b)))
	case wire.ReportRequest:
		return sv.reportAnswer(out, h.Test, body, from, sv.testLocked(h.Test, false))
	}
	return nil
}

// reportAnswer answers a ReportRequest: a Report of d's counts (zeros without d) when it
// carries the cookie of from and test, else a Cookie, so a Report goes only to an address
// that showed it receives there; a request shorter than ReportRequestSize gets nothing, as
// either answer would be larger.
func (sv *server) reportAnswer(out []byte, test uint64, body []byte, from netip.AddrPort, d *dgTest) []byte {
	got, err := wire.ParseReportRequest(body)
	if err != nil {
		return nil
	}
	if want := sv.cookie(from, test); !hmac.Equal(got[:], want[:]) {
		return wire.AppendCookie(out, test, want)
	}
	var r wire.ReportBody
	if d != nil {
		r = wire.ReportBody{Datagrams: d.datagrams.Load(), Bytes: d.bytes.Load()}
	}
	return wire.AppendReport(out, test, r)
}

// sourceDatagram handles SourceStart (start a test, or keep it alive), SourceStop, and
// ReportRequest (answered with what the test sent so far).
func (sv *server) sourceDatagram(b, out []byte, from netip.AddrPort, uc *net.UDPConn) []byte {
	h, body, err := wire.ParseHeader(b)
	if err != nil || uc == nil { // the datagram source speaks UDP only
		return nil
	}
	sv.testsMu.Lock()
	defer sv.testsMu.Unlock()
	d := sv.testLocked(h.Test, false)
	if d != nil && d.peer != from && d.peer.IsValid() {
		return nil // another peer's test: not for this sender to steer
	}
	switch h.Type {
	case wire.ReportRequest:
		return sv.reportAnswer(out, h.Test, body, from, d)
	case wire.SourceStop:
		if d != nil {
			d.halt()
		}
	case wire.SourceStart:
		if d != nil {
			d.lastStart.Store(time.Now().UnixNano())
			return nil
		}
		st, err := wire.ParseStart(body)
		if err != nil {
			sv.fail(fmt.Errorf("source start from %s: %w", from, err))
			return nil
		}
		if want := sv.cookie(from, h.Test); !hmac.Equal(st.Cookie, want[:]) {
			return wire.AppendCookie(out, h.Test, want) // prove the address first
		}
		if sv.running >= maxSourceTests {
			sv.fail(&limitError{Limit: "serve source tests", Max: maxSourceTests,
				Detail: fmt.Sprintf("SourceStart of test %d from %s ignored; wait for running tests to end", h.Test, from)})
			return nil
		}
		if err := checkDest(sv.set, from); err != nil {
			sv.fail(fmt.Errorf("source start from %s: %w", from, err))
			return nil
		}
		d = sv.testLocked(h.Test, true)
		d.peer = from
		d.lastStart.Store(time.Now().UnixNano())
		sv.running++
		sv.mu.Lock()
		if sv.stopped {
			sv.mu.Unlock()
			sv.running--
			return nil
		}
		sv.wg.Add(1)
		sv.mu.Unlock()
		go sv.sendTest(uc, h.Test, d, st)
	}
	return nil
}

// cookie is what a SourceStart of test from peer must carry: a keyed hash of both, which only
// whoever receives at peer learns (from the Cookie the source answers a SourceStart without it).
func (sv *server) cookie(peer netip.AddrPort, test uint64) [wire.CookieSize]byte {
	m := hmac.New(sha256.New, sv.cookieKey[:])
	a := peer.Addr().As16()
	m.Write(a[:])
	var b [10]byte
	binary.BigEndian.PutUint16(b[:], peer.Port())
	binary.BigEndian.PutUint64(b[2:], test)
	m.Write(b[:])
	var c [wire.CookieSize]byte
	copy(c[:], m.Sum(nil))
	return c
}

// sendTest sends the Data datagrams of one source test, paced to its rate.
func (sv *server) sendTest(uc *net.UDPConn, id uint64, d *dgTest, st wire.StartBody) {
	defer func() {
		sv.testsMu.Lock()
		sv.running--
		sv.testsMu.Unlock()
		sv.wg.Done()
	}()
	rate := st.RateBitsPerSecond
	if rate == 0 {
		rate = defaultSourceRate
	}
	rate = min(rate, maxSourceRate)
	size := int(st.Size)
	if size == 0 {
		size = defaultSourceSize
	}
	size = min(max(size, wire.HeaderSize), maxSourceSize)
	dur := st.Duration
	if dur <= 0 || dur > maxSourceDuration {
		dur = maxSourceDuration
	}
	buf := make([]byte, size)
	copy(buf, sv.src)
	start := time.Now()
	end := start.Add(dur)
	var sent, seq uint64
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-sv.done:
			return
		case <-tick.C:
		}
		now := time.Now()
		if !now.Before(end) || now.Sub(time.Unix(0, d.lastStart.Load())) > sv.stopAfter {
			return
		}
		// Bytes due by now at the rate: send them back to back (at most a batch, so stops
		// are noticed), then sleep a millisecond, or not at all when behind.
		due := uint64(now.Sub(start).Seconds() * float64(rate) / 8)
		for batch := 0; (sent < due || seq == 0) && batch < sourceBatch; batch++ {
			n := size
			if st.Bytes > 0 {
				if sent >= st.Bytes {
					return
				}
				n = int(min(uint64(n), max(st.Bytes-sent, wire.HeaderSize)))
			}
			wire.PutHeader(buf, wire.Header{Type: wire.Data, Test: id, Seq: seq})
			w, err := uc.WriteToUDPAddrPort(buf[:n], d.peer)
			if err != nil {
				if !sv.isStopped() {
					sv.fail(fmt.Errorf("source test %d to %s: %w", id, d.peer, err))
				}
				return
			}
			seq++
			sent += uint64(w)
			sv.dgOut.Add(1)
			sv.bytesOut.Add(uint64(w))
			d.datagrams.Add(1)
			d.bytes.Add(uint64(w))
			if st.Bytes > 0 && sent >= st.Bytes {
				return
			}
		}
		if sent < due {
			tick.Reset(0)
		} else {
			tick.Reset(time.Millisecond)
		}
	}
}
