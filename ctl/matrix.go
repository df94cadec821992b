package ctl

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sockagent/sockagent/ctl/localagent"
	"github.com/sockagent/sockagent/ctl/matrix"
	"github.com/sockagent/sockagent/ctl/runner"
)

const matrixLong = `Matrix measures which agent reaches which, on which TCP and UDP ports, and compares
every cell with an expected table. FILE (see docs/matrix.md):

  name: web tier
  agents: {h1: 10.77.0.2:7700, h2: {address: 10.77.0.3:7700, labels: {role: db}}}
  services:
    web: {network: tcp, port: 8080}
    syslog: {network: udp, port: 5514}
  sources: [all]                  # agent names, wildcards (h1*), label selectors ({role: web}), all
  targets: [all]
  expect:
    default: open                 # open | closed | filtered | unreachable | any
    rules:                        # later rules win; service: a name, a list, or all (the default)
      - {from: all, to: {role: db}, service: web, expect: filtered}
  probe: {concurrency: 64, timeout: 1s, attempts: 2, spacing: 100ms, pace: 500}   # optional

Agents come from the file and from --inventory (an entry there overrides the file's, and
may carry labels: {address: ..., labels: {role: web}}). Every target serves an echo on
each service's port at its own address (in-process "local" agents, which share this host,
on a port of their own), every source probes all its targets in one Sweep RPC (a TCP
connect, or a UDP echo round trip), concurrently and paced by the agent, and everything
opened is closed afterwards, in the run's session on each agent. A source does not probe
itself.

Each cell is open (connected, or echoed), closed (a TCP reset, or an ICMP port
unreachable for UDP), filtered (silence on every attempt: at least two, spaced),
unreachable (no route, host or network unreachable), agent-unavailable (the source or the
target could not be reached) or error (with the reason). "any" accepts the first four;
agent-unavailable and error never pass.

Output: a grid per service on stdout (rows sources, columns targets, one glyph per cell, !
after a cell not as expected, in colour on a terminal), then every mismatch; -o json lists
every cell instead; --junit FILE writes one test case per cell; --html FILE a self-contained
heat map (hover over a cell for its detail).

Exit status: 0 every cell as expected; 1 a cell not as expected (or not measured); 2 the file,
the inventory or the flags are wrong (FILE:LINE:COL: message).`

