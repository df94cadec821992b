// Command sockctl drives the sockets of sockagent daemons from the command line; see
// package ctl, or run 'sockctl --help'.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sockagent/sockagent/agent/bufpool"
	"github.com/sockagent/sockagent/ctl"
	_ "github.com/sockagent/sockagent/ctl/cmd/sockctl/internal/oneproc" // one-shot commands on one P, from the start
)

func main() {
	bufpool.Install() // buffers sized for Attach's messages, and for in-process agents
	ctx := context.Background()
	if !ctl.Quick(os.Args[1:]) {
		// Ctrl-C, kill and a closed terminal (SIGHUP) cancel the command, which closes what it
		// opened before it returns. (Never stopped: the process exits next, and stopping costs
		// a round trip to the runtime's signal thread per signal.)
		ctx, _ = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
		// A closed standard output (sockctl ... | head) must not kill the process before it has
		// cleaned up: with SIGPIPE notified, the write fails with EPIPE instead, and Main returns
		// ExitBrokenPipe once it is done.
		signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	}
	code := ctl.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if code == ctl.ExitBrokenPipe {
		ctl.DieOfSIGPIPE()
	}
	os.Exit(code)
}
