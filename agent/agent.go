// Package agent is the sockagent daemon as a library: the gRPC shell (SocketService,
// SessionService, MeasureService, AgentService, health, reflection) around the socket engine
// of agent/internal/engine.
//
// One file per service converts proto <-> engine (socket_service.go, session_service.go,
// measure_service.go, agent_service.go, with the conversions in convert.go); status.go is the
// one mapping from the engine's reasons to gRPC codes; interceptors.go authenticates every RPC
// (auth.go: TLS, mTLS, bearer tokens), logs it, and writes the audit line of those that create,
// write to or close a socket. The engine knows nothing of gRPC; the adapter knows nothing of
// syscalls.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/attachcodec"
	"github.com/sockagent/sockagent/agent/internal/auth"
	"github.com/sockagent/sockagent/agent/internal/engine"
	"github.com/sockagent/sockagent/agent/internal/rlimit"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultMaxSweepPace caps a Sweep's first contacts to new addresses per second.
	DefaultMaxSweepPace = engine.DefaultMaxSweepPace
	// DefaultIdleTimeout closes a socket outside a session that no call used for this long.
	DefaultIdleTimeout = engine.DefaultIdleTimeout
	// DefaultSessionTTL is the lease of a session opened with ttl 0.
	DefaultSessionTTL   = engine.DefaultSessionTTL
	DefaultTimeout      = 30 * time.Second
	DefaultMaxRecvBytes = 1 << 20
	// DefaultMaxMessageBytes is the largest request message: 4 MiB of data (the default
	// limits.bytes_per_call) plus 64 KiB for the rest of the message.
	DefaultMaxMessageBytes = 4<<20 + 64<<10
)

