package runner

import (
	"context"
	"fmt"
	"sync"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/scenario"
)

// fanoutSep joins a fanned-out step's index and its agent in reports: "4@h1".
const fanoutSep = "@"

// labels returns the labels the run gives agent name: its target's, else the file's.
func (r *runner) labels(name string) map[string]string {
	if t, ok := r.cfg.Agents[name]; ok && t.Labels != nil {
		return t.Labels
	}
	for _, a := range r.cfg.File.Agents {
		if a.Name == name {
			return a.Labels
		}
	}
	return nil
}

// fanoutConcurrency is the bound of agents a fanned-out step runs on at once.
func (r *runner) fanoutConcurrency() int {
	if n := r.cfg.FanoutConcurrency; n > 0 {
		return n
	}
	return DefaultFanoutConcurrency
}

// runFanout runs a step once on every agent its selector picks, at most fanoutConcurrency at
// once, each reported as its own step (index "4@h1"). The copies are one step: a failure of
// one does not skip the others, and a step that fails before the fan-out skips them all.
func (r *runner) runFanout(ctx context.Context, st *scenario.Step, f frame) {
	pl := r.plan(st)
	names := r.cfg.File.Pick(*st.OnAll, r.labels)
	if len(names) == 0 {
		// The file's labels picked an agent (Parse checks it): the run's (an inventory's) do not.
		r.record(StepReport{Index: f.prefix, Name: pl.label, Agent: st.OnAll.String(), Action: st.Action, Line: st.Pos.Line,
			named: st.Name != "", Status: StatusFailed, Reason: contract.ReasonScenarioError,
			Message: fmt.Sprintf("on: %s picks no agent of this run: the inventory's labels replaced the file's; label an agent so, or change the selector", st.OnAll)})
		return
	}
	copies := make([]scenario.Step, len(names))
	if r.isStopped() || ctx.Err() != nil {
		for i, name := range names {
			copies[i] = *st
			copies[i].On, copies[i].OnAll = name, nil
			r.runAction(ctx, &copies[i], pl, frame{prefix: f.prefix + fanoutSep + name, iters: f.iters, clock: f.clock}, true)
		}
		return
	}
	sem := make(chan struct{}, r.fanoutConcurrency())
	var wg sync.WaitGroup
	for i, name := range names {
		copies[i] = *st
		copies[i].On, copies[i].OnAll = name, nil
		cf := frame{prefix: f.prefix + fanoutSep + name, iters: f.iters}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cf.clock = newStepClock(ctx)
			defer cf.clock.close()
			r.runAction(ctx, &copies[i], pl, cf, false)
		})
	}
	wg.Wait()
}
