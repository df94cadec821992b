package ctl

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// stepRows decodes a -o json report's steps: index -> status, and index -> agent.
func stepRows(t *testing.T, stdout string) (map[string]string, map[string]string) {
	t.Helper()
	var rep struct {
		Steps []struct{ Index, Agent, Status, Reason, Message string }
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, stdout)
	}
	status, agent := map[string]string{}, map[string]string{}
	for _, s := range rep.Steps {
		if _, dup := status[s.Index]; dup {
			t.Errorf("step %s reported twice", s.Index)
		}
		status[s.Index], agent[s.Index] = s.Status+" "+s.Reason, s.Agent
	}
	return status, agent
}

// examples/fan-out.yaml runs on five in-process agents: the probe step once on each of the
// three web agents, the dial step on the two of zone b, each reported as a step of its own,
// in JSON and in JUnit.
func TestRunFanOutExample(t *testing.T) {
	t.Parallel()
	p := loopbackExample(t, "fan-out.yaml", 1)
	junit := filepath.Join(t.TempDir(), "junit.xml")
	r := runArgs(t, p, "-o", "json", "--junit", junit, "--fanout-concurrency", "2")
	r.want(t, ExitOK, []string{`"passed": 7`, `"failed": 0`}, nil)
	status, agent := stepRows(t, r.stdout)
	want := []string{"1", "2", "3@web1", "3@web2", "3@web3", "4@web3", "4@cache"}
	got := make([]string, 0, len(status))
	for k := range status {
		got = append(got, k)
	}
	slices.Sort(got)
	ws := slices.Clone(want)
	slices.Sort(ws)
	if !slices.Equal(got, ws) {
		t.Fatalf("steps %v, want %v", got, ws)
	}
	for _, idx := range want {
		if status[idx] != "passed " {
			t.Errorf("step %s: %q, want passed", idx, status[idx])
		}
		if _, name, fanned := strings.Cut(idx, "@"); fanned && agent[idx] != name {
			t.Errorf("step %s ran on %q, want %q", idx, agent[idx], name)
		}
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Suites []struct {
			Tests int `xml:"tests,attr"`
			Cases []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil || len(doc.Suites) != 1 {
		t.Fatalf("junit: %v, %d suites, want 1\n%s", err, len(doc.Suites), b)
	}
	suite := doc.Suites[0]
	if suite.Tests != 7 || len(suite.Cases) != 7 {
		t.Fatalf("junit: %d tests, %d cases, want 7", suite.Tests, len(suite.Cases))
	}
	var names []string
	for _, c := range suite.Cases {
		names = append(names, c.Name+" / "+c.Classname)
	}
	for _, w := range []string{"3@web2 web probes db / fan-out, every web agent probes the database.web2", "4@cache zone b dials db / fan-out, every web agent probes the database.cache"} {
		if !slices.Contains(names, w) {
			t.Errorf("junit has no case %q: %v", w, names)
		}
	}
}

const fanoutLabels = `name: relabel
agents:
  a: {address: local, labels: {role: web}}
  b: {address: local, labels: {role: web}}
  c: local
steps:
  - {on: {role: web}, sleep: {duration: 1ms}}
`

// An inventory's labels replace the file's: here they move {role: web} from a and b to c,
// so the step runs on c alone; an inventory that leaves no web agent fails the step as a
// scenario error naming the selector, and a bad --fanout-concurrency is a usage error.
func TestRunFanOutInventoryLabels(t *testing.T) {
	t.Parallel()
	p := writeScenario(t, "relabel.yaml", fanoutLabels)
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yaml")
	if err := os.WriteFile(inv, []byte("agents:\n  a: {address: local, labels: {role: db}}\n  b: {address: local, labels: {role: db}}\n  c: {address: local, labels: {role: web}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runArgs(t, p, "-o", "json", "--inventory", inv)
	r.want(t, ExitOK, nil, nil)
	status, _ := stepRows(t, r.stdout)
	if len(status) != 1 || status["1@c"] != "passed " {
		t.Errorf("steps %v, want only 1@c passed", status)
	}

	none := filepath.Join(dir, "none.yaml")
	if err := os.WriteFile(none, []byte("agents:\n  a: {address: local, labels: {role: db}}\n  b: {address: local, labels: {role: db}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runArgs(t, p, "--inventory", none)
	r.want(t, ExitFailure, []string{"1          {role: web}", "SCENARIO_ERROR", "on: {role: web} picks no agent of this run"}, nil)

	r = runArgs(t, p, "--fanout-concurrency", "0")
	r.want(t, ExitUsage, nil, []string{"--fanout-concurrency 0: give 1 up to 4096"})

	r = invocation{args: []string{"validate", p, "../examples/fan-out.yaml"}}.exec(t)
	r.want(t, ExitOK, []string{"relabel.yaml: ok: 2 steps, 3 agents", "fan-out.yaml: ok: 7 steps, 5 agents"}, nil)
}
