package runner

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/scenario"
)

// Every action is known to every layer: the scenario package parses and validates a step of
// it (its ActionSpec), the runner runs it (actions[name].run) and the report says what it did
// (actions[name].summary). An action added to one layer and not to another fails here.
func TestActionsEveryLayer(t *testing.T) {
	t.Parallel()
	var names []string
	for name := range actions {
		names = append(names, name)
	}
	for _, name := range scenario.Actions {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		spec, ok := scenario.Action(name)
		if !ok || !slices.Contains(scenario.Actions, name) {
			t.Errorf("%s: the runner has it, package scenario does not (scenario.ActionSpec)", name)
			continue
		}
		a, ok := actions[name]
		switch {
		case !ok:
			t.Errorf("%s: package scenario has it, the runner does not (actions)", name)
			continue
		case a.run == nil:
			t.Errorf("%s: the runner cannot run it (actions[%q].run)", name, name)
		case a.summary == nil:
			t.Errorf("%s: the report cannot say what it did (actions[%q].summary)", name, name)
		}
		if spec.NoAgent && a.session {
			t.Errorf("%s: runs without an agent, yet sends the session header of one", name)
		}
		src := sampleScenario(t, spec)
		if _, err := scenario.Parse(name+".yaml", []byte(src)); err != nil {
			t.Errorf("%s: package scenario rejects a step of it:\n%s\n%v", name, src, err)
		}
	}
}

// sampleScenario is a valid scenario whose last step does spec's action with its required
// arguments (and a payload, when it takes one).
func sampleScenario(t *testing.T, spec scenario.ActionSpec) string {
	t.Helper()
	if spec.Name == "matrix" { // a matrix, not arguments, and no on: it runs on its sources
		return "agents: {a: local, b: local}\nsteps:\n" +
			"  - {matrix: {services: {web: {network: tcp, port: 8080}}, sources: [all], targets: [all], expect: {default: open}}}\n"
	}
	var args []string
	for _, k := range spec.Required {
		var v string
		switch k {
		case "network":
			v = contract.Networks(spec.Network)[0]
		case "address":
			v = `"127.0.0.1:1"`
		case "socket":
			v = "s"
		case "direction":
			v = "write"
		case "behaviour":
			v = "echo"
		case "duration":
			v = "1ms"
		case "toxics":
			v = "[{latency: 1ms}]"
		default:
			t.Fatalf("%s: no sample value for its required argument %q: add one here", spec.Name, k)
		}
		args = append(args, k+": "+v)
	}
	if slices.Contains(spec.Args, "data") {
		args = append(args, `data: "x"`)
	}
	return fmt.Sprintf("agents: {a: local}\nsteps:\n"+
		"  - {on: a, listen: {network: tcp, address: \"127.0.0.1:0\"}, as: s}\n"+
		"  - {on: a, %s: {%s}}\n", spec.Name, strings.Join(args, ", "))
}
