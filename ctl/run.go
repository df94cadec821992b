package ctl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/sockagent/sockagent/ctl/client"
	"github.com/sockagent/sockagent/ctl/localagent"
	"github.com/sockagent/sockagent/ctl/matrix"
	"github.com/sockagent/sockagent/ctl/runner"
	"github.com/sockagent/sockagent/ctl/scenario"
)

const runLong = `Run executes a scenario file: ordered and parallel steps on named agents, each checked
against its expectations, and prints a report. Every socket the run opened is closed at
the end on every reachable agent, whatever happened (failure, timeout, Ctrl-C).

The file names its agents (name -> HOST:PORT, unix:PATH, or "local" for an agent started
in-process, so a file runs with no setup). --inventory FILE and --agent NAME=ADDR override
them, the flag last. Every agent must answer before the first step; unreachable agents are
reported by name and no step runs.

The global credential flags (--tls, --ca, --cert, --key, --server-name, --token-file)
apply to every agent but in-process ones. An inventory may give an agent its own, key by
key over the flags; relative file names are relative to the inventory's directory:

  agents:
    h1: 10.77.0.2:7700                     # an address: the flags' credentials
    h2:
      address: 10.77.0.3:7700
      labels: {role: db, zone: a}          # what matrices select agents by: {role: db}
      ca: pki/ca.pem                       # verify the agent with this CA (TLS)
      cert: pki/client.pem                 # client certificate and key (mTLS)
      key: pki/client-key.pem
      server_name: h2.lab                  # name to verify the certificate for
      token_file: h2.token                 # first token sent as Bearer
      tls: true                            # TLS even without ca (the system's CAs); false: plaintext

--agent NAME=ADDR changes an agent's address and keeps its inventory credentials.

Every run opens a session on each agent (--session-ttl, 30s) and keeps it alive; its sockets
live in it. At the end the run closes its sockets and the sessions; if sockctl is killed or
cut off, each agent closes the run's sockets once the lease runs out. Listen, bind, dial and
accept carry a request_id and are retried (3 tries, with backoff, within the step's
deadline) when the agent was briefly unreachable; other calls are never retried.

Measurement steps: serve runs echo, discard or source on a socket inside its agent; probe
and throughput measure from their agent to such a socket, and their expect compares the
figures: rtt_p99: "<= 2ms", bits_per_second: ">= 1G", loss: "<= 1%" (see
examples/perf.yaml). A probe none of whose attempts succeeded fails with their reason unless
expect judges the figures. A probe's deadline is (count + warmup) x max(timeout, interval)
plus 2s; a throughput step's its duration (10s when neither duration nor bytes is set)
plus 5s, or --step-timeout when only bytes bounds it.

A step whose on: is a label selector ({role: web}) fans out: it runs once on every agent
whose labels (the file's, or the inventory's for the agents it names) match, at most
--fanout-concurrency at once, and each run is reported as a step of its own, its index
followed by @AGENT ("3@h1"). One copy failing does not stop the others.

Each step has a deadline: its own timeout (the action's "timeout") or --step-timeout, plus
2s for the RPC. The first failed step stops the run (later steps are reported as skipped;
steps of the same parallel block are cancelled) unless --keep-going.

Reports: a table on stdout as steps end, closing with "N passed, N failed"; -o json prints
one JSON document instead; --junit FILE also writes JUnit XML (one testcase per step);
--html FILE a self-contained HTML page: a sequence diagram of the run (one lifeline per
agent, one arrow per step, hover and click for its detail), the step table and the summary
(docs/reports.md). On a terminal, a status line below the rows shows the elapsed time,
steps done out of the total, failures and the steps running; it is erased at the end.

Failure reasons: the agent's ErrorInfo reason (CONNECTION_REFUSED, TIMEOUT, ...), or
EXPECTATION_FAILED (the step did not do what expect says), AGENT_UNAVAILABLE (the agent
itself could not be reached), STEP_TIMEOUT (no answer within the step's deadline),
SCENARIO_ERROR (a reference that could not be resolved at run time).

Exit status: 0 every step passed; 1 a step failed, an agent was unreachable or the run was
interrupted; 2 the file or the flags are wrong (FILE:LINE:COL: message).`

