// Package daemon holds what the sockagent command decides before it serves: its settings
// (Config, filled from the command line by AddFlags), the rules they must satisfy, and the
// files they name (certificates, tokens, policy, audit log), turned into an agent.Config, a
// logger and the address to listen on (Build, then Setup.Listen).
//
// The safety rules live here, not in the main, so that they are tested as a table: an agent
// serves on a non-loopback address only when callers must authenticate (mTLS or tokens) or
// the operator said --insecure, and every refusal says what was wrong and what to do.
package daemon

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/rlimit"
	"github.com/sockagent/sockagent/agent/metrics"
	"github.com/sockagent/sockagent/agent/policy"
)

// Config is sockagent's settings, one field per flag. DefaultConfig gives the defaults the
// flags show.
type Config struct {
	Listen          string            // --listen: host:port, or unix:PATH
	LogFormat       string            // --log-format: text or json
	LogLevel        string            // --log-level: debug, info, warn or error
	DefaultTimeout  time.Duration     // --default-timeout
	MaxRecvBytes    int               // --max-recv-bytes
	MaxMessageBytes int               // --max-message-bytes
	ShutdownTimeout time.Duration     // --shutdown-timeout
	TLSCert         string            // --tls-cert
	TLSKey          string            // --tls-key
	ClientCA        string            // --client-ca
	TokenFile       string            // --token-file
	Insecure        bool              // --insecure
	AuditLog        string            // --audit-log: a file, or - for the log's writer
	IdleTimeout     time.Duration     // --idle-timeout: 0 means never
	PolicyFile      string            // --policy
	SocketDir       string            // --socket-dir
	MetricsListen   string            // --metrics-listen: host:port, empty = no metrics
	Labels          map[string]string // --label KEY=VALUE, repeated

	MaxConnections        int           // --max-connections
	MaxUnauthenticated    int           // --max-unauthenticated
	MaxConnectionsPerPeer int           // --max-connections-per-peer
	AuthTimeout           time.Duration // --auth-timeout
	MaxStreams            int           // --max-streams
	MaxHealthWatches      int           // --max-health-watches
	MaxSweepPace          int           // --max-sweep-pace
}

// DefaultConfig is sockagent without flags: plaintext on a UNIX socket only the agent's user
// may reach (contract.DefaultAgentSocket), with the agent's default limits.
func DefaultConfig() Config {
	return Config{
		Listen:          contract.DefaultAgent(),
		SocketDir:       DefaultSocketDir(),
		LogFormat:       "text",
		LogLevel:        "info",
		DefaultTimeout:  agent.DefaultTimeout,
		MaxRecvBytes:    agent.DefaultMaxRecvBytes,
		MaxMessageBytes: agent.DefaultMaxMessageBytes,
		ShutdownTimeout: 10 * time.Second,
		IdleTimeout:     agent.DefaultIdleTimeout,

		MaxConnections:        agent.DefaultMaxConnections,
		MaxUnauthenticated:    agent.DefaultMaxUnauthenticated,
		MaxConnectionsPerPeer: agent.DefaultMaxConnectionsPerPeer,
		AuthTimeout:           agent.DefaultAuthTimeout,
		MaxStreams:            agent.DefaultMaxStreams,
		MaxHealthWatches:      agent.DefaultMaxHealthWatches,
		MaxSweepPace:          agent.DefaultMaxSweepPace,
	}
}

