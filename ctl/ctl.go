// Package ctl is sockctl, the command-line client of sockagent: one subcommand per RPC of
// sockagent.v1 (listen, bind, dial, accept, send, recv, sendto, recvfrom, shutdown, close, ls,
// get, info), netcat through an agent (attach, connect), measurements (serve, probe,
// throughput), scenarios (run, validate), a lab PKI (pki) and a demo, with table or JSON
// output and exit codes a script can act on.
//
// Main is the whole program; ctl/cmd/sockctl only wires it to the process. Every call builds
// its own command tree and holds no package-level state, so Main may run concurrently. The
// connection to the agents is package ctl/client's, and scenarios run in ctl/runner; this
// package is the command line over them: one file per command group, and output.go, the
// only printer.
package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/tracing"
	"github.com/sockagent/sockagent/ctl/client"
	"github.com/spf13/cobra"
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
	// ExitBrokenPipe means standard output was closed by its reader (sockctl ... | head):
	// sockctl cleaned up and printed nothing more. It is 128 + SIGPIPE, the status a shell
	// shows for a process SIGPIPE ended; the main ends the process by that signal.
	ExitBrokenPipe = 141
)

// envAgent names the environment variable that sets the agent when --agent is not given.
const envAgent = "SOCKCTL_AGENT"

// defaultAgent is the agent address used when neither --agent nor SOCKCTL_AGENT is set: the
// UNIX socket a sockagent started with no flags by the same user serves on.
var defaultAgent = contract.DefaultAgent()

// defaultTimeout is the default RPC deadline (--timeout). It is longer than the agent's own
// default timeout (30s) so that a blocking call without --wait ends with the agent's TIMEOUT.
const defaultTimeout = time.Minute

// Main runs sockctl with args (without the program name), reading data from stdin, writing
// results to stdout and diagnostics to stderr, and returns the process exit code: ExitOK,
// ExitFailure, ExitUsage, ExitUnreachable or ExitBrokenPipe. Cancelling ctx cancels the RPC
// in flight, and the commands that opened sockets for as long as they run close them before Main returns.
// With the OTLP variables set (agent/tracing), the command's RPCs and a run's steps are traced,
// and the spans are sent before Main returns.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	tr, err := tracing.Setup(ctx, "sockctl", contract.ReadBuild().Version)
	if err != nil {
		fmt.Fprintf(stderr, "sockctl: traces off: %v\n", err)
	}
	code := run(ctx, args, os.Getenv, stdin, stdout, stderr)
	// An unreachable collector must not hold the command's exit.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := tr.Shutdown(fctx); err != nil {
		fmt.Fprintf(stderr, "sockctl: traces not all sent: %v\n", err)
	}
	return code
}

// run is Main with the environment lookup passed in, so tests need not change the process
// environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runBuild(ctx, contract.ReadBuild(), args, getenv, stdin, stdout, stderr)
}

