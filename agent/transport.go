package agent

// What the agent spends on a caller before it knows who calls: control connections (how many
// in all, not yet authenticated, from one peer, and for how long before an authenticated
// RPC), the streams of a connection, health.Watch streams, and the log lines of refused
// callers. Authentication itself runs from the request headers (tapAuth), before gRPC reads a
// request body, so a caller without credentials costs a header frame, never a message.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Defaults of the connection limits, applied by New to zero Config fields.
const (
	// DefaultMaxConnections bounds the agent's control connections, authenticated or not.
	DefaultMaxConnections = 1024
	// DefaultMaxUnauthenticated bounds the control connections that have not yet made an
	// authenticated RPC.
	DefaultMaxUnauthenticated = 256
	// DefaultMaxConnectionsPerPeer bounds one peer's control connections: one IPv4 address,
	// one IPv6 /64, or one uid on a UNIX socket. It is below DefaultMaxUnauthenticated, so one
	// peer cannot hold every unauthenticated slot.
	DefaultMaxConnectionsPerPeer = 128
	// DefaultAuthTimeout closes a control connection that has made no authenticated RPC for
	// this long after it was accepted (the TLS handshake included).
	DefaultAuthTimeout = 10 * time.Second
	// DefaultMaxStreams bounds the RPCs in progress on one control connection (HTTP/2
	// SETTINGS_MAX_CONCURRENT_STREAMS): above a caller's default blocking calls (256), with
	// room for the calls that do not block.
	DefaultMaxStreams = 1024
	// DefaultMaxHealthWatches bounds the health.Watch streams open on the agent.
	DefaultMaxHealthWatches = 256
	// DefaultMaxHealthWatchesPerConn bounds the health.Watch streams of one connection: a load
	// balancer watches a handful of services.
	DefaultMaxHealthWatchesPerConn = 16
	// DefaultMaxUnauthenticatedHealth bounds the health RPCs in progress without credentials
	// when the agent requires tokens: gRPC reads each one's request (up to MaxMessageBytes)
	// before any handler runs, so their number bounds the memory a caller without a token can
	// make the agent hold.
	DefaultMaxUnauthenticatedHealth = 16
	// unauthenticatedHealthPerConn bounds the same on one connection, so that one connection
	// cannot hold them all.
	unauthenticatedHealthPerConn = 4
	// MaxHeaderBytes bounds the headers of one request (gRPC's MaxHeaderListSize): the
	// agent's metadata is a token, a session id and gRPC's own, far below it; gRPC's default
	// of 16 MiB would let every unauthenticated connection make the agent hold that much.
	MaxHeaderBytes = 16 << 10
	// FlowWindow is the HTTP/2 flow-control window of each stream and of each connection, in
	// bytes: how much a caller may send ahead of the agent's reading. gRPC's default starts at
	// 64 KiB and lets bandwidth-delay estimates grow it; on loopback and in a LAN that estimate
	// stays near the start, so a caller streaming 64 KiB Attach messages waits for a window
	// update after every message (a wake-up and a small write each way). A static window four
	// messages deep keeps the caller writing, the agent sends one update per quarter window,
	// and it bounds what one connection can make the agent hold below the estimator's 16 MiB.
	FlowWindow = 256 << 10
	// maxLoggedMethod bounds the method name a refused request's log line repeats: it comes
	// from the request's :path, before gRPC knows whether the method exists.
	maxLoggedMethod = 128
)

// connLimiter counts the agent's control connections and decides whether one more may be
// served.
type connLimiter struct {
	maxTotal, maxUnauth, maxPerPeer int
	authTimeout                     time.Duration
	log                             *refusalLog
	metrics                         *metrics // counts refusals; nil: none

	mu      sync.Mutex
	total   int
	unauth  int
	perPeer map[string]int
}

// admit claims a connection slot for a connection from peer, or says which limit refuses it.
func (l *connLimiter) admit(peer string) (limit string, max int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= l.maxTotal:
		return "max_connections", l.maxTotal
	case l.unauth >= l.maxUnauth:
		return "max_unauthenticated", l.maxUnauth
	case l.perPeer[peer] >= l.maxPerPeer:
		return "max_connections_per_peer", l.maxPerPeer
	}
	l.total++
	l.unauth++
	l.perPeer[peer]++
	return "", 0
}

func (l *connLimiter) authenticated() {
	l.mu.Lock()
	l.unauth--
	l.mu.Unlock()
}

