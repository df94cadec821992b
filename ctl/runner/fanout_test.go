package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockagent/sockagent/ctl/localagent"
	"github.com/sockagent/sockagent/ctl/scenario"
)

// fanoutFile writes a scenario of n in-process agents w1..wn labelled {role: w}, one more
// agent a without labels, and the given steps, and parses it.
func fanoutFile(t testing.TB, n int, steps string) *scenario.File {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("name: fan-out\nagents:\n  a: local\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&sb, "  w%d: {address: local, labels: {role: w}}\n", i)
	}
	sb.WriteString("steps:\n" + steps)
	path := filepath.Join(t.TempDir(), "fanout.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := scenario.Parse(path, []byte(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// timedRun runs f and returns the report and when each step's report arrived, by index.
func timedRun(cfg Config) (*Report, map[string]time.Time) {
	var mu sync.Mutex
	at := map[string]time.Time{}
	cfg.StartLocal = localagent.StartHook
	cfg.StepTimeout = 10 * time.Second
	cfg.OnStep = func(s StepReport) {
		mu.Lock()
		at[s.Index] = time.Now()
		mu.Unlock()
	}
	rep := Run(context.Background(), cfg)
	return rep, at
}

// statuses maps each step's index to "status reason agent".
func statuses(rep *Report) map[string]string {
	out := map[string]string{}
	for _, s := range rep.Steps {
		out[s.Index] = strings.Join(strings.Fields(s.Status+" "+s.Reason+" "+s.Agent), " ")
	}
	return out
}

// A fan-out runs at most FanoutConcurrency agents at once: six 150ms sleeps take three
// rounds with a bound of 2, one with a bound of 6.
func TestFanoutConcurrencyBound(t *testing.T) {
	t.Parallel()
	const nap = 150 * time.Millisecond
	f := fanoutFile(t, 6, "  - {on: a, sleep: {duration: 1ms}}\n  - {on: {role: w}, sleep: {duration: 150ms}}\n")
	for _, c := range []struct{ bound, rounds int }{{2, 3}, {6, 1}, {0, 1}} {
		rep, at := timedRun(Config{File: f, FanoutConcurrency: c.bound})
		if !rep.OK() || rep.Passed != 7 {
			t.Fatalf("bound %d: %d passed, %d failed: %v", c.bound, rep.Passed, rep.Failed, statuses(rep))
		}
		var last time.Time
		for i := 1; i <= 6; i++ {
			ti, ok := at["2@w"+strconv.Itoa(i)]
			if !ok {
				t.Fatalf("bound %d: no report for 2@w%d", c.bound, i)
			}
			if ti.After(last) {
				last = ti
			}
		}
		wall := last.Sub(at["1"])
		lo := time.Duration(c.rounds) * nap
		if wall < lo || wall > lo+nap {
			t.Errorf("bound %d: the fan-out took %v, want %v to %v (%d rounds of %v)", c.bound, wall, lo, lo+nap, c.rounds, nap)
		}
	}
}

// The copies of a fanned-out step are one step: one failing does not skip the others (all
// run), it stops the steps after it; a step that failed before the fan-out skips every copy,
// each reported under its agent.
func TestFanoutFailure(t *testing.T) {
	t.Parallel()
	f := fanoutFile(t, 3, `  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: a, close: {socket: lis}}
  - {on: {role: w}, dial: {network: tcp, address: "${lis.local_address}", timeout: 2s}}
  - {on: {role: w}, sleep: {duration: 1ms}}
`)
	rep, _ := timedRun(Config{File: f, FanoutConcurrency: 1})
	want := map[string]string{
		"1": "passed a", "2": "passed a",
		"3@w1": "failed CONNECTION_REFUSED w1", "3@w2": "failed CONNECTION_REFUSED w2", "3@w3": "failed CONNECTION_REFUSED w3",
		"4@w1": "skipped w1", "4@w2": "skipped w2", "4@w3": "skipped w3",
	}
	if got := statuses(rep); !mapsEqual(got, want) {
		t.Errorf("steps:\n got %v\nwant %v", got, want)
	}
	if rep.Failed != 3 || rep.Skipped != 3 || rep.Passed != 2 {
		t.Errorf("%d passed, %d failed, %d skipped; want 2, 3, 3", rep.Passed, rep.Failed, rep.Skipped)
	}
	// With --keep-going the copies after a failure run.
	rep, _ = timedRun(Config{File: f, KeepGoing: true})
	if got := statuses(rep)["4@w2"]; got != "passed w2" {
		t.Errorf("keep going: 4@w2 %q, want passed", got)
	}
}

// Labels the run gives (an inventory's) replace the file's; a selector that then picks no
// agent fails its step as a scenario error naming it.
func TestFanoutRunLabels(t *testing.T) {
	t.Parallel()
	f := fanoutFile(t, 2, "  - {name: w naps, on: {role: w}, sleep: {duration: 1ms}}\n")
	rep, _ := timedRun(Config{File: f, Agents: map[string]Target{
		"a":  {Addr: "local", Labels: map[string]string{"role": "w"}},
		"w1": {Addr: "local", Labels: map[string]string{"role": "x"}},
	}})
	if got, want := statuses(rep), map[string]string{"1@a": "passed a", "1@w2": "passed w2"}; !mapsEqual(got, want) {
		t.Errorf("relabelled: %v, want %v", got, want)
	}
	none := map[string]string{"role": "x"}
	rep, _ = timedRun(Config{File: f, Agents: map[string]Target{"w1": {Addr: "local", Labels: none}, "w2": {Addr: "local", Labels: none}}})
	if len(rep.Steps) != 1 || rep.Steps[0].Index != "1" || rep.Steps[0].Name != "w naps" || !rep.Steps[0].named || rep.Steps[0].Reason != "SCENARIO_ERROR" || rep.Steps[0].Agent != "{role: w}" ||
		!strings.Contains(rep.Steps[0].Message, "on: {role: w} picks no agent of this run") {
		t.Errorf("no agent picked: %+v", rep.Steps)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// fanoutAgents is the size of TestFanoutScale: SOCKAGENT_FANOUT_AGENTS=100 for the full one.
func fanoutAgents(t *testing.T) int {
	if s := os.Getenv("SOCKAGENT_FANOUT_AGENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			t.Fatalf("SOCKAGENT_FANOUT_AGENTS=%q: give 1 to 1000", s)
		}
		return n
	}
	return 20
}

// A step fanned out to every agent (each probing one echo service, on loopback): the wall
// time of the fan-out and its overhead per agent, against a bound of 10ms per agent plus
// 250ms (a probe on loopback takes well under a millisecond: the rest is sockctl's and the
// agents' share of two cores).
func TestFanoutScale(t *testing.T) {
	t.Parallel()
	n := fanoutAgents(t)
	f := fanoutFile(t, n, `  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: a, serve: {socket: lis, behaviour: echo}}
  - {on: {role: w}, probe: {network: tcp, address: "${lis.local_address}", mode: echo, count: 1, timeout: 2s}, expect: {received: 1}}
`)
	rep, at := timedRun(Config{File: f})
	if !rep.OK() || rep.Passed != n+2 {
		t.Fatalf("%d passed, %d failed of %d: %v", rep.Passed, rep.Failed, n+2, statuses(rep))
	}
	var last time.Time
	var busy time.Duration // the probes' own time, summed
	for _, s := range rep.Steps {
		if !strings.HasPrefix(s.Index, "3@") {
			continue
		}
		if at[s.Index].After(last) {
			last = at[s.Index]
		}
		busy += time.Duration(s.DurationMS * float64(time.Millisecond))
	}
	wall := last.Sub(at["2"])
	bound := time.Duration(n)*10*time.Millisecond + 250*time.Millisecond
	t.Logf("fan-out to %d agents (bound %d at once): wall %v, %v per agent; the steps' own time %v in all, %v each",
		n, DefaultFanoutConcurrency, wall.Round(time.Microsecond), (wall / time.Duration(n)).Round(time.Microsecond),
		busy.Round(time.Microsecond), (busy / time.Duration(n)).Round(time.Microsecond))
	if wall <= 0 || wall > bound {
		t.Errorf("the fan-out to %d agents took %v, want (0, %v]", n, wall, bound)
	}
	idx := make([]string, 0, n)
	for _, s := range rep.Steps {
		idx = append(idx, s.Index)
	}
	for i := 1; i <= n; i++ {
		if !slices.Contains(idx, "3@w"+strconv.Itoa(i)) {
			t.Errorf("no report for 3@w%d", i)
		}
	}
}

// CountReports counts a fanned-out step once per agent it picks, inside blocks too.
func TestCountReports(t *testing.T) {
	t.Parallel()
	f := fanoutFile(t, 3, `  - {on: a, sleep: {duration: 1ms}}
  - repeat:
      count: 2
      steps:
        - {on: {role: w}, sleep: {duration: 1ms}}
        - parallel:
            - {on: a, sleep: {duration: 1ms}}
            - {on: {role: w}, sleep: {duration: 1ms}}
`)
	if got, want := CountReports(f), 1+2*(3+1+3); got != want {
		t.Errorf("CountReports = %d, want %d", got, want)
	}
	if got := CountSteps(f.Steps); got != 7 {
		t.Errorf("CountSteps = %d, want 7 (the steps as written)", got)
	}
}