// AddFlags defines sockagent's flags on fs, each writing into c; c's values are the flags'
// defaults.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "address to serve gRPC on: unix:PATH for a UNIX socket (mode 0600: the agent's user alone), or host:port")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.DurationVar(&c.DefaultTimeout, "default-timeout", c.DefaultTimeout, "timeout of blocking calls that give none")
	fs.IntVar(&c.MaxRecvBytes, "max-recv-bytes", c.MaxRecvBytes, "largest max_bytes/exact_bytes of one Recv")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long in-flight RPCs may finish after SIGINT/SIGTERM")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "largest request message; gRPC refuses a larger one with RESOURCE_EXHAUSTED \"received message larger than max\"")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "serve TLS with this PEM certificate (chain); needs --tls-key")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key of --tls-cert")
	fs.StringVar(&c.ClientCA, "client-ca", c.ClientCA, "require client certificates signed by these PEM CAs (mTLS); needs --tls-cert")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "require \"authorization: Bearer TOKEN\" with a token of this file (NAME:SECRET per line); reread on SIGHUP")
	fs.BoolVar(&c.Insecure, "insecure", c.Insecure, "allow serving on a non-loopback address without --client-ca or --token-file (anyone who reaches it can open sockets here)")
	fs.StringVar(&c.AuditLog, "audit-log", c.AuditLog, "also write the RPCs that create, write to or close sockets to this file as JSON lines (- for stderr), whatever --log-level")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "close a socket opened outside a session after this long without a call on it (0 = never)")
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "control connections served at once; more are closed as soon as they are accepted")
	fs.IntVar(&c.MaxUnauthenticated, "max-unauthenticated", c.MaxUnauthenticated, "control connections served at once that have not yet made an authenticated RPC")
	fs.IntVar(&c.MaxConnectionsPerPeer, "max-connections-per-peer", c.MaxConnectionsPerPeer, "control connections of one peer (an IPv4 address, an IPv6 /64, a uid on a UNIX socket)")
	fs.DurationVar(&c.AuthTimeout, "auth-timeout", c.AuthTimeout, "close a control connection that has made no authenticated RPC this long after it was accepted (with --token-file: an RPC with a valid token)")
	fs.IntVar(&c.MaxStreams, "max-streams", c.MaxStreams, "RPCs in progress on one control connection (HTTP/2 max concurrent streams); a client waits for a free one")
	fs.IntVar(&c.MaxHealthWatches, "max-health-watches", c.MaxHealthWatches, "health.Watch streams open on the agent (16 per connection); more answer RESOURCE_EXHAUSTED")
	fs.IntVar(&c.MaxSweepPace, "max-sweep-pace", c.MaxSweepPace, "first contacts to new addresses per second a Sweep may make (a sweep asking for more gets this), so a matrix does not flood the host's network with ARP or neighbour discovery")
	fs.StringVar(&c.SocketDir, "socket-dir", c.SocketDir, "the agent's socket directory, where the default policy lets callers put UNIX sockets (\"$SOCKETS\" in a policy's unix_paths); created mode 0700, or must be a directory only the agent's user may enter")
	fs.Func("label", "label the agent `KEY=VALUE` (repeatable): GetInfo reports it, and sockctl's discovered inventories (--inventory dns:NAME) carry it for selection", c.addLabel)
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "serve Prometheus metrics at http://ADDR/metrics (https with --tls-cert); off when empty. A non-loopback address needs --token-file or --client-ca (or --insecure), as --listen does")
	fs.StringVar(&c.PolicyFile, "policy", c.PolicyFile, "YAML policy: which networks, destinations, local ports and UNIX paths each caller may use, and limits (default: see policy.DefaultYAML)")
}

// MaxRecvLimit is the largest --max-recv-bytes: a Recv's data with its framing stays inside
// gRPC's default 4 MiB message, which clients receive by default.
const MaxRecvLimit = 4<<20 - 64<<10

// maxCount bounds the counts of the connection flags: more would exceed any process's open
// files, and the agent's memory long before.
const maxCount = 1 << 20

// The range of --auth-timeout: a TLS handshake and a first RPC need more than the minimum on
// a slow link; past the maximum, idle connections of callers without credentials hold file
// descriptors for nothing.
const (
	minAuthTimeout = 100 * time.Millisecond
	maxAuthTimeout = 10 * time.Minute
)

// minMessageBytes is the smallest --max-message-bytes: below it, ordinary requests with an
// address and options would not fit.
const minMessageBytes = 1024

