// Command sockagent is the sockagent daemon: it serves the sockagent.v1 gRPC API and opens,
// drives and closes real sockets on this host on request.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/policy"
	"github.com/sockagent/sockagent/agent/reflect"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sockagent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:7700", "address to serve gRPC on: host:port, or unix:PATH for a UNIX socket")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	defTimeout := fs.Duration("default-timeout", agent.DefaultTimeout, "timeout of blocking calls that give none")
	maxRecv := fs.Int("max-recv-bytes", agent.DefaultMaxRecvBytes, "largest max_bytes/exact_bytes of one Recv")
	shutdownTimeout := fs.Duration("shutdown-timeout", 10*time.Second, "how long in-flight RPCs may finish after SIGINT/SIGTERM")
	maxMessage := fs.Int("max-message-bytes", agent.DefaultMaxMessageBytes, "largest request message; gRPC refuses a larger one with RESOURCE_EXHAUSTED \"received message larger than max\"")
	version := fs.Bool("version", false, "print the version and exit")
	tlsCert := fs.String("tls-cert", "", "serve TLS with this PEM certificate (chain); needs --tls-key")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	clientCA := fs.String("client-ca", "", "require client certificates signed by these PEM CAs (mTLS); needs --tls-cert")
	tokenFile := fs.String("token-file", "", "require \"authorization: Bearer TOKEN\" with a token of this file (NAME:SECRET per line); reread on SIGHUP")
	insecure := fs.Bool("insecure", false, "allow serving on a non-loopback address without --client-ca or --token-file (anyone who reaches it can open sockets here)")
	auditLog := fs.String("audit-log", "", "also write the RPCs that create, write to or close sockets to this file as JSON lines (- for stderr), whatever --log-level")
	idleTimeout := fs.Duration("idle-timeout", agent.DefaultIdleTimeout, "close a socket opened outside a session after this long without a call on it (0 = never)")
	policyFile := fs.String("policy", "", "YAML policy: which networks, destinations, local ports and UNIX paths each caller may use, and limits (default: see policy.DefaultYAML)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sockagent [flags]\n\nServes the sockagent.v1 gRPC API (SocketService, AgentService, health, reflection)\non --listen. Drive it with sockctl or grpcurl:\n\n  sockagent --listen 127.0.0.1:7700 &\n  grpcurl -plaintext 127.0.0.1:7700 list\n  sockctl info\n\nSecurity: without flags it serves plaintext on loopback only. On any other address it\nrefuses to start unless callers must authenticate: --tls-cert/--tls-key with --client-ca\n(mTLS), or --token-file (tokens; best over TLS); --insecure accepts the risk. The health\nservice needs no token (mTLS still applies). SIGHUP rereads --token-file.\n\nSIGINT/SIGTERM stop it gracefully: new calls are refused (UNAVAILABLE), blocked calls\nanswer UNAVAILABLE with reason AGENT_STOPPING, every socket is closed, and RPCs still open\nafter --shutdown-timeout are cut off; exit status 0. A second SIGINT/SIGTERM exits at once,\nstatus 1.\n\nAt start the soft open-file limit is raised to the hard limit (ulimit -Hn).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sockagent: unexpected argument %q (sockagent takes flags only; see --help)\n", fs.Arg(0))
		return 2
	}
	if *version {
		fmt.Fprintln(stdout, agent.Version)
		return 0
	}
	switch {
	case *idleTimeout < 0:
		fmt.Fprintf(stderr, "sockagent: --idle-timeout %s: give a duration such as 10m, or 0 for never\n", *idleTimeout)
		return 2
	case *defTimeout <= 0:
		fmt.Fprintf(stderr, "sockagent: --default-timeout %s: give a positive duration such as 30s\n", *defTimeout)
		return 2
	case *maxRecv <= 0 || *maxRecv > maxRecvLimit:
		fmt.Fprintf(stderr, "sockagent: --max-recv-bytes %d: give 1 to %d\n", *maxRecv, maxRecvLimit)
		return 2
	case *maxMessage < 1024:
		fmt.Fprintf(stderr, "sockagent: --max-message-bytes %d: give at least 1024\n", *maxMessage)
		return 2
	case *shutdownTimeout <= 0:
		fmt.Fprintf(stderr, "sockagent: --shutdown-timeout %s: give a positive duration such as 10s\n", *shutdownTimeout)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "sockagent: --log-level %q: use debug, info, warn or error\n", *logLevel)
		return 2
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch *logFormat {
	case "text":
		h = slog.NewTextHandler(stderr, hopts)
	case "json":
		h = slog.NewJSONHandler(stderr, hopts)
	default:
		fmt.Fprintf(stderr, "sockagent: --log-format %q: use text or json\n", *logFormat)
		return 2
	}
	log := slog.New(h)
	var err error

	idle := *idleTimeout
	if idle == 0 {
		idle = -1 // never; a zero Config.IdleTimeout means the default
	}
	cfg := agent.Config{Logger: log, DefaultTimeout: *defTimeout, MaxRecvBytes: *maxRecv, MaxMessageBytes: *maxMessage,
		Reflection: reflect.Register}
	cfg.IdleTimeout = idle
	switch {
	case (*tlsCert == "") != (*tlsKey == ""):
		fmt.Fprintf(stderr, "sockagent: give --tls-cert and --tls-key together\n")
		return 2
	case *clientCA != "" && *tlsCert == "":
		fmt.Fprintf(stderr, "sockagent: --client-ca needs TLS: give --tls-cert and --tls-key too\n")
		return 2
	}
	if *tlsCert != "" {
		if cfg.TLS, err = agent.ServerTLS(*tlsCert, *tlsKey, *clientCA); err != nil {
			fmt.Fprintf(stderr, "sockagent: %v\n", err)
			return 2
		}
	}
	if *tokenFile != "" {
		if cfg.Tokens, err = agent.LoadTokens(*tokenFile); err != nil {
			fmt.Fprintf(stderr, "sockagent: --token-file: %v\n", err)
			return 2
		}
		if fi, err := os.Stat(*tokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows" {
			log.Warn("the token file is readable by others; chmod 600 it", "file", *tokenFile, "mode", fi.Mode().Perm())
		}
	}
	if *policyFile != "" {
		if cfg.Policy, err = policy.Load(*policyFile); err != nil {
			fmt.Fprintf(stderr, "sockagent: --policy: %v\n", err)
			return 2
		}
	}
	authenticated := *clientCA != "" || *tokenFile != ""
	if !authenticated && !*insecure && !loopbackOnly(*listen) {
		fmt.Fprint(stderr, refuseMsg(*listen, cfg.TLS != nil))
		return 2
	}
	if *auditLog != "" {
		w := stderr
		if *auditLog != "-" {
			f, err := os.OpenFile(*auditLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err != nil {
				fmt.Fprintf(stderr, "sockagent: --audit-log: %v\n", err)
				return 2
			}
			defer f.Close()
			w = f
		}
		cfg.AuditLogger = slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}

	if before, after, err := agent.RaiseOpenFileLimit(); err != nil {
		log.Warn("open-file limit not raised; the agent holds fewer sockets", "soft", before, "err", err)
	} else if after != 0 {
		log.Info("open-file limit", "before", before, "after", after)
	}
	a, err := agent.New(cfg)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	lis, err := listenOn(*listen)
	if err != nil {
		log.Error("cannot listen; is another agent running there? choose another --listen", "addr", *listen, "err", err)
		return 1
	}
	if !authenticated && !*insecure && !isLoopback(lis.Addr()) {
		// A host name that resolved to a non-loopback address.
		lis.Close()
		fmt.Fprint(stderr, refuseMsg(*listen+" ("+lis.Addr().String()+")", cfg.TLS != nil))
		return 2
	}
	switch {
	case !authenticated:
		if *insecure {
			log.Warn("--insecure: serving without authentication; anyone who can reach this address can open and drive sockets on this host", "addr", lis.Addr().String())
		}
	case cfg.TLS == nil && !isLoopback(lis.Addr()):
		log.Warn("tokens travel in plaintext over the network; add --tls-cert and --tls-key", "addr", lis.Addr().String())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var hup chan os.Signal
	if *tokenFile != "" {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(lis) }()
wait:
	for {
		select {
		case err := <-served:
			log.Error("serve", "err", err)
			return 1
		case <-hup:
			reloadTokens(a, *tokenFile, log)
		case <-ctx.Done():
			break wait
		}
	}
	second := make(chan os.Signal, 1)
	signal.Notify(second, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(second)
	stop()
	go func() {
		s := <-second
		log.Error("second signal: exiting at once", "signal", s.String())
		os.Exit(1)
	}()
	log.Info("stopping", "timeout", *shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		log.Warn("stopped with RPCs cut off", "err", err)
	}
	<-served
	log.Info("stopped")
	return 0
}

// reloadTokens rereads the token file (on SIGHUP); a file that fails to load keeps the old
// tokens.
func reloadTokens(a *agent.Agent, path string, log *slog.Logger) {
	t, err := agent.LoadTokens(path)
	if err == nil {
		err = a.SetTokens(t)
	}
	if err != nil {
		log.Error("tokens not reloaded; the old ones stay in force", "err", err)
		return
	}
	log.Info("tokens reloaded", "file", path, "tokens", t.Len())
}

// refuseMsg says why the agent will not serve on addr and how to fix it.
func refuseMsg(addr string, tls bool) string {
	s := "sockagent: refusing to serve on " + addr + " without authentication: anyone who can reach it\n" +
		"could open sockets on this host and reach every network it can.\n"
	if tls {
		s += "TLS without --client-ca encrypts but does not say who calls.\n"
	}
	return s + "Fix: --tls-cert F --tls-key F --client-ca F (mTLS), or --token-file F (better with TLS too),\n" +
		"or --listen on loopback (127.0.0.1:7700), or --insecure to accept the risk.\n"
}

// loopbackOnly reports whether --listen addr names loopback or a UNIX socket without
// resolving anything: unix:..., 127.0.0.0/8, ::1. A host name is checked once bound
// (isLoopback); "" (all interfaces), 0.0.0.0 and :: are not loopback.
func loopbackOnly(addr string) bool {
	if strings.HasPrefix(addr, "unix:") {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true // not an address: listenOn fails and says so
	}
	if host == "" {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.WithZone("").Unmap().IsLoopback()
	}
	return true // a name: checked once bound
}

// isLoopback reports whether a bound listener address is a UNIX socket or on loopback.
func isLoopback(a net.Addr) bool {
	switch a := a.(type) {
	case *net.UnixAddr:
		return true
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	}
	return false
}

// maxRecvLimit keeps a Recv's data, with its framing, inside gRPC's default 4 MiB message.
const maxRecvLimit = 4<<20 - 64<<10

// listenOn opens the control-plane listener: host:port, or unix:PATH (also unix:///PATH).
func listenOn(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		path = strings.TrimPrefix(path, "//")
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			// A socket file left by a crashed agent would block the bind; one that answers
			// belongs to a live agent and is not ours to take.
			c, err := net.Dial("unix", path)
			if err == nil {
				c.Close()
				return nil, fmt.Errorf("%s: another process serves on this socket", path)
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				_ = os.Remove(path)
			}
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}
