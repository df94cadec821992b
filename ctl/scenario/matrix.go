package scenario

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sockagent/sockagent/ctl/diag"
	"github.com/sockagent/sockagent/ctl/internal/yamlwalk"
	"github.com/sockagent/sockagent/ctl/matrix/spec"
)

// matrix reads the matrix of a matrix step (package spec), within the file's node budget, and
// checks that its selectors pick agents of the scenario: a problem is at its place in this
// file.
func (p *parser) matrix(a entry) *spec.File {
	f, list, used := spec.ParseStep(p.Path, a.Value, maxNodes-p.Nodes)
	p.Nodes += used
	if p.Nodes > maxNodes { // the step's walker spent the budget and said so
		p.Over = true
	}
	p.List = append(p.List, list...)
	if len(list) > 0 || len(p.file.Agents) == 0 {
		return f // selectors of a broken matrix, or without agents, say nothing more
	}
	if _, err := spec.Expand(f, MatrixAgents(p.file.Agents, nil)); err != nil {
		var errs *diag.Errors
		if errors.As(err, &errs) {
			p.List = append(p.List, errs.List...)
		}
	}
	return f
}

// MatrixAgents are the scenario's agents as a matrix sees them, their labels given by labels
// (nil: those the file declares; an inventory may relabel agents at run time).
func MatrixAgents(agents []Agent, labels func(name string) map[string]string) []spec.Agent {
	out := make([]spec.Agent, len(agents))
	for i, a := range agents {
		out[i] = spec.Agent{Name: a.Name, Address: a.Address, Labels: a.Labels}
		if labels != nil {
			out[i].Labels = labels(a.Name)
		}
	}
	return out
}

// matrixExpect reports the expectations a matrix step cannot have: its cells' expectations
// are its expect table, and it either passes or lists the cells that did not; within (a bound
// on its wall time) is the one that applies.
func (p *parser) matrixExpect(expect Args) {
	for k, v := range expect {
		if k != "within" {
			p.add(v.Pos, "expect %s does not apply to a matrix step: its expectations are the matrix's own expect (default and rules); only within may be given", k)
		}
	}
}

// onList reads on: [a, b]: the step fans out to each agent named, each a declared agent,
// once.
func (p *parser) onList(st *Step, v *yaml.Node) {
	if len(v.Content) == 0 {
		p.add(yamlwalk.Pos(v), "on: an empty list picks no agent; name agents, such as on: [a, b], or write all")
		return
	}
	var names []string
	seen := map[string]int{}
	for _, it := range v.Content {
		s, ok := p.scalarOf("an agent in on", "on", it)
		if !ok {
			continue
		}
		if line, dup := seen[s.Raw]; dup {
			p.add(s.Pos, "on: agent %s is listed twice (first at line %d); a step runs once on each agent", s.Raw, line)
			continue
		}
		seen[s.Raw] = s.Pos.Line
		if strings.ContainsAny(s.Raw, "*?[") {
			p.add(s.Pos, "on: %q: a list names agents as declared, without wildcards; for a pattern write on: {LABEL: PATTERN}", s.Raw)
			continue
		}
		n := len(p.List)
		p.checkOn(s)
		if len(p.List) == n {
			names = append(names, s.Raw)
		}
	}
	if len(names) == len(v.Content) { // (not empty: that returned above)
		st.OnAll = &Selector{Names: names, Pos: yamlwalk.Pos(v)}
	}
}

// matrixLabel is the label of an unnamed matrix step: "matrix web, syslog".
func matrixLabel(f *spec.File) string {
	names := make([]string, len(f.Services))
	for i, s := range f.Services {
		names[i] = s.Name
	}
	return fmt.Sprintf("matrix %s", strings.Join(names, ", "))
}