func (a *app) runCommand() *cobra.Command {
	var (
		agents      []string
		inventory   string
		keepGoing   bool
		stepTimeout time.Duration
		sessionTTL  time.Duration
		junit       string
		fanout      int
		html        string
	)
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a scenario: steps across agents, with expectations, cleanup and reports",
		Long:  runLong,
		Example: `  sockctl run examples/hello-tcp.yaml
  sockctl run examples/fan-in.yaml --agent server=10.77.0.2:7700 --agent c1=10.77.0.3:7700
  sockctl run lab.yaml --inventory lab-inventory.yaml --junit report.xml
  sockctl run examples/refused.yaml -o json --keep-going --step-timeout 3s`,
		Args: args(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if stepTimeout <= 0 {
				return usagef("--step-timeout must be positive")
			}
			if sessionTTL < time.Second || sessionTTL > 24*time.Hour {
				return usagef("--session-ttl %s: give 1s up to 24h", sessionTTL)
			}
			if fanout < 1 || fanout > maxFanoutConcurrency {
				return usagef("--fanout-concurrency %d: give 1 up to %d", fanout, maxFanoutConcurrency)
			}
			f, err := loadScenario(args[0])
			if err != nil {
				return err
			}
			targets, err := agentTargets(f, inventory, agents, a.dialOptions(), a.loadInventory)
			if err != nil {
				return err
			}
			cfg := runner.Config{File: f, Agents: targets, StepTimeout: stepTimeout, KeepGoing: keepGoing, SessionTTL: sessionTTL,
				Getenv: a.getenv, StartLocal: localagent.StartHook, FanoutConcurrency: fanout}
			table := runner.NewTable(a.out.stdout, f.Steps)
			if a.output == outputTable {
				cfg.OnStep = table.Row
			}
			stopStatus := func() {}
			if a.output == outputTable && isTerminal(a.out.stdout) {
				status := runner.NewStatus(table, a.out.stdout, runner.CountReports(f), terminalWidth(a.out.stdout), time.Now)
				cfg.OnStep, cfg.OnStart = status.Row, status.Start
				stopStatus = status.Every(runner.StatusInterval)
			}
			rep := runner.Run(cmd.Context(), cfg)
			stopStatus()
			if html != "" {
				if err := saveReport(html, func(w io.Writer) error { return runner.WriteHTML(w, rep) }); err != nil {
					return failed(fmt.Errorf("write --html %s: %w", html, err))
				}
			}
			if junit != "" {
				if err := saveReport(junit, func(w io.Writer) error { return runner.WriteJUnit(w, rep) }); err != nil {
					return failed(fmt.Errorf("write --junit %s: %w", junit, err))
				}
			}
			if a.output == outputJSON {
				if err := runner.WriteJSON(a.out.stdout, rep); err != nil {
					return failed(err)
				}
			} else {
				table.Summary(rep)
			}
			switch {
			case len(rep.Unreachable) > 0:
				return failed(fmt.Errorf("run %s: agent(s) unreachable: %s; no step ran", f.Path, strings.Join(rep.Unreachable, ", ")))
			case rep.Interrupted:
				return failed(fmt.Errorf("run %s: interrupted", f.Path))
			case rep.Failed > 0:
				return failed(fmt.Errorf("run %s: %d of %d steps failed", f.Path, rep.Failed, len(rep.Steps)))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	// This --agent shadows the global one: here it is repeatable and names an agent.
	fl.StringArrayVar(&agents, "agent", nil, "set agent `NAME=ADDR` (HOST:PORT, unix:PATH or local); repeatable")
	fl.StringVar(&inventory, "inventory", "", "YAML `FILE` of agent addresses, labels and credentials: agents: {NAME: ADDR, NAME: {address: ADDR, labels: {role: web}, ca: FILE, ...}}")
	fl.BoolVar(&keepGoing, "keep-going", false, "run every step even after a failure")
	fl.DurationVar(&stepTimeout, "step-timeout", runner.DefaultStepTimeout, "deadline of a step that sets no timeout of its own")
	fl.DurationVar(&sessionTTL, "session-ttl", runner.DefaultSessionTTL, "lease of the run's session on each agent: if sockctl dies, the agents close its sockets this long after")
	fl.StringVar(&junit, "junit", "", "also write a JUnit XML report to `FILE`")
	fl.StringVar(&html, "html", "", "also write a self-contained HTML report (sequence diagram, step table) to `FILE`")
	fl.IntVar(&fanout, "fanout-concurrency", runner.DefaultFanoutConcurrency, "agents a fanned-out step (on: {role: web}) runs on at once")
	return cmd
}

// saveReport writes a report made by write to path, whole or not at all (nothing is written
// when write fails).
func saveReport(path string, write func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// maxFanoutConcurrency bounds --fanout-concurrency: each agent at once is a goroutine and a
// call in flight.
const maxFanoutConcurrency = 4096

func (a *app) validateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check scenario and matrix files without running them",
		Long: `Validate parses scenario files and checks them as run does before its first RPC:
unknown keys, unknown agents, aliases used before they exist, bad durations and numbers,
steps with two actions or none. A matrix file (one with services:) is checked as matrix
does: keys, services, verdicts, and selectors against the agents it declares. Problems are
printed as FILE:LINE:COL: message.

Exit status: 0 every file is valid; 2 a file is not (or cannot be read).`,
		Example: `  sockctl validate examples/*.yaml`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var bad []string
			for _, path := range args {
				if data, err := os.ReadFile(path); err == nil && matrix.IsMatrix(data) {
					line, err := validateMatrix(path, data)
					if err != nil {
						bad = append(bad, err.Error())
						continue
					}
					a.out.printf("%s\n", line)
					continue
				}
				f, err := loadScenario(path)
				if err != nil {
					bad = append(bad, err.Error())
					continue
				}
				a.out.printf("%s: ok: %d steps, %d agents\n", path, runner.CountReports(f), len(f.Agents))
			}
			if len(bad) > 0 {
				return &badInput{err: fmt.Errorf("%s", strings.Join(bad, "\n"))}
			}
			return nil
		},
	}
}

