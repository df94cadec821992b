package scenario

import (
	"slices"
	"testing"

	"github.com/sockagent/sockagent/agent/contract"
)

// The action table is consistent: names are unique, required arguments are accepted ones, an
// action that takes a network names the operation whose networks it takes, and every action
// an expectation applies to is in the table.
func TestActionSpecs(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, s := range specs {
		if seen[s.Name] {
			t.Errorf("%s: twice in the table", s.Name)
		}
		seen[s.Name] = true
		for _, k := range s.Required {
			if !slices.Contains(s.Args, k) {
				t.Errorf("%s: requires %s, which it does not accept", s.Name, k)
			}
		}
		if takes := slices.Contains(s.Args, "network"); takes != (s.Network != "") || takes && !slices.Contains(contract.Ops(), s.Network) {
			t.Errorf("%s: takes network %v, network op %q", s.Name, takes, s.Network)
		}
	}
	for key, acts := range expectFor {
		for _, a := range acts {
			if !seen[a] {
				t.Errorf("expect %s applies to %s, which is not an action", key, a)
			}
		}
	}
}
