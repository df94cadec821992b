package runner

import (
	"strings"

	"github.com/sockagent/sockagent/ctl/scenario"
)

// stepPlan is what running an action step needs that is the same each time it runs: its
// label, and when its arguments (or expectations) hold no ${...}, their resolved form and the
// detail the report shows. A scenario of a thousand sends and receives would otherwise
// resolve each step's arguments and expectations into new maps as it runs.
type stepPlan struct {
	label        string
	args         scenario.Resolved // when argsSet: no value has a "$", so resolving changes nothing
	argsSet      bool
	detail       string            // describe(action, args), when argsSet
	expect       scenario.Resolved // likewise for expect, when expectSet
	expectSet    bool
	expectStatic bool   // the step has no expect, or expectSet
	data         []byte // args.Data(), when dataSet (requests only read it)
	dataSet      bool   // argsSet, and the payload (if any) is valid and small
}

// maxPlannedData bounds the payload a plan keeps for the whole run: a larger one (data_size:
// 1G) is made again for each run of its step and freed after it, as without plans.
const maxPlannedData = 64 << 10

// planSteps makes the plans of every action step of steps, nested ones too, in one slice.
func planSteps(path string, steps []*scenario.Step) map[*scenario.Step]*stepPlan {
	all := make([]stepPlan, 0, countActions(steps))
	plans := make(map[*scenario.Step]*stepPlan, cap(all))
	var walk func([]*scenario.Step)
	walk = func(steps []*scenario.Step) {
		for _, st := range steps {
			switch {
			case st.Parallel != nil:
				walk(st.Parallel)
			case st.Repeat != nil:
				walk(st.Repeat.Steps)
			default:
				all = append(all, planStep(path, st)) // cap(all) is enough: &all[i] stay put
				plans[st] = &all[len(all)-1]
			}
		}
	}
	walk(steps)
	return plans
}

// countActions counts the action steps of steps as written (a repeated step once).
func countActions(steps []*scenario.Step) int {
	n := 0
	for _, s := range steps {
		switch {
		case s.Parallel != nil:
			n += countActions(s.Parallel)
		case s.Repeat != nil:
			n += countActions(s.Repeat.Steps)
		default:
			n++
		}
	}
	return n
}

func planStep(path string, st *scenario.Step) stepPlan {
	var p stepPlan
	if detail, n, ok := describeLabel(st.Action, scenario.Resolved{Path: path, Args: st.Args}, true); ok {
		p.args, p.argsSet = scenario.Resolved{Path: path, Args: st.Args}, true
		p.detail = detail
		if st.Name == "" && st.Parallel == nil && st.Repeat == nil && st.Matrix == nil {
			// The label of an unnamed action step is the action and its describeArgs as
			// written: here as resolved, the same, at the start of the detail.
			p.label = p.detail[:n]
		}
		// data_size is looked at first: data_size: 1G is not made here only to be dropped.
		if n, err := p.args.Uint("data_size"); err == nil && n <= maxPlannedData {
			if d, _, err := p.args.Data(); err == nil && len(d) <= maxPlannedData {
				p.data, p.dataSet = d, true
			}
		}
	}
	if p.label == "" {
		p.label = st.Label()
	}
	if st.Expect == nil {
		p.expectStatic = true
	} else if literalArgs(st.Expect) {
		p.expect, p.expectSet, p.expectStatic = scenario.Resolved{Path: path, Args: st.Expect}, true, true
	}
	return p
}

// literalArgs reports whether no value of args has a "$": resolving them gives them as they are.
func literalArgs(args scenario.Args) bool {
	for _, v := range args {
		if strings.IndexByte(v.Raw, '$') >= 0 {
			return false
		}
	}
	return true
}

// plan returns the plan of an action step (made when the run started; made now for a step
// that was not, so that a caller never has to care).
func (r *runner) plan(st *scenario.Step) *stepPlan {
	if p, ok := r.plans[st]; ok {
		return p
	}
	p := planStep(r.cfg.File.Path, st)
	return &p
}