func (a *app) matrixCommand() *cobra.Command {
	var (
		inventory, junit, html string
		sessionTTL             time.Duration
		parallel               int
	)
	cmd := &cobra.Command{
		Use:   "matrix FILE",
		Short: "Measure which agent reaches which on which ports, against an expected table",
		Long:  matrixLong,
		Example: `  sockctl matrix examples/matrix.yaml
  sockctl matrix web-tier.yaml --inventory lab.yaml --junit matrix.xml --html matrix.html
  sockctl matrix web-tier.yaml --inventory lab.yaml -o json`,
		Args: args(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sessionTTL < time.Second || sessionTTL > 24*time.Hour {
				return usagef("--session-ttl %s: give 1s up to 24h", sessionTTL)
			}
			if parallel < 1 || parallel > 4096 {
				return usagef("--parallel %d: give 1 up to 4096", parallel)
			}
			f, err := loadMatrix(args[0])
			if err != nil {
				return err
			}
			plan, targets, err := a.matrixPlan(f, inventory)
			if err != nil {
				return err
			}
			res := matrix.Run(cmd.Context(), matrix.Config{Plan: plan, Agents: targets, Probe: f.Probe,
				StartLocal: localagent.StartHook, SessionTTL: sessionTTL, Parallel: parallel})
			if err := writeReport(junit, res, matrix.WriteJUnit); err != nil {
				return failed(fmt.Errorf("write --junit %s: %w", junit, err))
			}
			if err := writeReport(html, res, matrix.WriteHTML); err != nil {
				return failed(fmt.Errorf("write --html %s: %w", html, err))
			}
			if a.output == outputJSON {
				err = matrix.WriteJSON(a.out.stdout, res)
			} else {
				err = matrix.WriteGrid(a.out.stdout, res, isTerminal(a.out.stdout))
			}
			if err != nil {
				return failed(err)
			}
			if n := res.Mismatches(); n > 0 {
				return failed(fmt.Errorf("matrix %s: %d of %d cells not as expected", f.Path, n, len(res.Cells)))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&inventory, "inventory", "", "YAML `FILE` of agent addresses, labels and credentials (what `salab up` prints): agents: {NAME: ADDR, NAME: {address: ADDR, labels: {role: web}}}")
	fl.StringVar(&junit, "junit", "", "also write a JUnit XML report to `FILE` (one test case per cell)")
	fl.StringVar(&html, "html", "", "also write a self-contained HTML heat map to `FILE`")
	fl.DurationVar(&sessionTTL, "session-ttl", runner.DefaultSessionTTL, "lease of the run's session on each agent: if sockctl dies, the agents close its sockets this long after")
	fl.IntVar(&parallel, "parallel", matrix.DefaultParallel, "agents set up, swept and cleaned up at once")
	return cmd
}

// writeReport writes a report to path with write, unless path is empty.
func writeReport(path string, res *matrix.Result, write func(io.Writer, *matrix.Result) error) error {
	if path == "" {
		return nil
	}
	var buf bytes.Buffer
	if err := write(&buf, res); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// loadMatrix reads and parses a matrix file; problems are a badInput (exit 2).
func loadMatrix(path string) (*matrix.File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &badInput{err: fmt.Errorf("%s: %w", path, err)}
	}
	f, err := matrix.Parse(path, data)
	if err != nil {
		return nil, &badInput{err: err}
	}
	return f, nil
}

// matrixPlan merges the file's agents with the inventory's (the inventory's address, labels
// and credentials win for an agent both name), expands the matrix over them, and checks the
// credentials of every remote agent it uses.
func (a *app) matrixPlan(f *matrix.File, inventory string) (*matrix.Plan, map[string]matrix.Target, error) {
	dial := a.dialOptions()
	agents := slices.Clone(f.Agents)
	targets := map[string]matrix.Target{}
	for _, ag := range agents {
		targets[ag.Name] = matrix.Target{Addr: ag.Address, Dial: dial}
	}
	if inventory != "" {
		inv, err := a.loadInventory(inventory)
		if err != nil {
			return nil, nil, err
		}
		for name, e := range inv.Agents {
			ag := matrix.Agent{Name: name, Address: e.Address, Labels: e.Labels}
			if msg := matrix.CheckAddress(e.Address); msg != "" {
				return nil, nil, &badInput{err: fmt.Errorf("--inventory %s: agent %s: %s", inventory, name, msg)}
			}
			if i := slices.IndexFunc(agents, func(x matrix.Agent) bool { return x.Name == name }); i >= 0 {
				agents[i] = ag
			} else {
				agents = append(agents, ag)
			}
			targets[name] = matrix.Target{Addr: e.Address, Dial: e.apply(dial, filepath.Dir(inventory))}
		}
	}
	plan, err := matrix.Expand(f, agents)
	if err != nil {
		return nil, nil, &badInput{err: err}
	}
	var bad []string
	for _, ag := range append(slices.Clone(plan.Sources), plan.Targets...) {
		t := targets[ag.Name]
		if t.Addr == "local" {
			continue
		}
		if err := t.Dial.Check(); err != nil {
			bad = append(bad, fmt.Sprintf("agent %s: %v", ag.Name, err))
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return nil, nil, usagef("%s", strings.Join(slices.Compact(bad), "; "))
	}
	return plan, targets, nil
}

// validateMatrix checks a matrix file as matrix does before its first RPC: the file, and its
// selectors against the agents it declares (when it declares any: those of an inventory are
// checked at run time).
func validateMatrix(path string, data []byte) (string, error) {
	f, err := matrix.Parse(path, data)
	if err != nil {
		return "", err
	}
	if len(f.Agents) == 0 {
		return fmt.Sprintf("%s: ok: matrix, %d services (agents from --inventory at run time)", path, len(f.Services)), nil
	}
	plan, err := matrix.Expand(f, nil)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: ok: matrix, %d sources x %d targets x %d services = %d cells", path, len(plan.Sources), len(plan.Targets), len(plan.Services), len(plan.Cells)), nil
}
