package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sockagent/sockagent/ctl/diag"
	"github.com/sockagent/sockagent/ctl/internal/yamlwalk"
)

// Plan is an expanded matrix: the agents it uses and its cells with their expectations.
type Plan struct {
	Name     string
	Sources  []Agent // in natural name order (h2 before h10)
	Targets  []Agent
	Services []Service
	// Cells, by service, then source, then target; a source never probes itself.
	Cells []Cell
}

// Expand picks the sources and targets of f among agents (the file's and the inventory's, by
// name; nil: the file's), and sets each cell's expectation: expect.default, then every rule
// that covers it, the last one winning. A selector that picks no agent is a problem at its
// position (a name with a "did you mean"), as is a matrix of more than MaxCells cells.
func Expand(f *File, agents []Agent) (*Plan, error) {
	if agents == nil {
		agents = f.Agents
	}
	agents = slices.Clone(agents)
	slices.SortFunc(agents, func(a, b Agent) int { return NaturalCompare(a.Name, b.Name) })
	p := &parser{Walker: yamlwalk.Walker{Problems: yamlwalk.Problems{Path: f.Path}}}
	names := make([]string, len(agents))
	for i, a := range agents {
		names[i] = a.Name
	}
	pick := func(what string, sels []Selector) map[string]bool {
		out := map[string]bool{}
		for _, s := range sels {
			found := false
			for _, a := range agents {
				if s.Picks(a.Name, a.Labels) {
					out[a.Name], found = true, true
				}
			}
			if !found {
				p.noAgent(what, s, names)
			}
		}
		return out
	}
	plan := &Plan{Name: f.Name, Services: f.Services}
	src, dst := pick("sources", f.Sources), pick("targets", f.Targets)
	for _, a := range agents {
		if src[a.Name] {
			plan.Sources = append(plan.Sources, a)
		}
		if dst[a.Name] {
			plan.Targets = append(plan.Targets, a)
		}
	}
	type picked struct{ from, to map[string]bool }
	rules := make([]picked, len(f.Rules))
	for i, r := range f.Rules {
		rules[i] = picked{pick("from", r.From), pick("to", r.To)}
	}
	n := len(plan.Services) * len(plan.Sources) * len(plan.Targets)
	if n > MaxCells {
		p.add(diag.Pos{Line: 1, Col: 1}, "%d services x %d sources x %d targets is more than %d cells; split the matrix", len(plan.Services), len(plan.Sources), len(plan.Targets), MaxCells)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	plan.Cells = make([]Cell, 0, n)
	for _, svc := range plan.Services {
		for _, s := range plan.Sources {
			for _, t := range plan.Targets {
				if s.Name == t.Name {
					continue
				}
				c := Cell{Source: s.Name, Target: t.Name, Service: svc.Name, Expected: f.Default}
				for i, r := range f.Rules {
					if rules[i].from[s.Name] && rules[i].to[t.Name] && (r.Services == nil || slices.Contains(r.Services, svc.Name)) {
						c.Expected = r.Expect
					}
				}
				plan.Cells = append(plan.Cells, c)
			}
		}
	}
	return plan, nil
}

// noAgent reports a selector that picks no agent.
func (p *parser) noAgent(what string, s Selector, names []string) {
	if s.Labels != nil || strings.ContainsAny(s.Name, "*?[") {
		p.add(s.Pos, "%s: %s picks no agent (agents: %s)", what, s, list(names))
		return
	}
	msg := fmt.Sprintf("%s: no agent %q (agents: %s)", what, s.Name, list(names))
	if g := diag.Suggest(s.Name, names); g != "" {
		msg += fmt.Sprintf("; did you mean %q?", g)
	}
	p.add(s.Pos, "%s", msg)
}

// list names at most 10 names, then how many more.
func list(names []string) string {
	if len(names) == 0 {
		return "none: declare them under agents or give --inventory"
	}
	if len(names) > 10 {
		return strings.Join(names[:10], ", ") + fmt.Sprintf(" and %d more", len(names)-10)
	}
	return strings.Join(names, ", ")
}

// NaturalCompare orders names with their digit runs compared as numbers: h2 before h10.
func NaturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, _ := strconv.ParseUint(a[:min(da, 18)], 10, 64)
			nb, _ := strconv.ParseUint(b[:min(db, 18)], 10, 64)
			if na != nb {
				return cmp.Compare(na, nb)
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
