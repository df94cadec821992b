// Command sockctl drives the sockets of sockagent daemons from the command line; see
// package ctl, or run 'sockctl --help'.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"syscall"

	"github.com/sockagent/sockagent/agent/bufpool"
	"github.com/sockagent/sockagent/ctl"
)

// busy are the commands that keep every CPU: they run agents in-process (run, demo) or move
// bytes both ways at once (attach, connect, throughput). Every other command makes an RPC or
// two and exits, and on one P spends less CPU (no idle P's spinning threads), which matters
// for a start-up budget of a few milliseconds.
var busy = []string{"run", "demo", "attach", "connect", "throughput"}

func main() {
	if !slices.ContainsFunc(os.Args[1:], func(a string) bool { return slices.Contains(busy, a) }) {
		runtime.GOMAXPROCS(1)
	}
	bufpool.Install() // buffers sized for Attach's messages, and for in-process agents
	// Ctrl-C, kill and a closed terminal (SIGHUP) cancel the command, which closes what it
	// opened before it returns.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	// A closed standard output (sockctl ... | head) must not kill the process before it has
	// cleaned up: with SIGPIPE notified, the write fails with EPIPE instead, and Main returns
	// ExitBrokenPipe once it is done.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	code := ctl.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if code == ctl.ExitBrokenPipe {
		ctl.DieOfSIGPIPE()
	}
	os.Exit(code)
}
