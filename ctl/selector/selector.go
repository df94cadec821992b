// Package selector is how sockctl's files pick agents: all of them, those whose name matches
// a pattern, or those whose labels match. Scenario steps fan out with it (on: {role: web});
// matrices pick their sources and targets. It is a leaf, so that the scenario and matrix
// packages share it without importing each other.
package selector

import (
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/sockagent/sockagent/ctl/diag"
)

// Selector picks agents: all of them, those whose name matches a pattern (path.Match
// wildcards), those named in a list, or those whose labels match every given key (values may
// be patterns too).
type Selector struct {
	All    bool
	Name   string
	Names  []string // a list of names (as written: no patterns); nil unless given
	Labels map[string]string
	Pos    diag.Pos
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
	case s.Names != nil:
		return "[" + strings.Join(s.Names, ", ") + "]"
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
	case s.Names != nil:
		return slices.Contains(s.Names, name)
	}
	m, err := path.Match(s.Name, name)
	return err == nil && m
}
