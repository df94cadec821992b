package runner

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/ctl/scenario"
)

// describe, looking up each given argument once, says what going through describeArgs,
// describeData and describeFigures in order says, for any mix of arguments.
func TestDescribeMatchesListOrder(t *testing.T) {
	keys := append(append(append([]string{"unknown", "as"}, describeArgs...), describeData...), describeFigures...)
	values := []string{"", "tcp", "127.0.0.1:80", strings.Repeat("x", 40), `quo"te`}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		args := scenario.Args{}
		for range rng.IntN(len(keys) + 1) {
			args[keys[rng.IntN(len(keys))]] = scenario.Scalar{Raw: values[rng.IntN(len(values))]}
		}
		a := scenario.Resolved{Args: args}
		if got, want := describe("send", a), describeSlow("send", a); got != want {
			t.Fatalf("describe(%v) = %q, want %q", args, got, want)
		}
	}
}

func TestPlanStep(t *testing.T) {
	lit := scenario.Args{"socket": {Raw: "cli"}, "data": {Raw: "hello"}}
	dyn := scenario.Args{"socket": {Raw: "${c${i}.socket_id}"}, "data": {Raw: "hello"}}
	dollar := scenario.Args{"socket": {Raw: "cli"}, "data": {Raw: "$$5"}} // "$5" once resolved
	big := scenario.Args{"socket": {Raw: "cli"}, "data_size": {Raw: "1048576"}}
	bad := scenario.Args{"socket": {Raw: "cli"}, "data_hex": {Raw: "zz"}}
	for _, tc := range []struct {
		name               string
		args, expect       scenario.Args
		argsSet, expSet    bool
		expStatic, planned bool
		data               string
	}{
		{"literal", lit, scenario.Args{"bytes": {Raw: "5"}}, true, true, true, true, "hello"},
		{"no expect", lit, nil, true, false, true, true, "hello"},
		{"reference", dyn, scenario.Args{"data": {Raw: "${vars.x}"}}, false, false, false, false, ""},
		{"dollar", dollar, nil, false, false, true, false, ""},
		{"large payload", big, nil, true, false, true, false, ""},
		{"bad payload", bad, nil, true, false, true, false, ""},
	} {
		st := &scenario.Step{On: "a", Action: "send", Args: tc.args, Expect: tc.expect}
		p := planStep("f.yaml", st)
		if p.label != st.Label() || p.argsSet != tc.argsSet || p.expectSet != tc.expSet || p.expectStatic != tc.expStatic || p.dataSet != tc.planned || string(p.data) != tc.data {
			t.Errorf("%s: plan = %+v", tc.name, p)
		}
		if p.argsSet && p.detail != describe("send", scenario.Resolved{Path: "f.yaml", Args: tc.args}) {
			t.Errorf("%s: detail %q", tc.name, p.detail)
		}
	}
	f := &scenario.File{Steps: []*scenario.Step{
		{Action: "sleep", Args: scenario.Args{"duration": {Raw: "1ms"}}},
		{Parallel: []*scenario.Step{{Action: "close", Args: lit}, {Action: "close", Args: dyn}}},
		{Repeat: &scenario.Repeat{Count: 3, Steps: []*scenario.Step{{Action: "send", Args: lit}}}},
	}}
	plans := planSteps("f.yaml", f.Steps)
	if len(plans) != 4 {
		t.Fatalf("%d plans, want 4 (one per action step as written)", len(plans))
	}
	for _, st := range []*scenario.Step{f.Steps[0], f.Steps[1].Parallel[0], f.Steps[1].Parallel[1], f.Steps[2].Repeat.Steps[0]} {
		if p := plans[st]; p == nil || p.label != st.Label() {
			t.Errorf("step %q: plan %+v", st.Label(), p)
		}
	}
}