func (l *connLimiter) closed(peer string, wasUnauth bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if wasUnauth {
		l.unauth--
	}
	if l.perPeer[peer]--; l.perPeer[peer] <= 0 {
		delete(l.perPeer, peer)
	}
}

// counts returns the connections served, and those not yet authenticated.
func (l *connLimiter) counts() (total, unauth int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.unauth
}

// limitedListener serves only the connections its connLimiter admits; it closes the others
// as soon as they are accepted.
type limitedListener struct {
	net.Listener
	lim *connLimiter
}

// Accept returns the next admitted connection; refused ones are closed here and never reach
// gRPC.
func (ll *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := peerKey(c)
		if limit, max := ll.lim.admit(key); limit != "" {
			_ = c.Close()
			ll.lim.metrics.refused(limit)
			ll.lim.log.line(slog.LevelWarn, "connection refused", slog.String("peer", c.RemoteAddr().String()),
				slog.String("limit", limit), slog.Int("max", max))
			continue
		}
		lc := &limitedConn{Conn: c, lim: ll.lim, key: key}
		lc.addr = peerAddr{Addr: c.RemoteAddr(), conn: lc}
		lc.timer = time.AfterFunc(ll.lim.authTimeout, lc.expire)
		return lc, nil
	}
}

// The states of a limitedConn.
const (
	connPending int32 = iota // no authenticated RPC yet; the auth timer runs
	connAuthenticated
	connExpired // closed by the auth timer
	connClosed
)

// limitedConn is an admitted control connection: it gives its slot back when closed, and is
// closed at the auth timeout unless an authenticated RPC came first.
type limitedConn struct {
	net.Conn
	lim   *connLimiter
	key   string
	addr  peerAddr
	timer *time.Timer
	state atomic.Int32

	watches      atomic.Int64 // health.Watch streams open
	unauthHealth atomic.Int64 // health RPCs in progress without credentials
}

// RemoteAddr is the peer's address, which also leads back to this connection: gRPC hands it
// to every RPC of the connection as peer.Addr (see connOf).
func (c *limitedConn) RemoteAddr() net.Addr { return &c.addr }

// NetConn is the connection limitedConn wraps, as tls.Conn's NetConn: peer credentials are
// read from it.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }

// authenticate records an authenticated RPC: the connection stops counting as
// unauthenticated and its auth timer stops. It is false when the timer closed it first.
func (c *limitedConn) authenticate() bool {
	if c.state.CompareAndSwap(connPending, connAuthenticated) {
		c.timer.Stop()
		c.lim.authenticated()
		return true
	}
	return c.state.Load() == connAuthenticated
}

// expire closes a connection that made no authenticated RPC within the auth timeout.
func (c *limitedConn) expire() {
	if !c.state.CompareAndSwap(connPending, connExpired) {
		return
	}
	c.lim.authenticated() // no longer waiting to authenticate; the slot goes when gRPC closes it
	c.lim.log.line(slog.LevelInfo, "connection closed: no authenticated RPC in time",
		slog.String("peer", c.addr.String()), slog.Duration("auth_timeout", c.lim.authTimeout))
	_ = c.Conn.Close()
}

// Close closes the connection and gives its slots back (once, however often it is called).
func (c *limitedConn) Close() error {
	if old := c.state.Swap(connClosed); old != connClosed {
		if old == connPending {
			c.timer.Stop()
		}
		c.lim.closed(c.key, old == connPending)
	}
	return c.Conn.Close()
}

// peerAddr is a connection's remote address that knows its connection.
type peerAddr struct {
	net.Addr
	conn *limitedConn
}

// connOf returns the limitedConn an RPC's context came from, or nil (a listener the agent did
// not wrap).
func connOf(ctx context.Context) *limitedConn {
	p, _ := peer.FromContext(ctx)
	return connOfPeer(p)
}

// connOfPeer is connOf for the peer p of an RPC (nil for none).
func connOfPeer(p *peer.Peer) *limitedConn {
	if p == nil {
		return nil
	}
	if a, ok := p.Addr.(*peerAddr); ok {
		return a.conn
	}
	return nil
}

