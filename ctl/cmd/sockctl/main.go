// Command sockctl drives the sockets of sockagent daemons from the command line; see
// package ctl, or run 'sockctl --help'.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sockagent/sockagent/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := ctl.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
