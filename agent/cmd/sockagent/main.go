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
		fmt.Fprintln(stdout, agent.Version)
		return 0
	}
	switch {
	case *defTimeout <= 0:
		fmt.Fprintf(stderr, "sockagent: --default-timeout %s: give a positive duration such as 30s\n", *defTimeout)
		return 2
	case *maxRecv <= 0 || *maxRecv > maxRecvLimit:
		fmt.Fprintf(stderr, "sockagent: --max-recv-bytes %d: give 1 to %d\n", *maxRecv, maxRecvLimit)
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