// peerKey names the peer a connection counts against: its IPv4 address, its IPv6 /64 (one
// host's share of a network), or on a UNIX socket the peer's uid where the kernel says it.
func peerKey(c net.Conn) string {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		ip := a.AddrPort().Addr().Unmap().WithZone("")
		if ip.Is6() {
			p, _ := ip.Prefix(64)
			return p.String()
		}
		return ip.String()
	case *net.UnixAddr:
		if sc, ok := c.(syscall.Conn); ok {
			if uid, ok := peerUID(sc); ok {
				return "uid:" + strconv.Itoa(uid)
			}
		}
		return "unix"
	case nil:
		return ""
	default:
		return a.Network() + ":" + a.String()
	}
}

// tapResult is what tapAuth found out about an RPC, for the interceptors.
type tapResult struct {
	caller Caller
	gen    *Tokens // the token set that authenticated it; nil when no token did
	// authenticated: the caller proved who it is, or the agent asks no proof (no tokens).
	// False for a health RPC let in without a token.
	authenticated bool
}

type tapKey struct{}

// tapAuth authenticates an RPC from its headers, before gRPC reads its request: without
// valid credentials it is refused (UNAUTHENTICATED, the one fixed message) unless it is a
// health RPC, which is let in within bounds. An authenticated RPC marks its connection
// authenticated, which stops the connection's auth timer. It runs on the connection's
// reader goroutine, so it does nothing that blocks.
func (a *Agent) tapAuth(ctx context.Context, info *tap.Info) (context.Context, error) {
	start := time.Now()
	p, _ := peer.FromContext(ctx)
	caller, gen, why, err := a.authenticate(ctx, p, info.FullMethodName)
	if err != nil {
		a.refusals.logRPC(ctx, info.FullMethodName, caller, why, err, start)
		return ctx, err
	}
	r := &tapResult{caller: caller, gen: gen, authenticated: caller.Token != "" || a.tokens.Current() == nil}
	c := connOfPeer(p)
	if r.authenticated {
		if c != nil && !c.authenticate() {
			return ctx, errConnExpired
		}
		return context.WithValue(ctx, tapKey{}, r), nil
	}
	// A health RPC without a token: gRPC will read its request, so their number is bounded.
	if err := a.claimUnauthHealth(ctx, c); err != nil {
		a.refusals.logRPC(ctx, info.FullMethodName, caller, "no token", err, start)
		return ctx, err
	}
	return context.WithValue(ctx, tapKey{}, r), nil
}

// errConnExpired refuses an RPC on a connection the auth timeout is closing.
var errConnExpired = status.Error(codes.Unavailable, "the connection made no authenticated RPC within the auth timeout and is closing; reconnect")

// claimUnauthHealth claims one of the health RPCs without credentials the agent and the
// connection c allow, given back when the RPC's context ends.
func (a *Agent) claimUnauthHealth(ctx context.Context, c *limitedConn) error {
	if c != nil && !claim(&c.unauthHealth, unauthenticatedHealthPerConn) {
		return limitStatus("unauthenticated_health_per_connection", unauthenticatedHealthPerConn,
			"health RPCs without a token in progress on this connection; wait for one to end, or send a token")
	}
	if !claim(&a.unauthHealth, a.cfg.MaxUnauthenticatedHealth) {
		if c != nil {
			c.unauthHealth.Add(-1)
		}
		return limitStatus("max_unauthenticated_health", a.cfg.MaxUnauthenticatedHealth,
			"health RPCs without a token in progress on the agent; retry later, or send a token")
	}
	context.AfterFunc(ctx, func() {
		a.unauthHealth.Add(-1)
		if c != nil {
			c.unauthHealth.Add(-1)
		}
	})
	return nil
}

// claim adds one to n unless it is at max already; refused claims never show in n, so
// concurrent ones cannot make each other fail.
func claim(n *atomic.Int64, max int) bool {
	for {
		v := n.Load()
		if v >= int64(max) {
			return false
		}
		if n.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// tapCaller returns what tapAuth found for the RPC of ctx, if it ran.
func tapCaller(ctx context.Context) (*tapResult, bool) {
	r, ok := ctx.Value(tapKey{}).(*tapResult)
	return r, ok
}

// limitStatus is the RESOURCE_EXHAUSTED status of a transport limit, with the ErrorInfo of
// any other limit (reason LIMIT_EXCEEDED, metadata limit).
func limitStatus(limit string, max int, detail string) error {
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("limit %s (%d) exceeded: %s", limit, max, detail))
	if ds, err := st.WithDetails(&errdetails.ErrorInfo{Reason: contract.ReasonLimitExceeded, Domain: contract.Domain,
		Metadata: map[string]string{"limit": limit}}); err == nil {
		st = ds
	}
	return st.Err()
}

// boundedHealth is gRPC's health service with its Watch streams bounded, per connection and
// in all: each holds a goroutine and buffers for as long as the client keeps it open.
type boundedHealth struct {
	*health.Server
	perConn, total int
	open           atomic.Int64
}

// Watch is health.Server's Watch within the bounds; past them it answers RESOURCE_EXHAUSTED
// with reason LIMIT_EXCEEDED at once.
func (h *boundedHealth) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	c := connOf(stream.Context())
	if c != nil {
		if !claim(&c.watches, h.perConn) {
			return limitStatus("health_watches_per_connection", h.perConn, "health.Watch streams open on this connection; close one first")
		}
		defer c.watches.Add(-1)
	}
	if !claim(&h.open, h.total) {
		return limitStatus("max_health_watches", h.total, "health.Watch streams open on the agent; use Check, or close a Watch")
	}
	defer h.open.Add(-1)
	return h.Server.Watch(req, stream)
}

