package engine

// The proxy behaviour (Serve with BehaviourProxy): each connection accepted on a listener, or
// each UDP peer of a bound socket, is forwarded to one upstream address through the proxy's
// toxics (toxics.go).
//
// The upstream is resolved once, at Serve, and judged there by the caller's destination policy
// as a Dial to it would be; every upstream connection is then given that resolved address (a
// UNIX path: the file opened at Serve, held until the proxy stops), and the Dial's Control hook
// judges it again, so a policy change is obeyed by the next connection. Each upstream socket is
// a socket of the Serve caller, admitted through Table.admit like the served connection it
// serves; when admission or the connect fails, the client's connection is reset and the
// failure counted in ProxyState.
//
// A direction without toxics takes the fast path: io.Copy between the two connections, which
// between *net.TCPConn is splice(2) on Linux, so bytes never enter the agent's memory. A
// direction with toxics reads chunks, stamps each with the time it is due (its latency), and
// hands them to a writer goroutine that waits for that time, paces to the bandwidth, slices,
// and counts bytes for limit_data and reset_peer: the reader is never put to sleep, so latency
// does not cap throughput. UpdateToxics swaps the set and wakes every direction's reader (a
// past read deadline), which takes the new set from its next chunk.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/unixpath"
	"github.com/sockagent/sockagent/agent/policy"
)

// BehaviourProxy forwards each connection or UDP peer to an upstream through toxics.
const BehaviourProxy Behaviour = BehaviourSource + 1

// ProxyConfig is what Serve needs to proxy.
type ProxyConfig struct {
	// Upstream is host:port (TCP, UDP) or a UNIX path.
	Upstream string
	Toxics   []Toxic
	// UpstreamTimeout bounds each upstream connect; 0 means defaultUpstreamTimeout.
	UpstreamTimeout time.Duration
}

// ProxyInfo is a snapshot of a proxy's upstream, toxics and counters.
type ProxyInfo struct {
	Upstream                                     string
	Toxics                                       []Toxic
	Connections                                  uint64
	Active                                       uint32
	BytesUpstream, BytesDownstream               uint64
	DatagramsUpstream, DatagramsDownstream       uint64
	DatagramsDropped, DatagramsDuplicated        uint64
	DatagramsReordered, Resets, UpstreamFailures uint64
	LastUpstreamError                            string
}

// Proxy bounds and defaults.
const (
	defaultUpstreamTimeout = 5 * time.Second
	maxUpstreamTimeout     = 5 * time.Minute
	// proxyQueueBytes bounds what one direction of a connection holds between its reader and
	// its writer (chunks waiting for their latency): latency caps a connection's rate at
	// proxyQueueBytes/latency.
	proxyQueueBytes = 2 << 20
	// proxyReadSize is the read buffer of a direction with toxics. What a chunk may hold is
	// charged to the Serve caller's buffered_bytes until it is written (readSize).
	proxyReadSize = 32 << 10
	// peerQueue bounds the datagrams waiting in one direction of a UDP peer; more are dropped.
	peerQueue = 1024
	// resetDrainWait bounds how long a reset waits for the bytes before it to be acknowledged:
	// an RST discards what is still unsent.
	resetDrainWait = 200 * time.Millisecond
)

// proxyPeerIdle is how long a UDP peer with no datagram either way keeps its upstream socket;
// a variable so tests can shorten it.
var proxyPeerIdle = time.Minute

// proxy is the state of one socket served with BehaviourProxy.
type proxy struct {
	sv       *server
	set      *policy.RuleSet
	network  string
	upstream string           // as the caller gave it
	addr     string           // what each connect is given: resolved, or the opened UNIX file
	target   *unixpath.Target // a UNIX upstream, opened once
	timeout  time.Duration
	datagram bool
	ctx      context.Context // ends when the proxy stops: interrupts upstream connects
	cancel   context.CancelFunc

	toxics   atomic.Pointer[toxicSet]
	lastUp   atomic.Pointer[string] // the address the kernel connected last
	lastFail atomic.Pointer[string]

	bytesUp, bytesDown, dgUp, dgDown, dropped, duplicated, reordered, resets, failures atomic.Uint64

	mu      sync.Mutex
	stopped bool
	pairs   map[*pair]struct{}
	peers   map[netip.AddrPort]*udpPeer
}

