package runner

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/ctl/scenario"
)

// A plan takes an unnamed step's label from the start of its detail: that start is what
// Step.Label says, for any mix of arguments, on describe's fast and slow paths, and a named
// step keeps its name.
func TestPlanLabelIsDetailStart(t *testing.T) {
	keys := slices.Concat([]string{"unknown", "as"}, describeArgs, describeData, describeFigures)
	values := []string{"", "tcp", "127.0.0.1:80", strings.Repeat("x", 40), `quo"te`, "é"}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		args := scenario.Args{}
		for range rng.IntN(len(keys) + 1) {
			args[keys[rng.IntN(len(keys))]] = scenario.Scalar{Raw: values[rng.IntN(len(values))]}
		}
		st := &scenario.Step{On: "a", Action: "send", Args: args}
		if i%7 == 0 {
			st.Name = "named step"
		}
		p := planStep("f.yaml", st)
		if p.label != st.Label() {
			t.Fatalf("args %v: plan label %q, Label() %q", args, p.label, st.Label())
		}
		a := scenario.Resolved{Args: args}
		_, n, _ := describeLabel("send", a, false)
		d, ns := describeSlowLabel("send", a)
		if n != ns || (st.Name == "" && d[:n] != st.Label()) {
			t.Fatalf("args %v: label length %d (slow %d) of %q, Label() %q", args, n, ns, d, st.Label())
		}
	}
}
