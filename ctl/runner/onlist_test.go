package runner

import (
	"maps"
	"slices"
	"testing"
)

// on: [names] and on: all fan a step out like a label selector: once per agent, each
// reported as its own step (index "2@w1"), a failing copy failing the run while the others
// still run.
func TestFanoutListAndAll(t *testing.T) {
	t.Parallel()
	f := fanoutFile(t, 2, `  - {on: [w2, a], sleep: {duration: 1ms}}
  - {on: all, sleep: {duration: 1ms}}
  - {on: [w1, w2], recv: {socket: "${env.SOCKCTL_NONE}"}}
`)
	rep, _ := timedRun(Config{File: f, KeepGoing: true, FanoutConcurrency: 2})
	want := map[string]string{
		"1@a": "passed a", "1@w2": "passed w2",
		"2@a": "passed a", "2@w1": "passed w1", "2@w2": "passed w2",
		"3@w1": "failed SCENARIO_ERROR w1", "3@w2": "failed SCENARIO_ERROR w2",
	}
	got := statuses(rep)
	if !maps.Equal(got, want) || rep.Passed != 5 || rep.Failed != 2 || CountReports(f) != 7 {
		t.Errorf("got %v (%d reports planned), want %v", got, CountReports(f), want)
	}
	var order []string
	for _, s := range rep.Steps[:2] {
		order = append(order, s.Index)
	}
	if slices.Sort(order); !slices.Equal(order, []string{"1@a", "1@w2"}) {
		t.Errorf("step 1 ran on %v", order)
	}
}
