// Command sockbench measures sockagent's performance figures against baselines measured in the
// same run and prints one table: figure, baseline, ratio, target, pass/fail. See package
// ctl/bench, or run 'go run ./ctl/cmd/sockbench --help' (.ci/bench installs iperf3 first).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sockagent/sockagent/agent/bufpool"
	"github.com/sockagent/sockagent/ctl/bench"
)

func main() {
	bufpool.Install() // the agent and clients measured are those sockagent and sockctl run
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
