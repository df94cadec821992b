// Package ctl is sockctl, the command-line client of sockagent: one subcommand per RPC of
// sockagent.v1 (listen, bind, dial, accept, send, recv, sendto, recvfrom, shutdown, close, ls,
// get, info), with table or JSON output and exit codes a script can act on.
//
// Main is the whole program; ctl/cmd/sockctl only wires it to the process. Every call builds
// its own command tree and holds no package-level state, so Main may run concurrently.
package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Exit codes returned by Main.
const (
	// ExitOK means the command succeeded.
	ExitOK = 0
	// ExitFailure means the operation failed: the agent returned an error, the agent could
	// not be reached, or a local input (such as --file) could not be read.
	ExitFailure = 1
	// ExitUsage means the command line was wrong: unknown command or flag, wrong number of
	// arguments, or a value that sockctl rejects before calling the agent.
	ExitUsage = 2
)

// envAgent names the environment variable that sets the agent when --agent is not given.
const envAgent = "SOCKCTL_AGENT"

// defaultAgent is the agent address used when neither --agent nor SOCKCTL_AGENT is set.
const defaultAgent = "127.0.0.1:7700"

// defaultTimeout is the default RPC deadline (--timeout). It is longer than the agent's own
// default timeout (30s) so that a blocking call without --wait ends with the agent's TIMEOUT.
const defaultTimeout = time.Minute

// Main runs sockctl with args (without the program name), reading data from stdin, writing
// results to stdout and diagnostics to stderr, and returns the process exit code: ExitOK,
// ExitFailure or ExitUsage. Cancelling ctx cancels the RPC in flight.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(ctx, args, os.Getenv, stdin, stdout, stderr)
}

// run is Main with the environment lookup passed in, so tests need not change the process
// environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	a := &app{getenv: getenv, stdin: stdin, out: &writer{stdout: stdout, stderr: stderr}}
	root := a.newRootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var bi *badInput
	if errors.As(err, &bi) {
		a.out.errorf("%v\n", err)
		return ExitUsage
	}
	var fe *failure
	if errors.As(err, &fe) {
		a.out.errorf("sockctl: %v\n", err)
		return ExitFailure
	}
	// Anything else is a usage error: ours (usageError) or cobra's own (unknown command, bad
	// flag, wrong argument count).
	path := "sockctl"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	a.out.errorf("sockctl: %v\nRun '%s --help' for usage.\n", err, path)
	return ExitUsage
}

// failure is an error that makes sockctl exit with ExitFailure.
type failure struct {
	err error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// failed marks err as an operation failure (exit 1).
func failed(err error) error { return &failure{err: err} }

// usageError is an error in the command line found by sockctl itself (exit 2).
type usageError struct {
	err error
}

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

// usagef returns a usage error (exit 2).
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// badInput is an input file that is wrong (exit 2); its message says where and why, so no
// usage hint follows it.
type badInput struct {
	err error
}

func (b *badInput) Error() string { return b.err.Error() }
func (b *badInput) Unwrap() error { return b.err }
