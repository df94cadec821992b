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
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("sockagent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:7700", "address to serve gRPC on: host:port, or unix:PATH for a UNIX socket")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	defTimeout := fs.Duration("default-timeout", agent.DefaultTimeout, "timeout of blocking calls that give none")
	maxRecv := fs.Int("max-recv-bytes", agent.DefaultMaxRecvBytes, "largest max_bytes/exact_bytes of one Recv")
	shutdownTimeout := fs.Duration("shutdown-timeout", 10*time.Second, "how long in-flight RPCs may finish after SIGINT/SIGTERM")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sockagent [flags]\n\nServes the sockagent.v1 gRPC API (SocketService, AgentService, health, reflection)\non --listen. Drive it with sockctl or grpcurl:\n\n  sockagent --listen 127.0.0.1:7700 &\n  grpcurl -plaintext 127.0.0.1:7700 list\n  sockctl info\n\nSIGINT/SIGTERM stop it gracefully, closing every socket.\n\nFlags:\n")
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
		fmt.Fprintln(os.Stdout, agent.Version)
		return 0
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

	a, err := agent.New(agent.Config{Logger: log, DefaultTimeout: *defTimeout, MaxRecvBytes: *maxRecv})
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	lis, err := listenOn(*listen)
	if err != nil {
		log.Error("cannot listen; is another agent running there? choose another --listen", "addr", *listen, "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- a.Serve(lis) }()
	select {
	case err := <-served:
		log.Error("serve", "err", err)
		return 1
	case <-ctx.Done():
	}
	stop() // a second signal now kills the process at once
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

// listenOn opens the control-plane listener: host:port, or unix:PATH (also unix:///PATH).
func listenOn(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		path = strings.TrimPrefix(path, "//")
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path) // a stale socket file from a crashed agent would block the bind
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}
