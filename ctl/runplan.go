package ctl

import (
	"strings"

	"github.com/sockagent/sockagent/ctl/scenario"
)

// stepPlan is what running an action step needs that is the same each time it runs: its
// label, and when its arguments (or expectations) hold no ${...}, their resolved form and the
// detail the report shows. A scenario of a thousand sends and receives would otherwise
// resolve, describe and label each step again, as many maps and strings per step.
type stepPlan struct {
	label        string
	args         *scenario.Resolved // resolved once: no value has a "$"; nil: resolve per run
	detail       string             // describe(action, *args), when args is set
	expect       *scenario.Resolved // likewise for expect, when expectStatic
	expectStatic bool               // expect is nil (no expect) or resolved once
}

// planSteps makes the plans of every action step of steps, nested ones too.
func planSteps(path string, steps []*scenario.Step, plans map[*scenario.Step]*stepPlan) {
	for _, st := range steps {
		switch {
		case st.Parallel != nil:
			planSteps(path, st.Parallel, plans)
		case st.Repeat != nil:
			planSteps(path, st.Repeat.Steps, plans)
		default:
			plans[st] = planStep(path, st)
		}
	}
}

func planStep(path string, st *scenario.Step) *stepPlan {
	p := &stepPlan{label: st.Label()}
	if literal(st.Args) {
		p.args = &scenario.Resolved{Path: path, Args: st.Args}
		p.detail = describe(st.Action, *p.args)
	}
	if st.Expect == nil {
		p.expectStatic = true
	} else if literal(st.Expect) {
		p.expect, p.expectStatic = &scenario.Resolved{Path: path, Args: st.Expect}, true
	}
	return p
}

// literal reports whether no value of args has a "$": resolving them gives them as they are.
func literal(args scenario.Args) bool {
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
	return planStep(r.cfg.file.Path, st)
}