// Validate checks the settings that need no file: durations, limits, the log's format and
// level, and which TLS flags go together. The error says which flag is wrong and what to give.
func (c Config) Validate() error {
	for _, rule := range []struct {
		bad bool
		msg string
	}{
		{c.IdleTimeout < 0, fmt.Sprintf("--idle-timeout %s: give a duration such as 10m, or 0 for never", c.IdleTimeout)},
		{c.DefaultTimeout <= 0, fmt.Sprintf("--default-timeout %s: give a positive duration such as 30s", c.DefaultTimeout)},
		{c.MaxRecvBytes <= 0 || c.MaxRecvBytes > MaxRecvLimit, fmt.Sprintf("--max-recv-bytes %d: give 1 to %d", c.MaxRecvBytes, MaxRecvLimit)},
		{c.MaxMessageBytes < minMessageBytes, fmt.Sprintf("--max-message-bytes %d: give at least %d", c.MaxMessageBytes, minMessageBytes)},
		{c.ShutdownTimeout <= 0, fmt.Sprintf("--shutdown-timeout %s: give a positive duration such as 10s", c.ShutdownTimeout)},
		{c.MaxSweepPace <= 0 || c.MaxSweepPace > maxCount, fmt.Sprintf("--max-sweep-pace %d: give 1 to %d first contacts per second", c.MaxSweepPace, maxCount)},
		{c.MaxConnections <= 0 || c.MaxConnections > maxCount, fmt.Sprintf("--max-connections %d: give 1 to %d", c.MaxConnections, maxCount)},
		{c.MaxUnauthenticated <= 0 || c.MaxUnauthenticated > c.MaxConnections, fmt.Sprintf("--max-unauthenticated %d: give 1 to --max-connections (%d)", c.MaxUnauthenticated, c.MaxConnections)},
		{c.MaxConnectionsPerPeer <= 0 || c.MaxConnectionsPerPeer > c.MaxConnections, fmt.Sprintf("--max-connections-per-peer %d: give 1 to --max-connections (%d)", c.MaxConnectionsPerPeer, c.MaxConnections)},
		{c.AuthTimeout < minAuthTimeout || c.AuthTimeout > maxAuthTimeout, fmt.Sprintf("--auth-timeout %s: give %s to %s, such as 10s", c.AuthTimeout, minAuthTimeout, maxAuthTimeout)},
		{c.MaxStreams <= 0 || c.MaxStreams > maxCount, fmt.Sprintf("--max-streams %d: give 1 to %d", c.MaxStreams, maxCount)},
		{c.MaxHealthWatches <= 0 || c.MaxHealthWatches > maxCount, fmt.Sprintf("--max-health-watches %d: give 1 to %d", c.MaxHealthWatches, maxCount)},
		{!filepath.IsAbs(c.SocketDir) || strings.ContainsRune(c.SocketDir, 0), fmt.Sprintf("--socket-dir %q: give an absolute path, such as %s", c.SocketDir, DefaultSocketDir())},
	} {
		if rule.bad {
			return errors.New(rule.msg)
		}
	}
	if _, err := c.handler(io.Discard); err != nil {
		return err
	}
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("give --tls-cert and --tls-key together")
	case c.ClientCA != "" && c.TLSCert == "":
		return errors.New("--client-ca needs TLS: give --tls-cert and --tls-key too")
	}
	return nil
}

// handler is the log handler --log-format and --log-level ask for, writing to w.
func (c Config) handler(w io.Writer) (slog.Handler, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", c.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", c.LogFormat)
}

// authenticated reports whether callers must prove who they are: a client certificate or a
// token.
func (c Config) authenticated() bool { return c.ClientCA != "" || c.TokenFile != "" }

// Setup is a validated Config with its files loaded: what the agent is built from and where
// it listens. Close it when the agent has stopped.
type Setup struct {
	// Agent configures the agent (Logger, limits, TLS, Tokens, Policy, AuditLogger); the
	// caller adds what it chooses itself, such as Reflection.
	Agent agent.Config
	// Logger is the daemon's log, as --log-format and --log-level ask.
	Logger *slog.Logger
	// Config is the settings Setup was built from.
	Config Config

	audit io.Closer // the --audit-log file, if one was opened
}