// newProxy checks a proxy's configuration for socket s of the caller with rule set set: the
// toxics for its kind, the upstream resolved once and judged by the policy as a Dial would be.
func newProxy(sv *server, s *sock, set *policy.RuleSet, pc *ProxyConfig) (*proxy, error) {
	if pc == nil || pc.Upstream == "" {
		return nil, badArg(contract.ReasonInvalidAddress, "serve: a proxy needs an upstream; give host:port, or a UNIX socket path on a UNIX listener")
	}
	if pc.UpstreamTimeout < 0 || pc.UpstreamTimeout > maxUpstreamTimeout {
		return nil, badArg(contract.ReasonInvalidArgument, "serve: upstream_timeout %v out of range; give 0 (%v) up to %v", pc.UpstreamTimeout, defaultUpstreamTimeout, maxUpstreamTimeout)
	}
	datagram := s.pc != nil
	if datagram && !contract.IsDatagram(s.network) || datagram && contract.IsUnix(s.network) {
		return nil, &kindError{"socket is a UNIX datagram socket; a datagram proxy forwards UDP only"}
	}
	toxics, err := ValidateToxics(pc.Toxics, datagram)
	if err != nil {
		return nil, err
	}
	px := &proxy{
		sv: sv, set: set, network: s.network, upstream: pc.Upstream, datagram: datagram,
		timeout: pc.UpstreamTimeout, pairs: map[*pair]struct{}{}, peers: map[netip.AddrPort]*udpPeer{},
	}
	if px.timeout == 0 {
		px.timeout = defaultUpstreamTimeout
	}
	px.toxics.Store(&toxicSet{toxics: toxics})
	if err := checkAddress("serve: upstream", s.network, pc.Upstream); err != nil {
		return nil, err
	}
	if err := px.resolve(s); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", pc.Upstream, err)
	}
	px.ctx, px.cancel = context.WithCancel(context.Background())
	return px, nil
}

