package ctl

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// examples/matrix.yaml runs as written on three in-process agents: every cell open.
func TestMatrixExample(t *testing.T) {
	t.Parallel()
	r := invocation{args: []string{"matrix", "../examples/matrix.yaml"}}.exec(t)
	r.want(t, ExitOK, []string{"3 sources x 3 targets x 2 services = 12 cells", "http tcp/8080", "syslog udp/5514", "h1 - O O\n", "12 cells: 12 as expected, 0 not"}, nil)
	if strings.Contains(r.stdout, "\x1b") {
		t.Error("colour on a stdout that is not a terminal")
	}
	r = invocation{args: []string{"validate", "../examples/matrix.yaml", "../examples/hello-tcp.yaml"}}.exec(t)
	r.want(t, ExitOK, []string{"../examples/matrix.yaml: ok: matrix, 3 sources x 3 targets x 2 services = 12 cells", "../examples/hello-tcp.yaml: ok:"}, nil)
}

// A mismatch exits 1 and is in every report; labels from the inventory select the agents.
func TestMatrixMismatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := writeMatrixFile(t, dir, "m.yaml", `name: labels
services: {web: {network: tcp, port: 8080}}
sources: [all]
targets: [all]
expect:
  default: open
  rules:
    - {from: {role: web}, to: {role: db}, expect: filtered}
`)
	inv := writeMatrixFile(t, dir, "inv.yaml", `agents:
  w1: {address: local, labels: {role: web}}
  d1: {address: local, labels: {role: db}}
  other: local
`)
	junit, html := filepath.Join(dir, "m.xml"), filepath.Join(dir, "m.html")
	r := invocation{args: []string{"matrix", file, "--inventory", inv, "--junit", junit, "--html", html}}.exec(t)
	r.want(t, ExitFailure, []string{"d1    - O O\n", "w1    O!O -\n", "6 cells: 5 as expected, 1 not", "w1 -> d1 web: open, expected filtered"},
		[]string{"matrix " + file + ": 1 of 6 cells not as expected"})
	data, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &suites); err != nil || len(suites.Suites) != 1 || suites.Suites[0].Tests != 6 || suites.Suites[0].Failures != 1 {
		t.Errorf("junit %+v %v:\n%s", suites, err, data)
	}
	if data, err := os.ReadFile(html); err != nil || strings.Count(string(data), " bad\"") != 1 {
		t.Errorf("html: %v\n%s", err, data)
	}

	r = invocation{args: []string{"matrix", file, "--inventory", inv, "-o", "json"}}.exec(t)
	var doc struct {
		Total, Mismatches int
		Cells             []struct {
			Source, Target, Verdict, Expected string
			OK                                bool
			RTTUS                             float64 `json:"rtt_us"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != ExitFailure {
		t.Fatalf("exit %d %v\n%s", r.code, err, r.stdout)
	}
	if doc.Total != 6 || doc.Mismatches != 1 || len(doc.Cells) != 6 {
		t.Errorf("json %+v", doc)
	}
	for _, c := range doc.Cells {
		if c.Verdict != "open" || c.RTTUS <= 0 || c.OK != (c.Source != "w1" || c.Target != "d1") {
			t.Errorf("cell %+v", c)
		}
	}
}

func TestMatrixBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := "services: {web: {network: tcp, port: 80}}\nsources: [all]\ntargets: [all]\nexpect: {default: open}\n"
	cases := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"typo", []string{"matrix", writeMatrixFile(t, dir, "typo.yaml", "agents: {a: local}\n"+good+"expect: {default: opne}\n")}, ":6:1: duplicate key \"expect\""},
		{"verdict", []string{"matrix", writeMatrixFile(t, dir, "verdict.yaml", "agents: {a: local}\nservices: {web: {network: tcp, port: 80}}\nsources: [all]\ntargets: [all]\nexpect: {default: opne}\n")}, "verdict.yaml:5:19: expect.default: \"opne\" is not one of open, closed, filtered, unreachable, any; did you mean \"open\"?"},
		{"unknown agent", []string{"matrix", writeMatrixFile(t, dir, "agent.yaml", "agents: {web1: local}\nservices: {web: {network: tcp, port: 80}}\nsources: [wbe1]\ntargets: [all]\nexpect: {}\n")}, "agent.yaml:3:11: sources: no agent \"wbe1\" (agents: web1); did you mean \"web1\"?"},
		{"no file", []string{"matrix", filepath.Join(dir, "none.yaml")}, "none.yaml: open"},
		{"inventory", []string{"matrix", writeMatrixFile(t, dir, "ok.yaml", good), "--inventory", writeMatrixFile(t, dir, "inv.yaml", "agents: {a: {address: local, lables: {}}}\n")}, "inv.yaml:1:30: unknown key \"lables\""},
		{"inventory address", []string{"matrix", filepath.Join(dir, "ok.yaml"), "--inventory", writeMatrixFile(t, dir, "inv2.yaml", "agents: {a: nowhere}\n")}, "agent a: \"nowhere\": no port"},
		{"ttl", []string{"matrix", filepath.Join(dir, "ok.yaml"), "--session-ttl", "0s"}, "--session-ttl 0s: give 1s up to 24h"},
		{"parallel", []string{"matrix", filepath.Join(dir, "ok.yaml"), "--parallel", "0"}, "--parallel 0: give 1 up to 4096"},
		{"validate", []string{"validate", filepath.Join(dir, "verdict.yaml")}, "verdict.yaml:5:19: expect.default"},
		{"validate names", []string{"validate", filepath.Join(dir, "agent.yaml")}, "agent.yaml:3:11: sources: no agent"},
	}
	for _, c := range cases {
		r := invocation{args: c.args}.exec(t)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.stderr) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", c.name, r.code, r.stderr, c.stderr)
		}
	}
	// Without agents of its own, validate leaves the selectors to the run's inventory.
	r := invocation{args: []string{"validate", filepath.Join(dir, "ok.yaml")}}.exec(t)
	r.want(t, ExitOK, []string{"ok.yaml: ok: matrix, 1 services (agents from --inventory at run time)"}, nil)
}

func writeMatrixFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// examples/matrix-step.yaml runs on three in-process agents (its listener on loopback): the
// matrix step passes with every cell measured, then the fan-out to a list of agents. With the
// expected table turned around, the step fails, lists the cells, and the run exits 1.
func TestRunMatrixStepExample(t *testing.T) {
	t.Parallel()
	p := loopbackExample(t, "matrix-step.yaml", 1)
	r := runArgs(t, p)
	r.want(t, ExitOK, []string{"web tier: 12 cells as expected (3 sources x 3 targets x 2 services) in ", "\n3@web1 ", "\n3@web2 ", "4 passed, 0 failed"}, nil)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	bad := writeScenario(t, "bad.yaml", strings.Replace(string(b), "default: open", "default: closed", 1))
	r = runArgs(t, bad, "-o", "json")
	r.want(t, ExitFailure, []string{`"reason": "EXPECTATION_FAILED"`, `"mismatches": [`, `"source": "db"`, `"verdict": "open"`, `"expected": "closed"`}, nil)
	var rep struct {
		Steps []struct {
			Index      string
			Mismatches []struct{ Source, Target, Service, Verdict, Expected string }
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	// 12 cells less db -> web1/web2 http, which expect any.
	if len(rep.Steps) != 4 || rep.Steps[0].Index != "1" || len(rep.Steps[0].Mismatches) != 10 {
		t.Fatalf("%+v", rep.Steps)
	}
	for _, c := range rep.Steps[0].Mismatches {
		if c.Verdict != "open" || c.Expected != "closed" || c.Source == c.Target || (c.Source == "db" && c.Service == "http" && c.Target != "db") {
			t.Errorf("cell %+v", c)
		}
	}
}
