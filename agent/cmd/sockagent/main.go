// Command sockagent is the sockagent daemon: it serves the sockagent.v1 gRPC API and opens,
// drives and closes real sockets on this host on request.
//
// The main reads flags into a daemon.Config, which validates them and loads the files they
// name, builds the agent, and handles signals; the rules of what may be served where live in
// package daemon.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/bufpool"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/daemon"
	"github.com/sockagent/sockagent/agent/reflection"
	"github.com/sockagent/sockagent/agent/tracing"
)

func main() {
	// gRPC reads its buffer pool when it builds a server: install ours first.
	bufpool.Install()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: sockagent [flags]

Serves the sockagent.v1 gRPC API (SocketService, AgentService, health, reflection)
on --listen. Drive it with sockctl or grpcurl:

  sockagent --listen 127.0.0.1:7700 &
  grpcurl -plaintext 127.0.0.1:7700 list
  sockctl info

Security: without flags it serves plaintext on loopback only. On any other address it
refuses to start unless callers must authenticate: --tls-cert/--tls-key with --client-ca
(mTLS), or --token-file (tokens; best over TLS); --insecure accepts the risk. The health
service needs no token (mTLS still applies). SIGHUP rereads --token-file. The default
policy allows UNIX sockets only in --socket-dir, a directory only the agent's user may enter.

SIGINT/SIGTERM stop it gracefully: new calls are refused (UNAVAILABLE), blocked calls
answer UNAVAILABLE with reason AGENT_STOPPING, every socket is closed, and RPCs still open
after --shutdown-timeout are cut off; exit status 0. A second SIGINT/SIGTERM exits at once,
status 1.

At start the soft open-file limit is raised to the hard limit (ulimit -Hn). The
policy's agent_limits.sockets is lowered to fit in it beside --max-connections and 64
files of the agent's own (logged, reported by GetInfo); when fewer than 16 sockets
would fit, sockagent refuses to start (exit status 2).

Flags:
`

// run is the whole command: exit status 0 stopped by a signal (or --help, --version), 1 the
// agent could not start or serve, 2 wrong flags or files, an address it must not serve on, or
// limits that do not fit in the open-file limit.
func run(args []string, stdout, stderr io.Writer) int {
	cfg := daemon.DefaultConfig()
	fs := flag.NewFlagSet("sockagent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.AddFlags(fs)
	version := fs.Bool("version", false, "print the version (module version, VCS revision and commit time, Go version, platform) and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
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
		fmt.Fprintln(stdout, "sockagent", contract.ReadBuild())
		return 0
	}
	s, err := cfg.Build(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sockagent: %v\n", err)
		return 2
	}
	defer s.Close()
	return serve(s, stderr)
}

// serve builds the agent, binds --listen and serves until a signal stops it.
func serve(s *daemon.Setup, stderr io.Writer) int {
	log := s.Logger
	before, soft, err := agent.RaiseOpenFileLimit()
	if err != nil {
		log.Warn("open-file limit not raised; the agent holds fewer sockets", "soft", before, "err", err)
		soft = before
	} else if soft != 0 {
		log.Info("open-file limit", "before", before, "after", soft)
	}
	if err := s.FitOpenFiles(soft); err != nil {
		fmt.Fprintf(stderr, "sockagent: %v\n", err)
		return 2
	}
	if err := s.MakeSocketDir(); err != nil {
		log.Error("cannot use the socket directory; choose another --socket-dir", "dir", s.Config.SocketDir, "err", err)
		return 1
	}
	tr, err := tracing.Setup(context.Background(), "sockagent", contract.ReadBuild().Version)
	if err != nil {
		log.Warn("traces off", "err", err)
	}
	defer flushTraces(tr, log)
	cfg := s.Agent
	cfg.Reflection = reflection.Register
	cfg.ServerOptions = append(cfg.ServerOptions, tracing.ServerOptions()...)
	a, err := agent.New(cfg)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	lis, err := s.Listen()
	if err != nil {
		log.Error("cannot listen; is another agent running there? choose another --listen", "addr", s.Config.Listen, "err", err)
		return 1
	}
	if err := s.CheckBound(lis.Addr()); err != nil {
		lis.Close()
		fmt.Fprintf(stderr, "sockagent: %v\n", err)
		return 2
	}
	s.Warn(lis.Addr())
	metrics, err := s.ServeMetrics(a)
	if err != nil {
		lis.Close()
		fmt.Fprintf(stderr, "sockagent: %v\n", err)
		return 2
	}
	code := serveUntilSignal(a, lis, s.Config.TokenFile, s.Config.ShutdownTimeout, log)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := metrics.Shutdown(ctx); err != nil {
		log.Warn("metrics server stopped with scrapes cut off", "err", err)
	}
	return code
}

// serveUntilSignal serves on lis until SIGINT or SIGTERM, rereading tokenFile (if any) on
// SIGHUP, then stops gracefully within shutdownTimeout; a second SIGINT or SIGTERM exits at
// once with status 1.
func serveUntilSignal(a *agent.Agent, lis net.Listener, tokenFile string, shutdownTimeout time.Duration, log *slog.Logger) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var hup chan os.Signal // nil without a token file: never ready
	if tokenFile != "" {
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
			reloadTokens(a, tokenFile, log)
		case <-ctx.Done():
			break wait
		}
	}
	// Listen for the second signal before the first one's handler goes, so none is lost.
	second := make(chan os.Signal, 1)
	signal.Notify(second, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(second)
	stop()
	go func() {
		s := <-second
		log.Error("second signal: exiting at once", "signal", s.String())
		os.Exit(1)
	}()
	log.Info("stopping", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		log.Warn("stopped with RPCs cut off", "err", err)
	}
	<-served
	log.Info("stopped")
	return 0
}

// reloadTokens rereads the token file (on SIGHUP); a file that fails to load keeps the old
// tokens, so a typo does not lock every caller out.
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

// flushTraces sends the spans still buffered, within a bound: an unreachable collector must
// not hold the agent's exit.
func flushTraces(tr *tracing.Tracing, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		log.Warn("traces not all sent", "err", err)
	}
}