// resolve fixes the address every upstream connect is given, and judges it.
func (px *proxy) resolve(s *sock) error {
	if contract.IsUnix(px.network) {
		tgt, err := openUnixTarget(px.set, px.network, px.upstream)
		if err != nil {
			return err
		}
		if tgt == nil { // an abstract name: judged by name, as Dial judges it
			if err := px.set.CheckUnixPath(px.upstream); err != nil {
				return err
			}
			px.addr = px.upstream
			return nil
		}
		px.target, px.addr = tgt, tgt.Addr
		return nil
	}
	a, err := resolveLocal(px.network, px.upstream)
	if err != nil {
		return err
	}
	ap, _ := addrPort(a)
	if ap.Port() == 0 {
		return badArg(contract.ReasonInvalidAddress, "port 0 cannot be connected to; give the upstream's port")
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if err := checkDest(px.set, ap); err != nil {
		return err
	}
	if local, ok := addrPort(s.localAddr()); ok && sameEndpoint(local, ap) {
		return badArg(contract.ReasonInvalidAddress, "it is the proxy's own address, which would forward to itself; give another")
	}
	px.addr = ap.String()
	return nil
}

// sameEndpoint reports whether a connect to to would reach the socket bound to local.
func sameEndpoint(local, to netip.AddrPort) bool {
	if local.Port() != to.Port() {
		return false
	}
	l, a := local.Addr().Unmap(), to.Addr().Unmap()
	return l == a || (l.IsUnspecified() && (a.IsLoopback() || a.IsUnspecified() || hostNets().local[a]))
}

// localAddr is the local address of a listener or bound socket.
func (s *sock) localAddr() net.Addr {
	if s.ln != nil {
		return s.ln.Addr()
	}
	if s.pc != nil {
		return s.pc.LocalAddr()
	}
	return nil
}

func (px *proxy) info() *ProxyInfo {
	in := &ProxyInfo{
		Upstream: px.upstream, Toxics: px.toxics.Load().toxics,
		Connections: px.sv.conns.Load(), Active: uint32(max(px.sv.active.Load(), 0)),
		BytesUpstream: px.bytesUp.Load(), BytesDownstream: px.bytesDown.Load(),
		DatagramsUpstream: px.dgUp.Load(), DatagramsDownstream: px.dgDown.Load(),
		DatagramsDropped: px.dropped.Load(), DatagramsDuplicated: px.duplicated.Load(),
		DatagramsReordered: px.reordered.Load(), Resets: px.resets.Load(), UpstreamFailures: px.failures.Load(),
	}
	if p := px.lastUp.Load(); p != nil {
		in.Upstream = *p
	}
	if p := px.lastFail.Load(); p != nil {
		in.LastUpstreamError = *p
	}
	return in
}

// count adds n bytes forwarded in direction d.
func (px *proxy) count(d ToxicDirection, n int) {
	if d == Upstream {
		px.bytesUp.Add(uint64(n))
		px.sv.bytesIn.Add(uint64(n))
	} else {
		px.bytesDown.Add(uint64(n))
		px.sv.bytesOut.Add(uint64(n))
	}
}

// readSize is what one read with toxics may take: proxyReadSize, or the smallest
// buffered_bytes limit of the Serve caller if that is less, so a chunk always fits.
func (px *proxy) readSize() int {
	n := min(proxyReadSize, px.set.Limits.BufferedBytes, px.sv.t.policy.MaxBufferedBytes)
	if px.sv.s.session != "" {
		n = min(n, px.set.SessionLimits.BufferedBytes)
	}
	return max(n, 1)
}

// refusedBytes reports bytes the Serve caller's buffered_bytes budgets could not take: on the
// served socket (errors, last error) and to event watchers, as any refusal.
func (px *proxy) refusedBytes(err error) {
	px.sv.fail(err)
	px.sv.t.refused(px.sv.s.owner, px.sv.s.session, err)
}

// failUpstream records an upstream connection that could not be made.
func (px *proxy) failUpstream(err error) {
	px.failures.Add(1)
	msg := Reason(err) + ": " + err.Error()
	px.lastFail.Store(&msg)
	px.sv.fail(err)
}

// connect opens one upstream socket for the Serve caller: a socket slot through admit, then
// the connect, judged by the policy's Control hook. The slot is the caller's until release.
func (px *proxy) connect() (net.Conn, *admission, error) {
	s := px.sv.s
	adm, err := px.sv.t.admit(s.owner, s.session, px.set, claim{sockets: 1})
	if err != nil {
		return nil, nil, fmt.Errorf("upstream %s: %w", px.upstream, err)
	}
	ctx, cancel := context.WithTimeout(px.ctx, px.timeout)
	defer cancel()
	d := net.Dialer{Control: control(px.set, false)}
	c, err := d.DialContext(ctx, px.network, px.addr)
	if err != nil {
		adm.release()
		if px.ctx.Err() != nil {
			err = net.ErrClosed
		}
		return nil, nil, fmt.Errorf("upstream %s: %w", px.upstream, err)
	}
	r := px.upstream
	if !contract.IsUnix(px.network) {
		r = addrString(c.RemoteAddr())
	}
	px.lastUp.Store(&r)
	return c, adm, nil
}

// update swaps the toxic set and hands it to every connection, then waits (at most
// takeWait) until every connection's readers took it: bytes a client sends once UpdateToxics
// answered pass under the new set. UDP peers draw from the set per datagram.
func (px *proxy) update(toxics []Toxic) {
	set := &toxicSet{toxics: toxics}
	px.toxics.Store(set)
	px.mu.Lock()
	pairs := make([]*pair, 0, len(px.pairs))
	for p := range px.pairs {
		p.apply(set, true)
		pairs = append(pairs, p)
	}
	px.mu.Unlock()
	end := time.Now().Add(takeWait)
	for _, p := range pairs {
		for !p.taken() && time.Now().Before(end) {
			time.Sleep(takePoll)
		}
	}
}

// takeWait bounds how long UpdateToxics waits for connections to take a new set: a reader
// blocked by a full queue (a slow toxic) takes it once the queue has room.
const takeWait = time.Second

// takePoll is how often UpdateToxics looks whether the connections took the new set.
const takePoll = 100 * time.Microsecond

// stop ends every proxied connection and peer; the served socket is closed already.
func (px *proxy) stop() {
	px.cancel()
	px.mu.Lock()
	px.stopped = true
	pairs := make([]*pair, 0, len(px.pairs))
	for p := range px.pairs {
		pairs = append(pairs, p)
	}
	peers := make([]*udpPeer, 0, len(px.peers))
	for _, p := range px.peers {
		peers = append(peers, p)
	}
	px.mu.Unlock()
	for _, p := range pairs {
		p.close(false)
	}
	for _, p := range peers {
		p.close()
	}
}

// close lets go of what newProxy took (the UNIX upstream's file) once nothing can connect any
// more; nil does nothing.
func (px *proxy) close() {
	if px == nil {
		return
	}
	px.cancel()
	if px.target != nil {
		_ = px.target.Close()
	}
}

// resetConn closes c with a reset (SO_LINGER 0) where the kernel can send one.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// serveStream proxies one accepted connection until both directions end.
func (px *proxy) serveStream(c net.Conn) error {
	up, adm, err := px.connect()
	if err != nil {
		if !errors.Is(err, net.ErrClosed) {
			px.failUpstream(fmt.Errorf("connection from %s reset: %w", addrString(c.RemoteAddr()), err))
		}
		resetConn(c)
		return nil
	}
	defer adm.release()
	p := &pair{px: px, conns: [2]net.Conn{c, up}, adm: adm, readSize: px.readSize(), accepted: time.Now(), done: make(chan struct{})}
	px.mu.Lock()
	if px.stopped {
		px.mu.Unlock()
		_ = up.Close()
		return net.ErrClosed
	}
	px.pairs[p] = struct{}{}
	p.apply(px.toxics.Load(), false)
	px.mu.Unlock()
	err = p.run()
	px.mu.Lock()
	delete(px.pairs, p)
	px.mu.Unlock()
	return err
}

// pair is one proxied connection: the client's (conns[0]) and the upstream's (conns[1]).
type pair struct {
	px    *proxy
	conns [2]net.Conn
	// adm is the upstream connection's admission: it also holds the bytes the toxics queue
	// (grow at each read, shrink at each write), so they count against the Serve caller.
	adm      *admission
	readSize int // what one read with toxics may take: proxyReadSize, or less under small limits
	accepted time.Time
	tox      [2]atomic.Pointer[streamToxics] // by direction - 1
	sent     [2]atomic.Uint64                // bytes forwarded, by direction - 1
	// gen counts the sets applied; seen is, by direction - 1, the last one its reader took
	// (readerDone once it ended), so UpdateToxics can wait until every reader took its set.
	gen  atomic.Uint64
	seen [2]atomic.Uint64

	done      chan struct{}
	closeOnce sync.Once
	mu        sync.Mutex // guards timers
	timers    []*time.Timer
}

// src and dst are the connections direction d reads and writes.
func (p *pair) src(d ToxicDirection) net.Conn { return p.conns[int(d-1)] }
func (p *pair) dst(d ToxicDirection) net.Conn { return p.conns[2-int(d)] }

// apply draws the pair's toxics from set, arms the timers of reset_peer and timeout, and wakes
// both readers (wake) to take them. Called with px.mu held.
func (p *pair) apply(set *toxicSet, wake bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.timers {
		t.Stop()
	}
	p.timers = p.timers[:0]
	for _, d := range []ToxicDirection{Upstream, Downstream} {
		st := drawStream(set, d)
		p.tox[d-1].Store(&st)
		p.gen.Add(1) // after the store: a reader that sees the new gen loads the new toxics
		if r := st.reset; r != nil && (r.After > 0 || r.AfterBytes == 0) {
			p.timers = append(p.timers, time.AfterFunc(max(time.Until(p.accepted.Add(r.After)), 0), func() { p.close(true) }))
		}
		if to := st.timeout; to != nil && to.CloseAfter > 0 {
			p.timers = append(p.timers, time.AfterFunc(to.CloseAfter, func() { p.close(false) }))
		}
	}
	for _, c := range p.conns {
		if wake {
			_ = c.SetReadDeadline(time.Unix(farPastUnix, 0))
		}
	}
}

// close ends both connections, with a reset when reset is set; the first call decides.
func (p *pair) close(reset bool) {
	p.closeOnce.Do(func() {
		close(p.done)
		p.mu.Lock()
		for _, t := range p.timers {
			t.Stop()
		}
		p.mu.Unlock()
		if reset {
			p.px.resets.Add(1)
			for _, c := range p.conns {
				waitSent(c)
				resetConn(c)
			}
			return
		}
		for _, c := range p.conns {
			_ = c.Close()
		}
	})
}

// waitSent waits, at most resetDrainWait, until the peer acknowledged what c sent.
func waitSent(c net.Conn) {
	end := time.Now().Add(resetDrainWait)
	for time.Now().Before(end) {
		st, ok := readTCPInfo(c)
		if !ok || !st.unsent {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (p *pair) closed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// run forwards both directions until both end, then closes both connections.
func (p *pair) run() error {
	errs := make(chan error, 1)
	go func() { errs <- p.forward(Upstream) }()
	derr := p.forward(Downstream)
	uerr := <-errs
	p.close(false)
	for _, err := range []error{uerr, derr} {
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errToxicEnded) {
			return err
		}
	}
	return nil
}

// errToxicEnded is how a direction ends when a toxic closed the pair.
var errToxicEnded = errors.New("closed by a toxic")

// chunk is what a direction's reader hands its writer: bytes due at a time under the toxics
// drawn when they were read, or (flush) a request to say when everything before it is written.
type chunk struct {
	buf   *[]byte
	n     int
	due   time.Time
	tox   *streamToxics
	flush chan struct{}
}

var proxyBufs = sync.Pool{New: func() any { b := make([]byte, proxyReadSize); return &b }}

// forward moves direction d until its source ends or the pair closes; at the source's end of
// stream it passes the end on (a half-close) once everything read is written.
func (p *pair) forward(d ToxicDirection) error {
	q := make(chan chunk, proxyQueueBytes/proxyReadSize)
	werr := make(chan error, 1)
	go func() { werr <- p.writeLoop(d, q) }()
	err := p.readLoop(d, q)
	close(q)
	if w := <-werr; w != nil {
		err = w
	}
	if errors.Is(err, io.EOF) && !p.closed() {
		if cw, ok := p.dst(d).(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			p.close(false)
		}
	} else {
		p.close(false) // a fault or a toxic ends both directions
	}
	return err
}

// readerDone is the seen value of a direction whose reader ended.
const readerDone = math.MaxUint64

// taken reports whether both readers took the last set applied (or ended).
func (p *pair) taken() bool {
	g := p.gen.Load()
	return p.closed() || p.seen[0].Load() >= g && p.seen[1].Load() >= g
}

// isWake reports whether err is the past read deadline apply sets to wake a reader.
func isWake(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// readLoop reads direction d's source: the fast path without toxics, else chunk by chunk.
func (p *pair) readLoop(d ToxicDirection, q chan<- chunk) error {
	src := p.src(d)
	defer p.seen[d-1].Store(readerDone)
	for {
		if p.closed() {
			return net.ErrClosed
		}
		g := p.gen.Load()
		st := p.tox[d-1].Load()
		p.seen[d-1].Store(g)
		if st.empty() {
			if err := p.flush(q); err != nil {
				return err
			}
			err := p.copyFast(d)
			if err == nil {
				return io.EOF
			}
			if isWake(err) && !p.closed() {
				_ = src.SetReadDeadline(time.Time{})
				continue
			}
			return err
		}
		size := p.readSize
		if err := p.reserve(size, g); err != nil {
			if errors.Is(err, errRetake) {
				continue
			}
			return err
		}
		bp := proxyBufs.Get().(*[]byte)
		n, err := src.Read((*bp)[:size])
		if n > 0 && st.timeout == nil {
			p.adm.shrink(size - n)
			c := chunk{buf: bp, n: n, due: time.Now(), tox: st}
			if st.hasLatency {
				c.due = c.due.Add(delay(st.latency, st.jitter))
			}
			select {
			case q <- c:
			case <-p.done:
				return net.ErrClosed
			}
		} else {
			p.adm.shrink(size)
			proxyBufs.Put(bp) // nothing read, or a timeout toxic's black hole
		}
		if err != nil {
			if isWake(err) && !p.closed() {
				_ = src.SetReadDeadline(time.Time{})
				continue
			}
			return err
		}
	}
}

// errRetake: a reader waiting for budget saw a new toxic set come in.
var errRetake = errors.New("a new toxic set came in")

// reserve takes n bytes of the Serve caller's buffered_bytes for a read with toxics. While the
// budgets are full it waits, and the connection stalls as a full queue stalls it (the sender's
// TCP window closes); the first refusal of a stall is reported (refusedBytes). It returns
// errRetake when a toxic set other than g came in meanwhile, net.ErrClosed when the pair ends.
func (p *pair) reserve(n int, g uint64) error {
	wait := reserveFirstWait
	for reported := false; ; reported = true {
		err := p.adm.grow(n)
		if err == nil || errors.Is(err, net.ErrClosed) {
			return err
		}
		if !reported {
			p.px.refusedBytes(fmt.Errorf("connection from %s waits: %w", addrString(p.conns[0].RemoteAddr()), err))
		}
		if err := p.waitUntil(time.Now().Add(wait)); err != nil {
			return err
		}
		if p.gen.Load() != g {
			return errRetake
		}
		wait = min(2*wait, reserveMaxWait)
	}
}

// A reader waiting for budget looks again after reserveFirstWait, then twice as long each time
// up to reserveMaxWait.
const (
	reserveFirstWait = time.Millisecond
	reserveMaxWait   = 20 * time.Millisecond
)

// flush waits until the writer wrote everything queued before the fast path takes over.
func (p *pair) flush(q chan<- chunk) error {
	f := make(chan struct{})
	select {
	case q <- chunk{flush: f}:
	case <-p.done:
		return net.ErrClosed
	}
	select {
	case <-f:
		return nil
	case <-p.done:
		return net.ErrClosed
	}
}

// copyFast copies direction d as the kernel can: splice between TCP (or UNIX stream)
// connections, else through a buffer, counting as it goes. It returns nil at the source's end
// of stream, the wake of apply, or the failure.
func (p *pair) copyFast(d ToxicDirection) error {
	src, dst := p.src(d), p.dst(d)
	count := func(n int) {
		p.sent[d-1].Add(uint64(n))
		p.px.count(d, n)
	}
	if handled, err := spliceCopy(dst, src, count); handled {
		return err
	}
	bp := p.px.sv.bufs.Get().(*[]byte)
	defer p.px.sv.bufs.Put(bp)
	_, err := io.CopyBuffer(countingWriter{dst, count}, onlyReader{src}, *bp)
	return err
}

// onlyReader hides a WriterTo, so io.CopyBuffer uses its buffer.
type onlyReader struct{ io.Reader }

// countingWriter counts what it writes, and hides a ReaderFrom.
type countingWriter struct {
	w     io.Writer
	count func(int)
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.count(n)
	return n, err
}

// writeLoop writes direction d's chunks when they are due, under their toxics.
func (p *pair) writeLoop(d ToxicDirection, q <-chan chunk) error {
	var pace ratePacer
	for {
		// The writer is idle when it waits for bytes to write: the bandwidth's schedule
		// starts again then, and only then.
		var (
			c    chunk
			ok   bool
			idle bool
		)
		select {
		case c, ok = <-q:
		default:
			idle = true
			c, ok = <-q
		}
		if !ok {
			return nil
		}
		if c.flush != nil {
			close(c.flush)
			continue
		}
		err := p.waitUntil(c.due)
		if err == nil {
			err = p.write(d, (*c.buf)[:c.n], c.tox, &pace, idle || c.due.After(time.Now()))
		}
		p.adm.shrink(c.n) // what stays queued when the pair ends goes back with adm
		proxyBufs.Put(c.buf)
		if err != nil {
			if !errors.Is(err, errToxicEnded) {
				p.close(false)
			}
			return err
		}
	}
}

// waitUntil waits for t, or until the pair closes.
func (p *pair) waitUntil(t time.Time) error {
	wait := time.Until(t)
	if wait <= 0 {
		return nil
	}
	tm := time.NewTimer(wait)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-p.done:
		return net.ErrClosed
	}
}

// write writes b in direction d under toxics st: cut at limit_data or reset_peer's byte
// count, paced to the bandwidth, in slices.
func (p *pair) write(d ToxicDirection, b []byte, st *streamToxics, pace *ratePacer, idle bool) error {
	sent := &p.sent[d-1]
	end := func() {}
	if l := st.limit; l != nil {
		left := l.Bytes - min(sent.Load(), l.Bytes)
		if uint64(len(b)) >= left {
			b, end = b[:left], func() { p.close(false) }
		}
	}
	if r := st.reset; r != nil && r.AfterBytes > 0 {
		left := r.AfterBytes - min(sent.Load(), r.AfterBytes)
		if uint64(len(b)) >= left {
			b, end = b[:left], func() { p.close(true) }
		}
	}
	dst := p.dst(d)
	for len(b) > 0 {
		n := len(b)
		if st.slicer != nil {
			n = min(n, pieceSize(st.slicer))
		}
		if st.rate > 0 {
			n = min(n, paceSize(st.rate))
			if err := p.waitUntil(pace.reserve(time.Now(), n, st.rate, idle)); err != nil {
				return err
			}
			idle = false
		}
		w, err := dst.Write(b[:n])
		sent.Add(uint64(w))
		p.px.count(d, w)
		if err != nil {
			return err
		}
		b = b[n:]
		if st.slicer != nil && len(b) > 0 {
			if err := p.waitUntil(time.Now().Add(st.slicer.Delay)); err != nil {
				return err
			}
		}
	}
	if st.limit != nil && sent.Load() >= st.limit.Bytes || st.reset != nil && st.reset.AfterBytes > 0 && sent.Load() >= st.reset.AfterBytes {
		end()
		return errToxicEnded
	}
	return nil
}

// A UDP proxy keeps one upstream socket per client peer (address and port), at most
// max_connections at once; a peer with no datagram either way for proxyPeerIdle is forgotten
// and its socket closed. Each direction of a peer has a sender goroutine that applies the
// datagram toxics in order: loss and duplicate are drawn as the datagram is queued, latency
// makes it wait, bandwidth paces, reorder holds it back.

// udpPeer is one client peer of a UDP proxy and its upstream socket.
type udpPeer struct {
	px        *proxy
	addr      netip.AddrPort
	up        *net.UDPConn
	adm       *admission
	last      atomic.Int64 // UnixNano of the last datagram either way
	q         [2]chan dgram
	done      chan struct{}
	closeOnce sync.Once
}

// dgram is one datagram waiting in a peer's direction.
type dgram struct {
	b     []byte
	due   time.Time
	rate  uint64 // bandwidth; 0: none
	hold  *Toxic // reorder
	extra bool   // the copy a duplicate toxic added
}

// datagramLoop reads the served UDP socket and forwards each datagram through its peer.
func (px *proxy) datagramLoop() {
	sv := px.sv
	defer sv.wg.Done()
	uc, _ := sv.s.pc.(*net.UDPConn)
	buf := make([]byte, datagramBuffer)
	for {
		n, from, err := uc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if sv.readFailed(err) {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if peer := px.peer(from); peer != nil {
			peer.enqueue(Upstream, buf[:n])
		}
		// Counted once judged, so that a reader who sees N datagrams in also sees the
		// drops, duplicates and holds drawn for all N.
		sv.dgIn.Add(1)
	}
}

// peer returns the peer of from, opening its upstream socket when it is new; nil when it
// cannot be served (counted).
func (px *proxy) peer(from netip.AddrPort) *udpPeer {
	px.mu.Lock()
	p := px.peers[from]
	n := len(px.peers)
	px.mu.Unlock()
	if p != nil {
		return p
	}
	sv := px.sv
	switch {
	case n >= sv.maxConns:
		sv.fail(&limitError{Limit: "serve max_connections", Max: sv.maxConns,
			Detail: fmt.Sprintf("datagram from %s dropped; %d peers are being proxied (raise max_connections in Serve, or wait for idle peers to expire)", from, n)})
		return nil
	case sv.t.isServedPeer(from):
		sv.fail(fmt.Errorf("datagram from %s dropped: it is a socket this agent serves, which would answer back for ever", from))
		return nil
	}
	// Answers go back to from: the policy judges it as it judges SendTo.
	if err := checkDest(px.set, from); err != nil {
		sv.fail(fmt.Errorf("datagram from %s dropped: %w", from, err))
		return nil
	}
	c, adm, err := px.connect()
	if err != nil {
		if !errors.Is(err, net.ErrClosed) {
			px.failUpstream(fmt.Errorf("datagram from %s dropped: %w", from, err))
		}
		return nil
	}
	p = &udpPeer{px: px, addr: from, up: c.(*net.UDPConn), adm: adm, done: make(chan struct{})}
	p.q[0], p.q[1] = make(chan dgram, peerQueue), make(chan dgram, peerQueue)
	p.last.Store(time.Now().UnixNano())
	px.mu.Lock()
	if px.stopped {
		px.mu.Unlock()
		_ = c.Close()
		adm.release()
		return nil
	}
	px.peers[from] = p
	sv.wg.Add(3)
	px.mu.Unlock()
	sv.conns.Add(1)
	sv.active.Add(1)
	go p.readUpstream()
	go p.send(Upstream)
	go p.send(Downstream)
	return p
}

// close ends the peer: its socket, its slot and its goroutines.
func (p *udpPeer) close() {
	p.closeOnce.Do(func() {
		close(p.done)
		_ = p.up.Close()
		p.adm.release()
		p.px.mu.Lock()
		if p.px.peers[p.addr] == p {
			delete(p.px.peers, p.addr)
		}
		p.px.mu.Unlock()
		p.px.sv.active.Add(-1)
	})
}

// readUpstream forwards what the upstream answers, and forgets the peer once idle.
func (p *udpPeer) readUpstream() {
	defer p.px.sv.wg.Done()
	defer p.close()
	buf := make([]byte, datagramBuffer)
	for {
		_ = p.up.SetReadDeadline(time.Unix(0, p.last.Load()).Add(proxyPeerIdle))
		n, err := p.up.Read(buf)
		if err != nil {
			stopped := p.px.sv.isStopped() || errors.Is(err, net.ErrClosed)
			switch {
			case isWake(err):
				if time.Since(time.Unix(0, p.last.Load())) < proxyPeerIdle {
					continue
				}
			case errors.Is(err, syscall.ECONNREFUSED) && !stopped:
				// The upstream's port is closed now (an ICMP error); it may open again.
				p.px.sv.fail(fmt.Errorf("upstream of %s: %w", p.addr, err))
				continue
			case !stopped:
				p.px.sv.fail(fmt.Errorf("upstream of %s: %w", p.addr, err))
			}
			return
		}
		p.enqueue(Downstream, buf[:n])
	}
}

// enqueue queues a copy of b in direction d under the toxics drawn for it.
func (p *udpPeer) enqueue(d ToxicDirection, b []byte) {
	now := time.Now()
	p.last.Store(now.UnixNano())
	dg := dgram{due: now}
	copies := 1
	set := p.px.toxics.Load()
	for i := range set.toxics {
		tx := &set.toxics[i]
		if tx.Direction != d || !hits(tx.Toxicity) {
			continue
		}
		switch tx.Kind {
		case ToxicLoss:
			p.px.dropped.Add(1)
			return
		case ToxicDuplicate:
			copies = 2
		case ToxicLatency:
			dg.due = now.Add(delay(tx.Latency, tx.Jitter))
		case ToxicBandwidth:
			dg.rate = tx.Rate
		case ToxicReorder:
			dg.hold = tx
		}
	}
	dg.b = append([]byte(nil), b...)
	for i := range copies {
		dg.extra = i > 0
		// Each copy counts against the Serve caller's buffered_bytes until it is written.
		if err := p.adm.grow(len(b)); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.px.refusedBytes(fmt.Errorf("datagram %s %s dropped: %w", d, p.addr, err))
			}
			return
		}
		select {
		case p.q[d-1] <- dg:
		default:
			p.adm.shrink(len(b))
			p.px.sv.fail(&limitError{Limit: "proxy datagram queue", Max: peerQueue,
				Detail: fmt.Sprintf("datagram %s %s dropped: %d are waiting for their toxics", d, p.addr, peerQueue)})
			return
		}
		if dg.extra {
			p.px.duplicated.Add(1)
		}
		dg.hold = nil // a duplicate is not held back again
	}
}

// held is a datagram a reorder toxic holds back.
type held struct {
	dg    dgram
	left  uint32
	until time.Time
}

// send writes direction d's datagrams when due, releasing held ones once enough later
// datagrams passed them or their time is up.
func (p *udpPeer) send(d ToxicDirection) {
	defer p.px.sv.wg.Done()
	var (
		pace  ratePacer
		holds []held
	)
	tm := time.NewTimer(time.Hour)
	defer tm.Stop()
	for {
		var next <-chan time.Time
		if len(holds) > 0 {
			first := holds[0].until
			for _, h := range holds[1:] {
				if h.until.Before(first) {
					first = h.until
				}
			}
			tm.Reset(time.Until(first))
			next = tm.C
		}
		select {
		case <-p.done:
			return
		case <-next:
			holds = p.release(d, holds, time.Now(), &pace)
		case dg := <-p.q[d-1]:
			if !p.wait(dg.due) {
				return
			}
			if dg.hold != nil {
				p.px.reordered.Add(1)
				holds = append(holds, held{dg: dg, left: dg.hold.Depth, until: time.Now().Add(dg.hold.Delay)})
				continue
			}
			p.write(d, dg, &pace)
			for i := range holds {
				holds[i].left--
			}
			holds = p.release(d, holds, time.Now(), &pace)
		}
	}
}

// release writes the held datagrams that are due: overtaken enough, or held long enough.
func (p *udpPeer) release(d ToxicDirection, holds []held, now time.Time, pace *ratePacer) []held {
	kept := holds[:0]
	for _, h := range holds {
		if h.left == 0 || !now.Before(h.until) {
			p.write(d, h.dg, pace)
			continue
		}
		kept = append(kept, h)
	}
	return kept
}

// wait waits for t, or until the peer closes.
func (p *udpPeer) wait(t time.Time) bool {
	wait := time.Until(t)
	if wait <= 0 {
		return true
	}
	tm := time.NewTimer(wait)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-p.done:
		return false
	}
}

// write sends one datagram in direction d, paced to its bandwidth, and gives back the bytes it
// held (those still queued when the peer closes go back with its admission).
func (p *udpPeer) write(d ToxicDirection, dg dgram, pace *ratePacer) {
	defer p.adm.shrink(len(dg.b))
	if dg.rate != 0 && !p.wait(pace.reserve(time.Now(), len(dg.b), dg.rate, len(p.q[d-1]) == 0)) {
		return
	}
	var err error
	if d == Upstream {
		_, err = p.up.Write(dg.b)
	} else {
		_, err = p.px.sv.s.pc.(*net.UDPConn).WriteToUDPAddrPort(dg.b, p.addr)
	}
	if err != nil {
		if !p.px.sv.isStopped() {
			p.px.sv.fail(fmt.Errorf("datagram %s %s: %w", d, p.addr, err))
		}
		return
	}
	if d == Upstream {
		p.px.dgUp.Add(1)
	} else {
		p.px.dgDown.Add(1)
		p.px.sv.dgOut.Add(1)
	}
	p.px.count(d, len(dg.b))
}

// UpdateToxics replaces the toxics of a socket of ctx's caller served as a proxy: every
// connection and peer takes the new set from its next chunk or datagram.
func (t *Table) UpdateToxics(ctx context.Context, id string, toxics []Toxic) (Info, error) {
	s, err := t.peek(ctx, id)
	wrap := func(err error) error {
		return &OpError{Op: "update toxics", SocketID: id, Network: networkOf(s), Address: addressOf(s), Err: err}
	}
	if err != nil {
		return Info{}, wrap(err)
	}
	sv := s.serving.Load()
	if sv == nil || sv.px == nil {
		return Info{}, wrap(&kindError{"socket is not served as a proxy; Serve it with BEHAVIOUR_PROXY first"})
	}
	set, err := ValidateToxics(toxics, sv.px.datagram)
	if err != nil {
		return Info{}, wrap(err)
	}
	s.lastUsed.Store(time.Now().UnixNano())
	sv.px.update(set)
	return s.info(), nil
}