// refusalLog writes the log lines of what the agent refuses before it knows the caller: at a
// bounded rate (a burst, then a steady rate), each line of bounded size; a line after a
// quiet spell says how many were left out.
type refusalLog struct {
	log, audit *slog.Logger // audit nil: none

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

// The rate of refusalLog: a burst of refusalBurst lines, then refusalRate a second.
const (
	refusalBurst = 20
	refusalRate  = 5
)

// allow takes a line's token, and returns how many lines were left out before it.
func (l *refusalLog) allow() (ok bool, suppressed int) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = refusalBurst
	} else {
		l.tokens = min(refusalBurst, l.tokens+now.Sub(l.last).Seconds()*refusalRate)
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	s := l.suppressed
	l.suppressed = 0
	return true, s
}

// line writes one line to the log, within the rate.
func (l *refusalLog) line(level slog.Level, msg string, attrs ...slog.Attr) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	ok, suppressed := l.allow()
	if !ok {
		return
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	l.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// logRPC writes the line of an RPC refused before its request was read, keys rpc caller peer
// [audit] code dur err auth [suppressed], to the log and, for an audited method, to the
// audit log; within the rate. Nothing of the request's body is in it: it was never read.
func (l *refusalLog) logRPC(ctx context.Context, method string, caller Caller, why string, err error, start time.Time) {
	audit := audited[method]
	toLog := l.log.Enabled(ctx, slog.LevelInfo)
	toAudit := audit && l.audit != nil && l.audit.Enabled(ctx, slog.LevelInfo)
	if !toLog && !toAudit {
		return
	}
	ok, suppressed := l.allow()
	if !ok {
		return
	}
	rpc := method
	if i := lastSlash(rpc); i >= 0 {
		rpc = rpc[i+1:]
	}
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs, slog.String("rpc", clip(rpc, maxLoggedMethod)), slog.String("caller", caller.ID))
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if audit {
		attrs = append(attrs, slog.Bool("audit", true))
	}
	st := status.Convert(err)
	attrs = append(attrs, slog.String("code", st.Code().String()), slog.Duration("dur", time.Since(start)),
		slog.String("err", st.Message()), slog.String("auth", why))
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	if toLog {
		l.log.LogAttrs(ctx, slog.LevelInfo, "rpc", attrs...)
	}
	if toAudit {
		l.audit.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
	}
}

func lastSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}

// clip shortens a caller's string for a log line to at most max bytes, saying how long it was.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:max] + "...(" + strconv.Itoa(len(s)) + " bytes)"
}

// callerOf is the caller tapAuth found, for the interceptors, or the result of
// authenticating again when tapAuth did not run.
func (a *Agent) callerOf(ctx context.Context, method string) (c Caller, gen *Tokens, why string, authenticated bool, err error) {
	if r, ok := tapCaller(ctx); ok {
		return r.caller, r.gen, "", r.authenticated, nil
	}
	// No tap ran: the agent has no tokens (see New), so the transport alone names the caller
	// and every call counts as authenticated for the connection's auth timeout.
	// One look for the peer: the certificate, the uid and the connection all hang off it.
	p, _ := peer.FromContext(ctx)
	c, gen, why, err = a.authenticate(ctx, p, method)
	authenticated = err == nil && (c.Token != "" || a.tokens.Current() == nil)
	if authenticated {
		if conn := connOfPeer(p); conn != nil && !conn.authenticate() {
			return c, gen, "connection past its auth timeout", false, errConnExpired
		}
	}
	return c, gen, why, authenticated, err
}