// Config configures an Agent. The zero value is usable.
type Config struct {
	// Logger receives one line per RPC (keys rpc caller socket network local remote code
	// err; audit=true on the RPCs that create, write to or close a socket); nil discards.
	// Audited RPCs and refused credentials log at Info, every other RPC at Debug, so a log
	// at Info grows with what changes sockets, not with reads, lists and health checks.
	// Requests gRPC refuses as larger than MaxMessageBytes get a Warn line when Logger is
	// enabled for Warn at the time New runs.
	Logger *slog.Logger
	// Version reported by GetInfo; empty means the binary's module version
	// (contract.ReadBuild).
	Version string
	// DefaultTimeout applies to blocking calls whose timeout is 0.
	DefaultTimeout time.Duration
	// MaxRecvBytes bounds max_bytes and exact_bytes of one Recv or RecvFrom.
	MaxRecvBytes int
	// MaxMessageBytes bounds one request message (the gRPC server's MaxRecvMsgSize). gRPC
	// refuses a larger one before any handler runs: the client gets RESOURCE_EXHAUSTED "grpc:
	// received message larger than max (SIZE vs. MaxMessageBytes)", without ErrorInfo.
	MaxMessageBytes int
	// ServerOptions are added to the gRPC server's options (limits; credentials only when
	// TLS is nil).
	ServerOptions []grpc.ServerOption
	// TLS, if set, makes the agent serve TLS only (see ServerTLS). With ClientCAs and
	// RequireAndVerifyClientCert it is mTLS, and a verified client certificate names the
	// caller "cert:" + its whole subject, RFC 4514 with every value escaped.
	TLS *tls.Config
	// Labels are reported by GetInfo, for inventories that discover agents and select them
	// by label (contract.CheckLabel; at most contract.MaxLabels).
	Labels map[string]string
	// Metrics, if set, makes the agent keep metrics in the recorder it returns, served by
	// MetricsHandler: metrics.New (package agent/metrics) keeps them for Prometheus. Nil: no
	// metrics interceptor runs and nothing is counted for them.
	Metrics func(MetricsSource) MetricsRecorder
	// Tokens, if set, requires "authorization: Bearer SECRET" with one of these tokens on
	// every RPC but the health service's; the caller is "token:NAME". SetTokens replaces them.
	Tokens *Tokens
	// AuditLogger, if set, also receives the line of every RPC that creates, writes to or
	// closes a socket (message "audit"), whatever Logger's level, and one line per socket the
	// agent closes on its own: session closed, lease expired, idle (message "reclaim", keys
	// socket owner session cause why; Logger gets it too).
	AuditLogger *slog.Logger
	// Policy decides per caller what may be opened and used, and the limits; nil means
	// policy.Default() (see policy.DefaultYAML). Its "$SOCKETS" unix_paths prefixes stand for
	// SocketDir.
	Policy *policy.Policy
	// SocketDir is the agent's socket directory, an absolute path to an existing directory
	// that only the agent's user should be able to enter: the default policy lets callers put
	// UNIX sockets there and nowhere else, and GetInfo reports it. When empty, New creates a
	// private temporary directory (mode 0700) and Close or Shutdown removes it with whatever
	// is left in it; a directory given here is never removed.
	SocketDir string
	// IdleTimeout closes a socket outside a session once no call has used it (and none is
	// pending) for this long; 0 means DefaultIdleTimeout, negative never.
	IdleTimeout time.Duration
	// MaxSweepPace caps a Sweep's first contacts to new addresses per second; a sweep asking
	// for more (or for 0) gets this. 0 means DefaultMaxSweepPace.
	MaxSweepPace int
	// MaxConnections bounds the control connections served at once; one more is closed as
	// soon as it is accepted. 0 means DefaultMaxConnections.
	MaxConnections int
	// MaxUnauthenticated bounds the control connections that have not yet made an
	// authenticated RPC. 0 means DefaultMaxUnauthenticated.
	MaxUnauthenticated int
	// MaxConnectionsPerPeer bounds the control connections of one peer (an IPv4 address, an
	// IPv6 /64, a uid on a UNIX socket). 0 means DefaultMaxConnectionsPerPeer.
	MaxConnectionsPerPeer int
	// AuthTimeout closes a control connection that has not made an authenticated RPC this
	// long after it was accepted. With tokens, only an RPC with a valid token counts (health
	// RPCs without one do not); without tokens, any RPC does. 0 means DefaultAuthTimeout.
	AuthTimeout time.Duration
	// MaxStreams bounds the RPCs in progress on one control connection; a client waits for a
	// free one. 0 means DefaultMaxStreams.
	MaxStreams int
	// MaxHealthWatches bounds the health.Watch streams open on the agent, and
	// MaxHealthWatchesPerConn those of one connection; past them Watch answers
	// RESOURCE_EXHAUSTED. 0 means DefaultMaxHealthWatches and DefaultMaxHealthWatchesPerConn.
	MaxHealthWatches, MaxHealthWatchesPerConn int
	// MaxUnauthenticatedHealth bounds the health RPCs in progress without a token when the
	// agent has tokens (their requests are read before any handler runs). 0 means
	// DefaultMaxUnauthenticatedHealth.
	MaxUnauthenticatedHealth int
	// Reflection, if set, registers gRPC server reflection on the agent's server, so grpcurl
	// works with no .proto files: sockagent passes the register function of package
	// agent/reflection. It is a hook rather than always on so that programs embedding agents
	// for their own use (sockctl's local agents) do not link protobuf's descriptor machinery,
	// which would slow every sockctl start.
	Reflection func(*grpc.Server)
}

// Agent serves the sockagent.v1 API over gRPC.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	table    *engine.Table
	srv      *grpc.Server
	health   *health.Server
	conns    *connLimiter
	refusals *refusalLog // rate-limited lines of callers refused before they are known
	metrics  *metrics    // nil unless Config.Metrics

	unauthHealth atomic.Int64 // health RPCs in progress without a token
	started      time.Time
	instance     string
	// tokens are the current token set (nil: no token authentication) and the RPCs in
	// progress that a token authenticated, for SetTokens to end those whose token it revokes.
	tokens   *auth.Registry
	audit    *slog.Logger // nil: audit lines only in log
	hostInfo hostCache    // GetInfo's hostname and interfaces (info.go)
	// ownDir is set when New created the socket directory, so the agent removes it once, on
	// Close or Shutdown.
	ownDir     bool
	removeOnce sync.Once
}

