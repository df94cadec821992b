package scenario

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/ctl/matrix/spec"
)

// A matrix step holds a matrix over the scenario's agents; unnamed, its label names its
// services.
func TestParseMatrixStep(t *testing.T) {
	t.Parallel()
	f, err := Parse("m.yaml", []byte(`agents:
  a: local
  b: {address: local, labels: {role: db}}
steps:
  - matrix:
      services: {web: {network: tcp, port: 8080}, log: {network: udp, port: 5514}}
      sources: [a]
      targets: all
      expect: {default: open, rules: [{to: {role: db}, service: web, expect: closed}]}
      probe: {timeout: 200ms}
    expect: {within: 3s}
  - {name: named, matrix: {services: {web: {network: tcp, port: 1}}, sources: all, targets: all, expect: {}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	st := f.Steps[0]
	m := st.Matrix
	if st.Action != "matrix" || st.On != "" || st.OnAll != nil || m == nil || st.Label() != "matrix web, log" || len(st.Args) != 0 || st.Expect["within"].Raw != "3s" {
		t.Fatalf("step 1: %+v", st)
	}
	if len(m.Services) != 2 || m.Services[1] != (spec.Service{Name: "log", Network: "udp", Port: 5514, Pos: Pos{Line: 6, Col: 51}}) ||
		m.Sources[0].Name != "a" || !m.Targets[0].All || m.Default != spec.Open || len(m.Rules) != 1 || m.Rules[0].Expect != spec.Closed ||
		m.Probe.Timeout.Milliseconds() != 200 || m.Name != "" || m.Path != "m.yaml" {
		t.Errorf("matrix 1: %+v", m)
	}
	plan, err := spec.Expand(m, MatrixAgents(f.Agents, nil))
	if err != nil || len(plan.Cells) != 2 || plan.Cells[0].Expected != spec.Closed || plan.Cells[1].Expected != spec.Open {
		t.Errorf("plan %+v, %v", plan, err)
	}
	if l := f.Steps[1].Label(); l != "named" {
		t.Errorf("step 2 label %q", l)
	}
	relabelled := MatrixAgents(f.Agents, func(name string) map[string]string { return map[string]string{"n": name} })
	if relabelled[1].Labels["n"] != "b" || relabelled[1].Address != "local" || f.Agents[1].Labels["role"] != "db" {
		t.Errorf("relabelled %+v", relabelled)
	}
}

// Problems inside a matrix step are at their places in the scenario file.
func TestParseMatrixStepInvalid(t *testing.T) {
	t.Parallel()
	src := `agents: {web1: local, web2: local, db: {address: local, labels: {role: db}}}
steps:
  - on: web1
    matrix:
      servces: {web: {network: tcp, port: 8080}}
      agents: {x: local}
      sources: [web3]
      targets: [{role: cache}]
      expect: {default: opn}
  - matrix: {services: {web: {network: tpc, port: 0}}, sources: all, targets: all, expect: {rules: [{service: wbe, expect: open}]}}
    expect: {error: CONNECTION_REFUSED, within: 1s}
  - matrix: {}
  - matrix:
  - {matrix: {services: {web: {network: tcp, port: 1}}, sources: [{role: db}], targets: all, expect: {}}, as: m}
`
	_, err := Parse("bad.yaml", []byte(src))
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v, want *Errors", err)
	}
	want := []string{
		`bad.yaml:3:5: a matrix step runs on the agents its sources and targets pick; drop on`,
		`bad.yaml:5:7: unknown key "servces" in a matrix step; did you mean "services"? (keys: services, sources, targets, expect, probe)`,
		`bad.yaml:5:7: missing key "services": a matrix needs services, sources, targets and expect (e.g. sources: [all])`,
		`bad.yaml:6:7: unknown key "agents" in a matrix step (keys: services, sources, targets, expect, probe)`,
		`bad.yaml:9:25: expect.default: "opn" is not one of open, closed, filtered, unreachable, any; did you mean "open"?`,
		`bad.yaml:10:40: service web: network "tpc" is not one of tcp, tcp4, tcp6, udp, udp4, udp6; did you mean "tcp"?`,
		`bad.yaml:10:51: service web: port "0" is not a number from 1 to 65535`,
		`bad.yaml:10:111: service "wbe" is not declared under services (web); did you mean "web"?`,
		`bad.yaml:11:21: expect error does not apply to a matrix step: its expectations are the matrix's own expect (default and rules); only within may be given`,
		`bad.yaml:12:13: missing key "services": a matrix needs services, sources, targets and expect (e.g. sources: [all])`,
		`bad.yaml:12:13: missing key "sources": a matrix needs services, sources, targets and expect (e.g. sources: [all])`,
		`bad.yaml:12:13: missing key "targets": a matrix needs services, sources, targets and expect (e.g. sources: [all])`,
		`bad.yaml:12:13: missing key "expect": a matrix needs services, sources, targets and expect (e.g. sources: [all])`,
		`bad.yaml:13:12: a matrix step must be a map such as {services: {web: {network: tcp, port: 8080}}, sources: [all], targets: [all], expect: {default: open}}, not empty`,
		`bad.yaml:14:107: as names the socket a step creates (listen, bind, dial, accept) or the results of probe and throughput; matrix has neither`,
	}
	var got []string
	for _, e := range errs.List {
		got = append(got, e.Error())
	}
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Selectors that pick none of the scenario's agents, once the matrix is otherwise right.
	_, err = Parse("bad.yaml", []byte(`agents: {web1: local, web2: local}
steps:
  - matrix: {services: {web: {network: tcp, port: 1}}, sources: [web3], targets: [{role: cache}], expect: {}}
`))
	want = []string{
		`bad.yaml:3:66: sources: no agent "web3" (agents: web1, web2); did you mean "web1"?`,
		`bad.yaml:3:83: targets: {role: cache} picks no agent (agents: web1, web2)`,
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// on: takes a list of agents and all, which fan the step out like a label selector.
func TestParseOnList(t *testing.T) {
	t.Parallel()
	f, err := Parse("on.yaml", []byte(`agents: {a: local, b: local, c: local}
steps:
  - {on: [c, a], sleep: {duration: 1ms}}
  - {on: all, sleep: {duration: 1ms}}
  - {on: a, sleep: {duration: 1ms}}
`))
	if err != nil {
		t.Fatal(err)
	}
	s1, s2, s3 := f.Steps[0], f.Steps[1], f.Steps[2]
	if s1.On != "" || s1.OnAll == nil || !slices.Equal(s1.OnAll.Names, []string{"c", "a"}) || s1.OnAll.String() != "[c, a]" || s1.OnAll.Pos != (Pos{Line: 3, Col: 10}) {
		t.Errorf("step 1: on %q, %+v", s1.On, s1.OnAll)
	}
	if got := f.Pick(*s1.OnAll, nil); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("step 1 picks %v, want [a c] (the file's order)", got)
	}
	if s2.On != "" || s2.OnAll == nil || !s2.OnAll.All || s2.OnAll.String() != "all" || len(f.Pick(*s2.OnAll, nil)) != 3 {
		t.Errorf("step 2: on %q, %+v", s2.On, s2.OnAll)
	}
	if s3.On != "a" || s3.OnAll != nil {
		t.Errorf("step 3: on %q, %+v", s3.On, s3.OnAll)
	}
	// An agent called all is that agent, as before on: all meant every agent.
	f, err = Parse("on.yaml", []byte("agents: {all: local, b: local}\nsteps:\n  - {on: all, sleep: {duration: 1ms}}\n"))
	if err != nil || f.Steps[0].On != "all" || f.Steps[0].OnAll != nil {
		t.Errorf("agent all: %v %+v", err, f.Steps[0])
	}
}

func TestParseOnListInvalid(t *testing.T) {
	t.Parallel()
	_, err := Parse("on.yaml", []byte(`agents: {a: local, b: local}
steps:
  - {on: [], sleep: {duration: 1ms}}
  - {on: [a, bb, a, "b*", {x: y}], sleep: {duration: 1ms}}
  - {on: [a, b], dial: {network: tcp, address: "127.0.0.1:1"}, as: d}
`))
	want := []string{
		`on.yaml:3:10: on: an empty list picks no agent; name agents, such as on: [a, b], or write all`,
		`on.yaml:4:14: unknown agent "bb"; did you mean "b"? (agents: a, b)`,
		`on.yaml:4:18: on: agent a is listed twice (first at line 4); a step runs once on each agent`,
		`on.yaml:4:21: on: "b*": a list names agents as declared, without wildcards; for a pattern write on: {LABEL: PATTERN}`,
		`on.yaml:4:27: an agent in on must be a single value, not a map`,
		`on.yaml:5:64: as names one socket or one result, but this step runs on every agent [a, b] picks; drop as, or give each agent a step of its own`,
	}
	if err == nil {
		t.Fatal("parsed")
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The node budget spans the whole file: a second matrix step that aliases the first's long
// list of sources goes over it.
func TestParseMatrixStepBudget(t *testing.T) {
	t.Parallel()
	const n = 120_000
	list := strings.Repeat("a, ", n-1) + "a"
	src := "agents: {a: local, b: local}\nsteps:\n" +
		"  - {matrix: {services: {w: {network: tcp, port: 1}}, sources: &l [" + list + "], targets: all, expect: {}}}\n"
	if _, err := Parse("big.yaml", []byte(src)); err != nil {
		t.Fatalf("one list of %d: %v", n, err)
	}
	src += "  - {matrix: {services: {w: {network: tcp, port: 1}}, sources: *l, targets: all, expect: {}}}\n"
	_, err := Parse("big.yaml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), "the file has more than 200000 YAML nodes once aliases are followed") || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("got %v", err)
	}
}
