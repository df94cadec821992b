package scenario

import (
	"path"
	"sort"
	"strings"
)

// Selector picks agents: all of them, those whose name matches a pattern (path.Match
// wildcards), or those whose labels match every given key (values may be patterns too).
// Scenarios fan a step out with it (on: {role: web}); matrices pick sources and targets.
type Selector struct {
	All    bool
	Name   string
	Labels map[string]string
	Pos    Pos
}

// String is the selector as written: all, a name pattern, or {key: value, ...} with its keys
// sorted.
func (s Selector) String() string {
	switch {
	case s.All:
		return "all"
	case s.Labels != nil:
		keys := make([]string, 0, len(s.Labels))
		for k := range s.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ": " + s.Labels[k]
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return s.Name
}

// Picks reports whether s selects the agent called name with labels.
func (s Selector) Picks(name string, labels map[string]string) bool {
	switch {
	case s.All:
		return true
	case s.Labels != nil:
		for k, want := range s.Labels {
			got, ok := labels[k]
			if !ok {
				return false
			}
			if m, err := path.Match(want, got); err != nil || !m {
				return false
			}
		}
		return true
	}
	m, err := path.Match(s.Name, name)
	return err == nil && m
}

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