// loadScenario reads and validates a scenario file; problems are a badInput (exit 2).
func loadScenario(path string) (*scenario.File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &badInput{err: fmt.Errorf("%s: %w", path, err)}
	}
	f, err := scenario.Parse(path, data)
	if err != nil {
		return nil, &badInput{err: err}
	}
	return f, nil
}

// loadInventory reads and checks an inventory file; problems are a badInput (exit 2) that
// says where and what an entry may hold.
func loadInventory(path string) (inventoryFile, error) {
	var inv inventoryFile
	data, err := os.ReadFile(path)
	if err != nil {
		return inv, &badInput{err: fmt.Errorf("--inventory: %w", err)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var ee *entryError
	if err := dec.Decode(&inv); errors.As(err, &ee) {
		return inv, &badInput{err: fmt.Errorf("%s:%d:%d: %s", path, ee.line, ee.col, ee.msg)}
	} else if err != nil {
		return inv, &badInput{err: fmt.Errorf("--inventory %s: %v (want agents: {NAME: HOST:PORT, ...}, an entry may be {address: HOST:PORT, ca: FILE, cert: FILE, key: FILE, server_name: NAME, token_file: FILE, tls: BOOL})", path, err)}
	}
	return inv, nil
}

// inventoryFile is the YAML of --inventory (what `salab up` prints).
type inventoryFile struct {
	Agents map[string]inventoryEntry `yaml:"agents"`
}

// inventoryKeys are the keys of an inventory entry written as a map.
var inventoryKeys = []string{"address", "labels", "tls", "ca", "cert", "key", "server_name", "token_file"}

// inventoryEntry is one agent of an inventory: an address, or a map of the address, its
// labels (which matrices select agents by) and the credentials to reach it with.
type inventoryEntry struct {
	Address    string            `yaml:"address"`
	Labels     map[string]string `yaml:"labels"`
	TLS        *bool             `yaml:"tls"`
	CA         string            `yaml:"ca"`
	Cert       string            `yaml:"cert"`
	Key        string            `yaml:"key"`
	ServerName string            `yaml:"server_name"`
	TokenFile  string            `yaml:"token_file"`
}

// entryError is a mistake in an inventory entry, at a node; its message says what is
// allowed.
type entryError struct {
	line, col int
	msg       string
}

func (e *entryError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

func entryErrorf(n *yaml.Node, format string, args ...any) error {
	return &entryError{line: n.Line, col: n.Column, msg: fmt.Sprintf(format, args...)}
}

// UnmarshalYAML reads "NAME: ADDR" or "NAME: {address: ADDR, ca: FILE, ...}", rejecting
// unknown keys (yaml's KnownFields does not reach a custom unmarshaler).
func (e *inventoryEntry) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Decode(&e.Address)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if !slices.Contains(inventoryKeys, k.Value) {
				return entryErrorf(k, "unknown key %q in an agent entry (known: %s)", k.Value, strings.Join(inventoryKeys, ", "))
			}
		}
		type plain inventoryEntry // without the method, to decode the fields
		if err := n.Decode((*plain)(e)); err != nil {
			return err
		}
		switch {
		case e.Address == "":
			return entryErrorf(n, "an agent entry needs an address")
		case (e.Cert == "") != (e.Key == ""):
			return entryErrorf(n, "a client certificate needs both cert and key")
		case e.TLS != nil && !*e.TLS && (e.CA != "" || e.Cert != "" || e.ServerName != ""):
			return entryErrorf(n, "tls: false (plaintext) with ca, cert or server_name, which are TLS settings")
		}
		return nil
	}
	return entryErrorf(n, "an agent is an address (HOST:PORT) or a map {address: HOST:PORT, ca: FILE, ...}")
}