// Build validates c, makes the logger (writing to w, as the audit log "-" does), and loads
// the files c names. It refuses a non-loopback --listen without authentication when that is
// known without resolving a name; Setup.CheckBound decides for names once bound. Errors name
// the flag and say what to do; nothing is left open on error.
func (c Config) Build(w io.Writer) (*Setup, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	h, err := c.handler(w)
	if err != nil {
		return nil, err
	}
	s := &Setup{Config: c, Logger: slog.New(h)}
	s.Agent = agent.Config{
		Logger:          s.Logger,
		DefaultTimeout:  c.DefaultTimeout,
		MaxRecvBytes:    c.MaxRecvBytes,
		MaxMessageBytes: c.MaxMessageBytes,
		IdleTimeout:     c.IdleTimeout,

		MaxConnections:        c.MaxConnections,
		MaxUnauthenticated:    c.MaxUnauthenticated,
		MaxConnectionsPerPeer: c.MaxConnectionsPerPeer,
		AuthTimeout:           c.AuthTimeout,
		MaxStreams:            c.MaxStreams,
		MaxHealthWatches:      c.MaxHealthWatches,
		Labels:                c.Labels,
		MaxSweepPace:          c.MaxSweepPace,
	}
	if c.MetricsListen != "" {
		s.Agent.Metrics = metrics.New
	}
	if c.IdleTimeout == 0 {
		s.Agent.IdleTimeout = -1 // never: agent.Config reads 0 as its default
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	if !c.authenticated() && !c.Insecure && !loopbackOnly(c.Listen) {
		return nil, refusal(c.Listen, s.Agent.TLS != nil)
	}
	if c.MetricsListen != "" && !c.authenticated() && !c.Insecure && !loopbackOnly(c.MetricsListen) {
		return nil, metricsRefusal(c.MetricsListen)
	}
	if err := s.openAudit(w); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads the certificates, the tokens and the policy the settings name.
func (s *Setup) load() error {
	c := s.Config
	var err error
	if c.TLSCert != "" {
		if s.Agent.TLS, err = agent.ServerTLS(c.TLSCert, c.TLSKey, c.ClientCA); err != nil {
			return err
		}
	}
	if c.TokenFile != "" {
		if s.Agent.Tokens, err = agent.LoadTokens(c.TokenFile); err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		if fi, err := os.Stat(c.TokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows" {
			s.Logger.Warn("the token file is readable by others; chmod 600 it", "file", c.TokenFile, "mode", fi.Mode().Perm())
		}
	}
	if c.PolicyFile != "" {
		if s.Agent.Policy, err = policy.Load(c.PolicyFile); err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
	}
	return nil
}

// openAudit opens --audit-log for appending, readable by the owner only: the lines name
// callers and addresses.
func (s *Setup) openAudit(w io.Writer) error {
	switch s.Config.AuditLog {
	case "":
		return nil
	case "-":
	default:
		f, err := os.OpenFile(s.Config.AuditLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--audit-log: %w", err)
		}
		s.audit, w = f, f
	}
	s.Agent.AuditLogger = slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return nil
}

// MinSockets is the fewest sockets FitOpenFiles lets an agent start with: fewer do not hold
// the listeners and connections of one scenario on a host.
const MinSockets = 16

// FitOpenFiles makes the agent's socket limit (agent_limits.sockets) fit in soft open files,
// so that sockets never take the descriptors of control connections: an agent whose sockets
// used every file could accept no connection, and no caller could close anything. It keeps
// --max-connections and rlimit.OwnFiles for the agent's own files, lowers the policy's
// agent_limits.sockets to the rest when it is larger (logged; GetInfo reports the lowered
// limit), and refuses when fewer than MinSockets remain. Call it once, after the open-file
// limit is raised; soft 0 (unknown) changes nothing.
func (s *Setup) FitOpenFiles(soft uint64) error {
	pol := s.Agent.Policy
	if pol == nil {
		pol = policy.Default()
	}
	conns := s.Config.MaxConnections
	room, ok := rlimit.SocketRoom(soft, conns)
	if !ok || pol.MaxSockets <= room {
		return nil
	}
	if room < MinSockets {
		return fmt.Errorf("open-file limit %d leaves room for %d sockets beside --max-connections %d and %d files of the agent's own, fewer than %d:\n"+
			"raise the limit (ulimit -n, LimitNOFILE= in a systemd unit) to at least %d, or lower --max-connections",
			soft, max(room, 0), conns, rlimit.OwnFiles, MinSockets, conns+rlimit.OwnFiles+MinSockets)
	}
	fitted := *pol
	fitted.MaxSockets = room
	s.Agent.Policy = &fitted
	s.Logger.Warn("agent_limits.sockets lowered to fit the open-file limit, keeping files for control connections and the agent's own",
		"sockets", room, "policy_sockets", pol.MaxSockets, "open_files", soft, "max_connections", conns, "own_files", rlimit.OwnFiles)
	return nil
}

// Close closes the audit log file, if Build opened one.
func (s *Setup) Close() error {
	if s.audit == nil {
		return nil
	}
	return s.audit.Close()
}

// refusal says why the agent will not serve on addr without authentication and how to fix
// it; tls adds that TLS alone does not identify callers.
func refusal(addr string, tls bool) error {
	s := "refusing to serve on " + addr + " without authentication: anyone who can reach it\n" +
		"could open sockets on this host and reach every network it can.\n"
	if tls {
		s += "TLS without --client-ca encrypts but does not say who calls.\n"
	}
	return errors.New(s + "Fix: --tls-cert F --tls-key F --client-ca F (mTLS), or --token-file F (better with TLS too),\n" +
		"or --listen on loopback (127.0.0.1:7700), or --insecure to accept the risk.")
}

// addLabel is --label KEY=VALUE: checked as the agent will (contract.CheckLabel), once per key.
func (c *Config) addLabel(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return fmt.Errorf("%q: write KEY=VALUE, such as zone=a", kv)
	}
	if err := contract.CheckLabel(k, v); err != nil {
		return err
	}
	if _, dup := c.Labels[k]; dup {
		return fmt.Errorf("label %s given twice", k)
	}
	if len(c.Labels) >= contract.MaxLabels {
		return fmt.Errorf("more than %d labels", contract.MaxLabels)
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	c.Labels[k] = v
	return nil
}