// runBuild is run for a sockctl of build, so tests can play other versions.
func runBuild(ctx context.Context, build contract.Build, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	a := &app{getenv: getenv, stdin: stdin, out: &writer{stdout: stdout, stderr: stderr, tty: isTerminal(stdout)}, build: build}
	root := a.newRootCommand(args)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, syscall.EPIPE) { // nobody reads stdout any more: nothing to say
		return ExitBrokenPipe
	}
	var bi *badInput
	if errors.As(err, &bi) {
		a.out.errorf("%v\n", err)
		return ExitUsage
	}
	var pe *partial
	if errors.As(err, &pe) {
		a.out.errorf("sockctl: %v\n", err)
		return ExitUnreachable
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

// app is one run of sockctl: its inputs, outputs and global flags.
type app struct {
	getenv func(string) string
	stdin  io.Reader
	out    *writer
	build  contract.Build // sockctl's own version

	agentFlag    string
	agentChanged bool
	output       outputFormat
	timeout      time.Duration
	session      string         // --session: the session the sockets a command opens join
	inventory    string         // --inventory: names for --agent
	dial         client.Options // --tls --ca --cert --key --server-name --token-file
	dnsServer    string         // --dns-server: for --inventory dns:NAME
}

// dialOptions are the credentials of the global flags; --token-file defaults to
// $SOCKCTL_TOKEN_FILE.
func (a *app) dialOptions() client.Options {
	o := a.dial
	if o.TokenFile == "" {
		o.TokenFile = a.getenv(envTokenFile)
	}
	return o
}

// agentAddr is --agent if given, else $SOCKCTL_AGENT if set, else the default.
func (a *app) agentAddr() string {
	if !a.agentChanged {
		if env := a.getenv(envAgent); env != "" {
			return env
		}
	}
	return a.agentFlag
}

// setAgent makes addr, given as a command's AGENT argument, the agent of this invocation. It
// is a usage error beside an --agent that names another.
func (a *app) setAgent(addr string) error {
	if a.agentChanged && a.agentFlag != addr {
		return usagef("agent %s given twice: as AGENT and as --agent %s; give one", addr, a.agentFlag)
	}
	if addr == "" {
		return usagef("AGENT is empty: give HOST:PORT or unix:PATH")
	}
	a.agentFlag, a.agentChanged = addr, true
	return a.applyInventory()
}

const rootLong = `sockctl drives real OS sockets on a sockagent daemon: one command per RPC of
sockagent.v1. Each command makes one call to one agent and prints the result.

A TCP exchange, the textbook way. The agent chooses socket ids (s3fa9c1-1,
s3fa9c1-2, ...: the digits change at every agent start); LISTENER, CLIENT and SERVER below
stand for the ids that listen, dial and accept print.

  sockctl listen tcp 127.0.0.1:9000    # socket, bind, listen: prints the listener -> LISTENER
  sockctl accept LISTENER --wait 1m &  # accept: blocks until a peer connects -> SERVER
  sockctl dial tcp 127.0.0.1:9000      # connect -> CLIENT
  sockctl send CLIENT 'Hello, World!'  # sendall
  sockctl recv SERVER                  # recv: prints Hello, World!
  sockctl send SERVER 'Hi!'            # and back: 'recv CLIENT' prints Hi!
  sockctl close CLIENT                 # close: now 'recv SERVER' says EOF
  sockctl close SERVER
  sockctl close LISTENER
  sockctl ls                           # what is still open

UDP: 'bind udp ADDR' for each end, then 'sendto' and 'recvfrom'.

Moving and measuring bytes: 'connect tcp HOST:PORT < file' is netcat through the agent
(attach joins an existing socket); 'serve ID echo|discard|source' makes the agent itself a
peer; 'probe' times connects or echo round trips and 'throughput' moves bytes to a discard
(or from a source), socket to socket on the agent's host, never through gRPC.

Blocking: dial, accept, send, recv, sendto and recvfrom wait on the network for at most
their own timeout (--wait, --connect-timeout; 0 = the agent's default) and never past the
RPC deadline (--timeout), which is raised to that wait plus 5s when it would be shorter.
The other commands do not block.

Output: -o table (default) prints a line per socket, and the raw received bytes for recv
and recvfrom; -o json prints the whole response as protojson; -o id prints only the ids of
the sockets (or sessions) a command prints, one a line, for scripts:

  id=$(sockctl -o id dial tcp 127.0.0.1:9000)

Security: an agent serving TLS wants --ca FILE (the CA that signed its certificate; --tls
alone trusts the system's CAs), an agent requiring client certificates (mTLS) also --cert
FILE --key FILE, and one requiring tokens --token-file FILE (or $SOCKCTL_TOKEN_FILE): its
first token, NAME:SECRET or SECRET, goes as 'authorization: Bearer SECRET'. A token is sent
in clear text only to an agent on this host (loopback or unix:); to any other, TLS is
required. --server-name NAME verifies the agent's certificate for NAME instead of the host
dialled. 'sockctl pki init' makes a CA and certificates for a lab.

Several agents at once: ls, info and sessions ls take --inventory, repeated --agent and
--select role=web, and print one table with an AGENT column first:

  sockctl ls --inventory lab.yaml --select role=web

Exit status: 0 success; 1 the operation failed (the agent's reason, such as
CONNECTION_REFUSED, is printed on stderr) or the agent could not be reached ("cannot reach
agent"); 2 usage error (unknown command or flag, wrong arguments); 3 some agents of several
(ls, info, sessions ls) did not answer.`

// exitHelp ends every command's help.
const exitHelp = `Exit status: 0 done; 1 the call failed (stderr says why, with the agent's reason such as
UNKNOWN_SOCKET or TIMEOUT) or the agent could not be reached; 2 usage error.`

// newRootCommand builds a fresh command tree bound to a.
// commandMaker is one of sockctl's commands, by the names it answers to (its name first, then
// its aliases), made when needed.
type commandMaker struct {
	names []string
	make  func() *cobra.Command
	whole bool // it needs every command in the tree (completion writes scripts for them all)
	// quick: it makes its calls and holds nothing open while it runs (see Quick).
	quick bool
}

// commandMakers are sockctl's commands, in the order help lists them.
func (a *app) commandMakers() []commandMaker {
	return []commandMaker{
		{names: []string{"listen"}, make: a.listenCommand}, // --accept --attach holds its sockets
		{names: []string{"bind"}, make: a.bindCommand, quick: true},
		{names: []string{"dial"}, make: a.dialCommand, quick: true},
		{names: []string{"accept"}, make: a.acceptCommand, quick: true},
		{names: []string{"send"}, make: a.sendCommand, quick: true},
		{names: []string{"recv"}, make: a.recvCommand, quick: true},
		{names: []string{"sendto"}, make: a.sendToCommand, quick: true},
		{names: []string{"recvfrom"}, make: a.recvFromCommand, quick: true},
		{names: []string{"shutdown"}, make: a.shutdownCommand, quick: true},
		{names: []string{"close"}, make: a.closeCommand, quick: true},
		{names: []string{"ls", "list"}, make: a.lsCommand, quick: true},
		{names: []string{"get"}, make: a.getCommand, quick: true},
		{names: []string{"info"}, make: a.infoCommand, quick: true},
		{names: []string{"serve"}, make: a.serveCommand, quick: true},
		{names: []string{"toxics"}, make: a.toxicsCommand, quick: true},
		{names: []string{"probe"}, make: a.probeCommand, quick: true},
		{names: []string{"throughput"}, make: a.throughputCommand},
		{names: []string{"demo"}, make: a.demoCommand},
		{names: []string{"run"}, make: a.runCommand},
		{names: []string{"matrix"}, make: a.matrixCommand},
		{names: []string{"validate"}, make: a.validateCommand, quick: true},
		{names: []string{"pki"}, make: a.pkiCommand}, // writes key files: not cut off mid-way
		{names: []string{"attach"}, make: a.attachCommand},
		{names: []string{"connect"}, make: a.connectCommand},
		{names: []string{"version"}, make: a.versionCommand, quick: true},
		{names: []string{"setopt"}, make: a.setoptCommand, quick: true},
		{names: []string{"events"}, make: a.eventsCommand},
		{names: []string{"discover"}, make: a.discoverCommand},
		{names: []string{"sessions"}, make: a.sessionsCommand},
		{names: []string{"completion"}, make: a.completionCommand, whole: true, quick: true},
	}
}

// Quick reports whether the command line args (without the program's name) runs a command
// that makes its calls and holds nothing open while it runs: info, ls, get, send, recv, dial,
// close... Such a command need not catch signals: ended by one at any moment, it leaves
// nothing behind, as the agent ends a call whose connection closes. Catching them costs the
// Go runtime a thread and a round trip to it per signal (~0.3 ms, a tenth of such a command).
// Quick errs on the side of no: a line naming any other command, even as a flag's value, is
// not quick.
func Quick(args []string) bool {
	quick := false
	for _, m := range (&app{}).commandMakers() {
		if slices.ContainsFunc(m.names, func(n string) bool { return slices.Contains(args, n) }) {
			if !m.quick {
				return false
			}
			quick = true
		}
	}
	return quick
}

// addCommands adds to root the command args names, found as cobra finds it (on stand-ins that
// carry only the names), or every command when args name none (help, a mistyped name, no
// command: what lists or suggests them) or one that needs them all. Making the whole tree
// (30 commands, their flags and their defaults' text) was ~4% of a one-shot command's CPU.
func (a *app) addCommands(root *cobra.Command, args []string) {
	makers := a.commandMakers()
	stand := make([]*cobra.Command, len(makers))
	for i, m := range makers {
		stand[i] = &cobra.Command{Use: m.names[0], Aliases: m.names[1:], Run: func(*cobra.Command, []string) {}}
	}
	root.AddCommand(stand...)
	found, _, err := root.Find(args)
	root.RemoveCommand(stand...)
	if i := slices.Index(stand, found); err == nil && i >= 0 && !makers[i].whole {
		root.AddCommand(makers[i].make())
		return
	}
	for _, m := range makers {
		root.AddCommand(m.make())
	}
}

// newRootCommand is sockctl's command tree for the command line args (see addCommands).
func (a *app) newRootCommand(args []string) *cobra.Command {
	root := &cobra.Command{
		Use:           "sockctl",
		Short:         "Drive the sockets of a sockagent daemon",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Without a command, sockctl names the commands and exits 2.
		RunE: func(cmd *cobra.Command, _ []string) error {
			var names []string
			for _, c := range cmd.Commands() {
				if c.IsAvailableCommand() && c.Name() != "help" {
					names = append(names, c.Name())
				}
			}
			return usagef("no command given; commands: %s", strings.Join(names, " "))
		},
		Example: `  sockctl dial tcp 127.0.0.1:9000
  sockctl --agent 10.77.0.2:7700 ls
  sockctl --inventory lab.yaml --agent server info    # an agent by its inventory name
  id=$(sockctl -o id listen tcp 127.0.0.1:0)
  source <(sockctl completion bash)`,
		// completion is sockctl's own command, with examples and the three shells it tests.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })

	a.output = outputTable
	f := root.PersistentFlags()
	f.StringVar(&a.agentFlag, "agent", defaultAgent, "agent `ADDRESS`, HOST:PORT or unix:PATH; when not given, $"+envAgent+" if set")
	f.VarP(&a.output, "output", "o", "output format: table, json, or id (only the ids of the sockets or sessions printed, one a line)")
	f.StringVar(&a.inventory, "inventory", "", "YAML `FILE` of agents by name (what 'salab up' prints): --agent NAME then means its address and credentials; when not given, $"+envInventory+" if set")
	f.StringVar(&a.session, "session", "", "open sockets in session `ID` ('sockctl sessions open'); when not given, $"+envSession+" if set")
	f.DurationVar(&a.timeout, "timeout", defaultTimeout, "deadline of the RPC, 0 = none; raised to --wait/--connect-timeout + 5s when shorter")
	f.BoolVar(&a.dial.TLS, "tls", false, "connect with TLS, verifying the agent's certificate against the system's CAs (implied by --ca, --cert, --server-name)")
	f.StringVar(&a.dial.CA, "ca", "", "connect with TLS, verifying the agent's certificate with the CA certificate(s) in `FILE` (PEM)")
	f.StringVar(&a.dial.Cert, "cert", "", "client certificate `FILE` (PEM) for an agent that requires one (mTLS); needs --key")
	f.StringVar(&a.dial.Key, "key", "", "private key `FILE` (PEM) of --cert")
	f.StringVar(&a.dial.ServerName, "server-name", "", "`NAME` the agent's certificate must carry (default: the host of --agent)")
	f.StringVar(&a.dnsServer, "dns-server", "", "resolve --inventory dns:NAME and dns+srv:NAME with the DNS server at `HOST:PORT` instead of the system's resolver")
	f.StringVar(&a.dial.TokenFile, "token-file", "", "send the first token in `FILE` (NAME:SECRET or SECRET) as 'authorization: Bearer SECRET'; when not given, $"+envTokenFile+" if set")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := a.resolveAgent(cmd); err != nil {
			return err
		}
		if a.agentAddr() == "" {
			return usagef("--agent is empty")
		}
		if a.timeout < 0 {
			return usagef("--timeout must not be negative")
		}
		if err := checkOutput(cmd, a.output); err != nil {
			return err
		}
		return a.dial.Check()
	}

	a.addCommands(root, args)
	a.registerCompletions(root)
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			c.Example = "  sockctl help dial\n  sockctl help sessions open"
		}
	}
	for _, c := range root.Commands() {
		if !strings.Contains(c.Long, "Exit status:") { // demo, run, validate and pki say their own
			c.Long += "\n\n" + exitHelp
		}
	}
	return root
}

// args returns an argument validator for between min and len(names) arguments, named in the
// error message.
func args(min int, names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(names) == 0 && len(args) > 0 {
			return usagef("takes no arguments, got %d", len(args))
		}
		if len(args) < min || len(args) > len(names) {
			return usagef("expected %s, got %d argument%s", strings.Join(names, " "), len(args), plural(len(args)))
		}
		return nil
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
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