// New builds an Agent; call Serve to accept connections and Close or Shutdown to stop.
func New(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Version == "" {
		cfg.Version = contract.ReadBuild().Version
	}
	if cfg.MaxMessageBytes < 0 {
		return nil, fmt.Errorf("agent config: MaxMessageBytes %d must not be negative", cfg.MaxMessageBytes)
	}
	if err := cfg.transportDefaults(); err != nil {
		return nil, err
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.DefaultTimeout < 0 || cfg.MaxRecvBytes < 0 {
		return nil, fmt.Errorf("agent config: DefaultTimeout %s and MaxRecvBytes %d must not be negative", cfg.DefaultTimeout, cfg.MaxRecvBytes)
	}
	if cfg.DefaultTimeout == 0 {
		cfg.DefaultTimeout = DefaultTimeout
	}
	if cfg.MaxRecvBytes == 0 {
		cfg.MaxRecvBytes = DefaultMaxRecvBytes
	}
	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails on supported platforms
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if len(cfg.Labels) > contract.MaxLabels {
		return nil, fmt.Errorf("agent config: %d labels; at most %d", len(cfg.Labels), contract.MaxLabels)
	}
	for k, v := range cfg.Labels {
		if err := contract.CheckLabel(k, v); err != nil {
			return nil, fmt.Errorf("agent config: %w", err)
		}
	}
	if cfg.Tokens != nil && cfg.Tokens.Len() == 0 {
		return nil, errors.New("agent config: Tokens is empty; give at least one token or none at all")
	}
	ownDir, err := cfg.socketDir()
	if err != nil {
		return nil, err
	}
	if cfg.Policy == nil {
		cfg.Policy = policy.Default()
	}
	cfg.Policy = cfg.Policy.WithSocketDir(cfg.SocketDir)
	a := &Agent{
		ownDir:   ownDir,
		cfg:      cfg,
		log:      cfg.Logger,
		health:   health.NewServer(),
		started:  time.Now(),
		instance: hex.EncodeToString(id[:]),
		audit:    cfg.AuditLogger,
		refusals: &refusalLog{log: cfg.Logger, audit: cfg.AuditLogger},
		tokens:   auth.NewRegistry(cfg.Tokens),
	}
	a.conns = &connLimiter{maxTotal: cfg.MaxConnections, maxUnauth: cfg.MaxUnauthenticated, maxPerPeer: cfg.MaxConnectionsPerPeer,
		authTimeout: cfg.AuthTimeout, log: a.refusals, perPeer: map[string]int{}}
	a.table = engine.New(engine.Config{
		DefaultTimeout: cfg.DefaultTimeout, MaxRecvBytes: cfg.MaxRecvBytes, MaxMessageBytes: cfg.MaxMessageBytes, Policy: cfg.Policy,
		Instance: a.instance, Started: a.started, IdleTimeout: cfg.IdleTimeout, OnReclaim: a.logReclaim,
		MaxSweepPace: cfg.MaxSweepPace,
	})
	unary, stream := []grpc.UnaryServerInterceptor{a.unary}, []grpc.StreamServerInterceptor{a.authStream}
	if cfg.Metrics != nil {
		a.metrics = newMetrics(a)
		a.conns.metrics = a.metrics
		mu, ms := a.metrics.interceptors()
		unary, stream = append(mu, unary...), append(ms, stream...)
	}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		grpc.MaxConcurrentStreams(uint32(cfg.MaxStreams)),
		grpc.MaxHeaderListSize(MaxHeaderBytes),
		// Long-lived workers run the handlers, one per CPU (busy ones fall back to a goroutine
		// per RPC): their stacks stay grown, where a new goroutine per RPC grows its stack
		// again on every call.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.InitialWindowSize(FlowWindow),
		grpc.InitialConnWindowSize(FlowWindow),
	}
	if cfg.Tokens != nil {
		// Tokens are checked from the headers, before gRPC reads a request's body. Without
		// tokens there is nothing to check there (the transport says who calls, and the
		// interceptors mark the connection authenticated), so no RPC pays for the tap.
		opts = append(opts, grpc.InTapHandle(a.tapAuth))
	}
	// The stats handler costs every RPC a copy of its metadata and a few allocations; it only
	// logs at Warn, so a Logger that cannot (nil, or a level above Warn when New runs) spares it.
	if a.log.Enabled(context.Background(), slog.LevelWarn) {
		opts = append(opts, grpc.StatsHandler(messageSizeLog{log: a.log, max: cfg.MaxMessageBytes}))
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(handshakeLogger{TransportCredentials: credentials.NewTLS(cfg.TLS), log: a.refusals}))
	} else {
		opts = append(opts, grpc.Creds(peerCreds{}))
	}
	// Attach's data stays in gRPC's buffers on its way to the socket (attachcodec); last, so that
	// no option of the caller's replaces the codec the Attach handler needs.
	opts = append(opts, cfg.ServerOptions...)
	opts = append(opts, grpc.ForceServerCodecV2(attachcodec.New()))
	a.srv = grpc.NewServer(opts...)
	sockagentv1.RegisterSocketServiceServer(a.srv, &socketService{t: a.table})
	sockagentv1.RegisterAgentServiceServer(a.srv, &agentService{a: a})
	sockagentv1.RegisterSessionServiceServer(a.srv, &sessionService{t: a.table})
	sockagentv1.RegisterMeasureServiceServer(a.srv, &measureService{t: a.table, m: a.metrics})
	healthpb.RegisterHealthServer(a.srv, &boundedHealth{Server: a.health, perConn: cfg.MaxHealthWatchesPerConn, total: cfg.MaxHealthWatches})
	if cfg.Reflection != nil {
		cfg.Reflection(a.srv)
	}
	if a.metrics != nil {
		a.metrics.r.Registered(a.srv)
	}
	for _, svc := range []string{"", sockagentv1.SocketService_ServiceDesc.ServiceName, sockagentv1.AgentService_ServiceDesc.ServiceName, sockagentv1.SessionService_ServiceDesc.ServiceName, sockagentv1.MeasureService_ServiceDesc.ServiceName} {
		a.health.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}
	return a, nil
}

