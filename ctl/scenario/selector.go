package scenario

import (
	"github.com/sockagent/sockagent/ctl/selector"
)

// Selector picks agents: all of them, a name pattern, or labels (see package selector, which
// matrices pick their sources and targets with too).
type Selector = selector.Selector

// Pick returns, in the file's order, the agents of f that s selects, their labels given by
// labels (nil: those the file declares). An inventory may relabel the file's agents, so the
// runner picks again with the labels the run was given.
func (f *File) Pick(s Selector, labels func(name string) map[string]string) []string {
	var out []string
	for _, a := range f.Agents {
		l := a.Labels
		if labels != nil {
			l = labels(a.Name)
		}
		if s.Picks(a.Name, l) {
			out = append(out, a.Name)
		}
	}
	return out
}