// apply returns base (the global flags) overridden by the entry's settings, its file names
// resolved against dir (the inventory's directory).
func (e inventoryEntry) apply(base client.Options, dir string) client.Options {
	path := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	o := base
	if e.TLS != nil {
		o.TLS, o.Plaintext = *e.TLS, !*e.TLS
	}
	if e.CA != "" {
		o.CA = path(e.CA)
	}
	if e.Cert != "" {
		o.Cert, o.Key = path(e.Cert), path(e.Key)
	}
	if e.ServerName != "" {
		o.ServerName = e.ServerName
	}
	if e.TokenFile != "" {
		o.TokenFile = path(e.TokenFile)
	}
	return o
}

// readInventoryFile reads an --inventory file; problems are a badInput (exit 2) at
// FILE:LINE:COL.
func readInventoryFile(path string) (*inventoryFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &badInput{err: fmt.Errorf("--inventory: %w", err)}
	}
	var inv inventoryFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var ee *entryError
	if err := dec.Decode(&inv); errors.As(err, &ee) {
		return nil, &badInput{err: fmt.Errorf("%s:%d:%d: %s", path, ee.line, ee.col, ee.msg)}
	} else if err != nil {
		return nil, &badInput{err: fmt.Errorf("--inventory %s: %v (want agents: {NAME: HOST:PORT, ...}, an entry may be {address: HOST:PORT, labels: {KEY: VALUE}, ca: FILE, cert: FILE, key: FILE, server_name: NAME, token_file: FILE, tls: BOOL})", path, err)}
	}
	return &inv, nil
}

// agentTargets decides each agent's address: the file's, then the inventory's, then
// --agent's; and its credentials: the global flags (dial), overridden by the agent's
// inventory entry. The credentials of every remote agent are checked (files read) before
// the run starts.
func agentTargets(f *scenario.File, inventory string, flags []string, dial client.Options, load func(string) (*inventoryFile, error)) (map[string]runner.Target, error) {
	targets := map[string]runner.Target{}
	var names []string
	for _, ag := range f.Agents {
		targets[ag.Name] = runner.Target{Addr: ag.Address, Dial: dial, Labels: ag.Labels}
		names = append(names, ag.Name)
	}
	if inventory != "" {
		inv, err := load(inventory)
		if err != nil {
			return nil, err
		}
		dir := filepath.Dir(inventory)
		for name, e := range inv.Agents {
			if t, ok := targets[name]; ok { // entries for other files' agents are fine
				labels := t.Labels
				if e.Labels != nil {
					labels = e.Labels
				}
				targets[name] = runner.Target{Addr: e.Address, Dial: e.apply(dial, dir), Labels: labels}
			}
		}
	}
	for _, fl := range flags {
		name, addr, ok := strings.Cut(fl, "=")
		if !ok || name == "" || addr == "" {
			return nil, usagef("--agent %q: write NAME=HOST:PORT (or NAME=local)", fl)
		}
		if !slices.Contains(names, name) {
			sort.Strings(names)
			return nil, usagef("--agent %s: %s has no agent %q (its agents: %s)", fl, f.Path, name, strings.Join(names, ", "))
		}
		t := targets[name]
		t.Addr = addr
		targets[name] = t
	}
	sort.Strings(names)
	for _, name := range names {
		t := targets[name]
		if t.Addr == "local" {
			continue
		}
		cc, err := dialAgent(t.Addr, t.Dial)
		if err != nil {
			var ue *usageError
			if errors.As(err, &ue) {
				return nil, usagef("agent %s: %v", name, err)
			}
			return nil, failed(fmt.Errorf("agent %s: %w", name, err))
		}
		cc.Close()
	}
	return targets, nil
}
