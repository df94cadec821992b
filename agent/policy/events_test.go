package policy

import (
	"strings"
	"testing"
)

// events: own or all, inherited like any section: from the built-in default (own) into the
// file's default set, and from there into each rule set; limits.watches likewise, field by
// field, DefaultWatches where nothing gives it.
func TestEventsScopeAndWatches(t *testing.T) {
	t.Parallel()
	if d := Default().Default; d.EventsAll || d.Limits.Watches != DefaultWatches || DefaultWatches != 4 {
		t.Errorf("built-in default: events all %v watches %d; want own and %d (4)", d.EventsAll, d.Limits.Watches, DefaultWatches)
	}
	p, err := Parse("p.yaml", []byte(`default: {limits: {watches: 2}}
rule_sets:
  - {name: ops, callers: ["token:ops"], events: all}
  - {name: ci, callers: ["token:ci"], limits: {watches: 9}}
  - {name: lab, callers: ["token:lab"], events: own, limits: {sockets: 3}}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		caller  string
		all     bool
		watches int
	}{
		{"token:ops", true, 2},
		{"token:ci", false, 9},
		{"token:lab", false, 2},
		{"anonymous", false, 2},
	} {
		s := p.For(Identity{ID: tc.caller})
		if s.EventsAll != tc.all || s.Limits.Watches != tc.watches {
			t.Errorf("%s (rule set %s): events all %v watches %d; want %v %d", tc.caller, s.Name, s.EventsAll, s.Limits.Watches, tc.all, tc.watches)
		}
	}
	p, err = Parse("p.yaml", []byte("default: {events: all}\nrule_sets:\n  - {name: ci, callers: [\"token:ci\"]}\n  - {name: x, callers: [\"token:x\"], events: own}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Default.EventsAll || !p.RuleSets[0].EventsAll || p.RuleSets[1].EventsAll {
		t.Errorf("events: default %v, ci (inherits) %v, x (own) %v; want true true false", p.Default.EventsAll, p.RuleSets[0].EventsAll, p.RuleSets[1].EventsAll)
	}
	for _, tc := range []struct{ src, want string }{
		{"default:\n  events: everyone\n", `p.yaml:2:11: default.events: "everyone" is no events scope; write own (its callers watch their own sockets) or all (every caller's)`},
		{"default:\n  events: [all]\n", `p.yaml:2:11: default.events: want a string, not a list`},
		{"rule_sets:\n  - {name: a, callers: [x], events: ALL}\n", `p.yaml:2:37: rule_sets[0].events: "ALL" is no events scope`},
		{"default:\n  limits: {watches: 0}\n", `p.yaml:2:21: default.limits.watches: want a whole number from 1`},
	} {
		_, err := Parse("p.yaml", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.src, err, tc.want)
		}
	}
}
