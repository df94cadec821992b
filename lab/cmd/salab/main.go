// Command salab builds and removes a sockagent test lab on one Linux machine: hosts as network
// namespaces on a bridge, a sockagent in each, and an inventory for `sockctl run --inventory`.
// See package lab and `salab --help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sockagent/sockagent/lab"
)

const usage = `salab builds a test lab of sockagent hosts on this Linux machine (as root, with iproute2).

Usage:
  salab up [-n 3] [--prefix salab] [--names a,b,...] [--subnet 10.77.0.0/24]
           [--labels 'h1-h50:role=web,h51-h100:role=db'] [--agent-bin PATH] [--port 7700]
           [--state-dir DIR] [-v]
  salab down [--prefix salab] [--state-dir DIR]
  salab cut HOST [--prefix salab]      set HOST's link down at the bridge (a partition)
  salab heal HOST [--prefix salab]     set it up again
  salab inventory [--prefix salab]     print the running lab's inventory
  salab list                           print the prefixes of the labs that exist

What "up" creates (defaults: prefix salab, 3 hosts, subnet 10.77.0.0/24):
  - a bridge salab-br in the root namespace, with address 10.77.0.1/24;
  - per host N: a network namespace salab-hN with lo up and eth0 = 10.77.0.(N+1)/24, joined
    to the bridge by a veth pair whose root end is the link salab-hN (no default route: the
    hosts reach each other and the root namespace, nothing else);
  - static neighbour entries (ip neigh ... nud permanent, fixed MACs 02:5a:IP) for every lab
    address in every namespace and on the bridge: no ARP at all, so a burst of first contacts
    across a hundred hosts cannot overflow the kernel's backlog and lose packets;
  - a sockagent in each namespace: ip netns exec salab-hN sockagent --listen 10.77.0.(N+1):7700
    --log-format json, detached, logging to STATE/hN.log;
  - the state directory STATE = /run/salab/PREFIX (as root; else $TMPDIR/salab/PREFIX):
    state.json (names, addresses, pids), inventory.yaml, the logs.
"up" first removes what a lab of the same prefix left, waits until every agent answers over
the bridge and each host reaches the next through it (a firewall that filters bridged traffic
fails "up" with a hint), and prints the inventory on stdout (progress goes to stderr):

  # salab salab: 3 hosts
  agents:
    h1: 10.77.0.2:7700
    h2: 10.77.0.3:7700
    h3: 10.77.0.4:7700

With --labels 'h1-h2:role=web,h3:role=db' the entries carry labels, which sockctl matrix
selects by: h3: {address: 10.77.0.4:7700, labels: {role: db}}.

The agent: --agent-bin PATH; without it, salab builds sockagent from the source tree it is
run in (go build ./agent/cmd/sockagent into STATE), or else takes sockagent from PATH.

Using the inventory: a scenario's agents are overridden by name, so either name the hosts
after the scenario's agents (salab up --names server,client), or map them with --agent:
  go run ./lab/cmd/salab up > /tmp/lab.yaml
  sockctl run my-scenario.yaml --inventory /tmp/lab.yaml          # agents named h1, h2, h3
  sockctl run examples/hello-tcp.yaml --agent server=10.77.0.2:7700 --agent client=10.77.0.3:7700
Host names in cut/heal are inventory names (h2) or namespaces (salab-h2).

Clean up: salab down [--prefix P]. It stops the agents and deletes the namespaces, veths and
bridge of that prefix, found by name, so it also works after a crash or a half-made lab (no
state file needed); running it twice is fine.

Exit status: 0 done; 1 failed; 2 bad flags or arguments.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a bad command line (exit 2).
// attachAgents makes the agents of `up` die with this process (lab.Config.Attached): the tests
// set it, since they run salab in-process and a crashed test must leave no agent behind.
var attachAgents bool

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "up":
		err = up(ctx, rest, stdout, stderr)
	case "down":
		err = down(rest, stdout, stderr)
	case "cut", "heal":
		err = cutHeal(cmd, rest, stdout, stderr)
	case "inventory":
		err = inventory(rest, stdout, stderr)
	case "list":
		err = list(rest, stdout, stderr)
	default:
		err = usagef("unknown command %q (up, down, cut, heal, inventory, list; see salab --help)", cmd)
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "salab: %s\n", ue.msg)
		return 2
	}
	fmt.Fprintf(stderr, "salab: %v\n", err)
	return 1
}

// common are the flags every command takes.
type common struct {
	prefix, stateDir string
	verbose          bool
}

func newFlags(name string, stdout, stderr io.Writer, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet("salab "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stdout, usage)
		fmt.Fprintf(stdout, "\nFlags of %s:\n", name)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	fs.StringVar(&c.prefix, "prefix", lab.DefaultPrefix, "`NAME` of the lab: namespaces NAME-h1..., links, state directory")
	fs.StringVar(&c.stateDir, "state-dir", "", "state directory `DIR` (default /run/salab/PREFIX as root, else $TMPDIR/salab/PREFIX)")
	fs.BoolVar(&c.verbose, "v", false, "also log every ip command")
	return fs
}

// parse parses flags and positional arguments in any order; it returns the positionals.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for range len(args) + 1 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return pos, nil
}

// parseNone parses the flags of command name and refuses positional arguments.
func parseNone(fs *flag.FlagSet, name string, args []string) error {
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("%s: unexpected argument %q", name, pos[0])
	}
	return nil
}

func logger(w io.Writer, c common) *slog.Logger {
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func up(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		c        common
		n        int
		names    string
		subnet   string
		agentBin string
		port     int
		agentArg string
		labels   string
	)
	fs := newFlags("up", stdout, stderr, &c)
	fs.IntVar(&n, "n", lab.DefaultHosts, "number of hosts")
	fs.StringVar(&names, "names", "", "inventory names of the hosts, comma-separated (default h1,h2,...); sets -n")
	fs.StringVar(&subnet, "subnet", lab.DefaultSubnet.String(), "IPv4 `CIDR` of the lab: bridge .1, hosts .2, .3, ...")
	fs.StringVar(&agentBin, "agent-bin", "", "sockagent binary `PATH` (default: built from this source tree, else from PATH)")
	fs.IntVar(&port, "port", lab.DefaultAgentPort, "port every agent serves on")
	fs.StringVar(&labels, "labels", "", "label hosts in the inventory: comma-separated `HOSTS:KEY=VALUE`, HOSTS a name, a range (h1-h50) or *, e.g. 'h1-h50:role=web,h51-h100:role=db'")
	fs.StringVar(&agentArg, "agent-args", "", "extra sockagent flags, space-separated (e.g. \"--log-level debug\")")
	if err := parseNone(fs, "up", args); err != nil {
		return err
	}
	if n < 1 {
		return usagef("-n %d: give 1 or more hosts", n)
	}
	sn, err := netip.ParsePrefix(subnet)
	if err != nil {
		return usagef("--subnet %q: give a CIDR such as 10.77.0.0/24", subnet)
	}
	cfg := lab.Config{Prefix: c.prefix, Hosts: n, Subnet: sn, AgentBin: agentBin, AgentPort: port,
		StateDir: c.stateDir, Logger: logger(stderr, c), AgentArgs: strings.Fields(agentArg), Attached: attachAgents}
	if names != "" {
		cfg.Names = strings.Split(names, ",")
		cfg.Hosts = len(cfg.Names)
	}
	if err := lab.CheckPrefix(cfg.Prefix); err != nil {
		return usageError{err.Error()}
	}
	if labels != "" {
		hosts := cfg.Names
		for i := 1; len(cfg.Names) == 0 && i <= cfg.Hosts; i++ {
			hosts = append(hosts, fmt.Sprintf("h%d", i))
		}
		if cfg.Labels, err = lab.ParseLabels(labels, hosts); err != nil {
			return usageError{err.Error()}
		}
	}
	l, err := lab.Up(ctx, cfg)
	if errors.Is(err, lab.ErrBadConfig) {
		return usageError{err.Error()}
	}
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, l.Inventory())
	fmt.Fprintf(stderr, "lab %s is up; state and logs in %s; remove it with: salab down --prefix %s\n", l.Prefix, l.StateDir, l.Prefix)
	return nil
}

func down(args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlags("down", stdout, stderr, &c)
	if err := parseNone(fs, "down", args); err != nil {
		return err
	}
	if err := lab.CheckPrefix(c.prefix); err != nil {
		return usageError{err.Error()}
	}
	if err := lab.Teardown(c.prefix, c.stateDir, logger(stderr, c)); err != nil {
		return err
	}
	left, err := lab.Leftovers(c.prefix)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("down %s: still there: %s", c.prefix, strings.Join(left, ", "))
	}
	fmt.Fprintf(stderr, "lab %s is down\n", c.prefix)
	return nil
}

func open(c common) (*lab.Lab, error) {
	if err := lab.CheckPrefix(c.prefix); err != nil {
		return nil, usageError{err.Error()}
	}
	return lab.Open(c.prefix, c.stateDir)
}

func cutHeal(cmd string, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlags(cmd, stdout, stderr, &c)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("%s: give one HOST (e.g. salab %s h2)", cmd, cmd)
	}
	l, err := open(c)
	if err != nil {
		return err
	}
	l.SetLogger(logger(stderr, c))
	if _, ok := l.Host(pos[0]); !ok {
		return usagef("%s: lab %s has no host %q", cmd, c.prefix, pos[0])
	}
	if cmd == "cut" {
		return l.Cut(pos[0])
	}
	return l.Heal(pos[0])
}

func inventory(args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlags("inventory", stdout, stderr, &c)
	if err := parseNone(fs, "inventory", args); err != nil {
		return err
	}
	l, err := open(c)
	if err != nil {
		return err
	}
	if err := l.CheckRoutes(); err != nil { // an inventory of a lab that is gone sends traffic astray
		return err
	}
	fmt.Fprint(stdout, l.Inventory())
	return nil
}

func list(args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlags("list", stdout, stderr, &c)
	if err := parseNone(fs, "list", args); err != nil {
		return err
	}
	labs, err := lab.Labs()
	if err != nil {
		return err
	}
	for _, p := range labs {
		fmt.Fprintln(stdout, p)
	}
	return nil
}
