package runner

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/matrix/spec"
	"github.com/sockagent/sockagent/ctl/matrix/sweep"
	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// maxShownCells bounds the mismatching cells a matrix step's message lists; the report's
// mismatches list every one.
const maxShownCells = 10

// MatrixCell is one cell of a matrix step that did not measure what was expected.
type MatrixCell struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Service  string `json:"service"`
	Verdict  string `json:"verdict"`
	Expected string `json:"expected"`
	Reason   string `json:"reason,omitempty"`
	Message  string `json:"message,omitempty"`
	Address  string `json:"address,omitempty"` // the target's address as the source probed it
}

// runMatrix runs a matrix step over the run's agents: expanded with the run's labels, each
// target serving an echo on every service in the run's session there, one Sweep per source.
// What it opened is closed as the step ends (and by the run's cleanup, should the step be
// cut short). It fails with EXPECTATION_FAILED when a cell is not as expected, listing them.
func runMatrix(ctx context.Context, c call) (out scenario.Outcome, _ *sockagentv1.Socket, _ error) {
	r, f := c.r, c.st.Matrix
	plan, err := spec.Expand(f, scenario.MatrixAgents(r.cfg.File.Agents, r.labels))
	if err != nil {
		// The file's labels picked agents (Parse checks it): the run's (an inventory's) do not.
		return out, nil, &scenarioError{fmt.Errorf("the matrix does not fit this run's agents (the inventory's labels replace the file's):\n%w", err)}
	}
	agents := make(map[string]*sweep.Agent, len(plan.Sources)+len(plan.Targets))
	for _, a := range append(append([]spec.Agent{}, plan.Sources...), plan.Targets...) {
		rm := r.remotes[a.Name]
		agents[a.Name] = &sweep.Agent{Name: a.Name, Sockets: rm.sockets, Measure: rm.measure, Session: rm.session,
			Host: rm.host, Local: rm.stopLocal != nil}
	}
	var mine []opened // (under r.mu: targets serve concurrently)
	cells := sweep.Run(ctx, plan, agents, f.Probe, r.fanoutConcurrency(), func(agent, id string) {
		r.mu.Lock()
		r.open = append(r.open, opened{agent: agent, id: id})
		mine = append(mine, opened{agent: agent, id: id})
		r.mu.Unlock()
	})
	r.closeMatrix(ctx, mine)
	var bad []spec.Cell
	for _, cell := range cells {
		if !cell.OK() {
			bad = append(bad, cell)
		}
	}
	out.Figures = map[string]float64{"cells": float64(len(cells)), "mismatches": float64(len(bad))}
	shape := fmt.Sprintf("%d sources x %d targets x %d services", len(plan.Sources), len(plan.Targets), len(plan.Services))
	out.Text = fmt.Sprintf("%d cells as expected (%s)", len(cells), shape)
	if len(bad) == 0 {
		return out, nil, nil
	}
	out.Mismatches = bad
	out.Text = fmt.Sprintf("%d cells: %s", len(cells), shape)
	out.Reason, out.Err = contract.ReasonExpectationFailed, mismatchText(bad, len(cells))
	return out, nil, nil
}

// mismatchText lists the cells not as expected: "1 of 6 cells not as expected: a -> b web:
// closed, expected open (CONNECTION_REFUSED)", at most maxShownCells of them.
func mismatchText(bad []spec.Cell, total int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d cells not as expected:", len(bad), total)
	for i, c := range bad {
		if i == maxShownCells {
			fmt.Fprintf(&b, "; and %d more (-o json lists them all)", len(bad)-i)
			break
		}
		if i > 0 {
			b.WriteByte(';')
		}
		fmt.Fprintf(&b, " %s -> %s %s: %s, expected %s", c.Source, c.Target, c.Service, c.Verdict, c.Expected)
		if c.Reason != "" {
			fmt.Fprintf(&b, " (%s)", c.Reason)
		}
	}
	return b.String()
}

// matrixCells are the report's form of the cells a matrix step found not as expected.
func matrixCells(cells []spec.Cell) []MatrixCell {
	if len(cells) == 0 {
		return nil
	}
	out := make([]MatrixCell, len(cells))
	for i, c := range cells {
		out[i] = MatrixCell{Source: c.Source, Target: c.Target, Service: c.Service, Verdict: string(c.Verdict),
			Expected: string(c.Expected), Reason: c.Reason, Message: c.Message, Address: c.Address}
	}
	return out
}

// closeMatrix closes the sockets a matrix step opened, each agent's within cleanupTimeout, so
// that a later step may serve the same ports; one that does not close stays on the run's
// cleanup list.
func (r *runner) closeMatrix(ctx context.Context, sockets []opened) {
	ctx = context.WithoutCancel(ctx)
	byAgent := map[string][]opened{}
	for _, o := range sockets {
		byAgent[o.agent] = append(byAgent[o.agent], o)
	}
	names := make([]string, 0, len(byAgent))
	for name := range byAgent {
		names = append(names, name)
	}
	sweep.Each(names, r.fanoutConcurrency(), func(name string) {
		cctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
		defer cancel()
		rm := r.remotes[name]
		for _, o := range byAgent[name] {
			if _, err := rm.sockets.Close(cctx, &sockagentv1.CloseRequest{SocketId: o.id}); err == nil {
				r.forget(name, o.id)
			}
		}
	})
}

// matrixSummary is what a passing matrix step did.
func matrixSummary(o scenario.Outcome, _ *sockagentv1.Socket) string {
	return o.Text + " in " + o.Duration.Round(time.Millisecond).String()
}