// Serve accepts gRPC connections on lis until the agent stops, within the connection limits
// of Config (MaxConnections, MaxUnauthenticated, MaxConnectionsPerPeer, AuthTimeout).
func (a *Agent) Serve(lis net.Listener) error {
	a.log.Info("serving", "addr", lis.Addr().String(), "version", a.cfg.Version, "instance", a.instance)
	return a.srv.Serve(&limitedListener{Listener: lis, lim: a.conns})
}

// NumConnections counts the control connections served, and those of them that have not
// made an authenticated RPC yet.
func (a *Agent) NumConnections() (total, unauthenticated int) { return a.conns.counts() }

// transportDefaults checks the connection limits and fills in the defaults of zero ones.
func (cfg *Config) transportDefaults() error {
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxConnections", &cfg.MaxConnections, DefaultMaxConnections},
		{"MaxUnauthenticated", &cfg.MaxUnauthenticated, DefaultMaxUnauthenticated},
		{"MaxConnectionsPerPeer", &cfg.MaxConnectionsPerPeer, DefaultMaxConnectionsPerPeer},
		{"MaxStreams", &cfg.MaxStreams, DefaultMaxStreams},
		{"MaxHealthWatches", &cfg.MaxHealthWatches, DefaultMaxHealthWatches},
		{"MaxHealthWatchesPerConn", &cfg.MaxHealthWatchesPerConn, DefaultMaxHealthWatchesPerConn},
		{"MaxUnauthenticatedHealth", &cfg.MaxUnauthenticatedHealth, DefaultMaxUnauthenticatedHealth},
	} {
		switch {
		case *f.v < 0 || *f.v > math.MaxInt32:
			return fmt.Errorf("agent config: %s %d: give 1 to %d, or 0 for the default (%d)", f.name, *f.v, math.MaxInt32, f.def)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	switch {
	case cfg.AuthTimeout < 0:
		return fmt.Errorf("agent config: AuthTimeout %s must not be negative (0 means %s)", cfg.AuthTimeout, DefaultAuthTimeout)
	case cfg.AuthTimeout == 0:
		cfg.AuthTimeout = DefaultAuthTimeout
	}
	return nil
}

// socketDir checks SocketDir, or creates a private temporary directory when it is empty
// (created reports that it did).
func (cfg *Config) socketDir() (created bool, err error) {
	if cfg.SocketDir == "" {
		dir, err := os.MkdirTemp("", "sockagent-") // mode 0700
		if err != nil {
			return false, fmt.Errorf("agent config: create a socket directory (SocketDir is empty): %w; set TMPDIR to a writable directory, or give SocketDir", err)
		}
		cfg.SocketDir = dir
		return true, nil
	}
	if !filepath.IsAbs(cfg.SocketDir) {
		return false, fmt.Errorf("agent config: SocketDir %q is not an absolute path", cfg.SocketDir)
	}
	cfg.SocketDir = filepath.Clean(cfg.SocketDir)
	fi, err := os.Stat(cfg.SocketDir)
	if err != nil {
		return false, fmt.Errorf("agent config: SocketDir: %w; create it (mode 0700) first", err)
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("agent config: SocketDir %s is not a directory", cfg.SocketDir)
	}
	return false, nil
}

// removeSocketDir removes the socket directory New created, once the agent's sockets are
// closed.
func (a *Agent) removeSocketDir() {
	if !a.ownDir {
		return
	}
	a.removeOnce.Do(func() {
		if err := os.RemoveAll(a.cfg.SocketDir); err != nil {
			a.log.Warn("socket directory not removed", "dir", a.cfg.SocketDir, "err", err)
		}
	})
}

// SocketDir is the agent's socket directory (Config.SocketDir, or the one New created).
func (a *Agent) SocketDir() string { return a.cfg.SocketDir }

// NumSockets counts the sockets open in the agent's table.
func (a *Agent) NumSockets() int { return a.table.Len() }

// NumSessions counts the agent's open sessions.
func (a *Agent) NumSessions() int { return a.table.NumSessions() }

// InstanceID is random per Agent: a new one means the agent restarted.
func (a *Agent) InstanceID() string { return a.instance }

// Shutdown stops gracefully: health turns NOT_SERVING, every socket is closed (blocked calls
// return UNAVAILABLE with reason AGENT_STOPPING), in-flight RPCs finish, and the server stops.
// When ctx ends first, remaining RPCs are cut off. A socket directory New created is removed.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.health.Shutdown()
	a.table.Stop()
	done := make(chan struct{})
	go func() {
		a.srv.GracefulStop()
		close(done)
	}()
	defer a.removeSocketDir()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		a.srv.Stop()
		<-done
		return ctx.Err()
	}
}

// Close stops at once: every socket is closed and every RPC cut off. A socket directory New
// created is removed.
func (a *Agent) Close() error {
	a.health.Shutdown()
	a.table.Stop()
	a.srv.Stop()
	a.removeSocketDir()
	return nil
}

// Caller is who made an RPC, as the transport proved it (see engine.Caller).
type Caller = engine.Caller

// CallerFrom returns the caller of the RPC ctx belongs to, engine.Anonymous when none was set.
func CallerFrom(ctx context.Context) Caller { return engine.CallerFrom(ctx) }

// RaiseOpenFileLimit raises the process's soft open-file limit to its hard limit (see
// rlimit.Raise) and returns the soft limit before and after. Call it from a daemon's main, not
// from a library: the limit is the whole process's.
func RaiseOpenFileLimit() (before, after uint64, err error) { return rlimit.Raise() }
