package spec

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/diag"
	"github.com/sockagent/sockagent/ctl/internal/yamlwalk"
)

const goodFile = `name: web tier
agents:
  h1: 10.77.0.2:7700
  h2: {address: 10.77.0.3:7700, labels: {role: db, zone: a}}
  h10: {address: "unix:/run/sockagent.sock", labels: {role: web}}
services:
  web: {network: tcp, port: 8080}
  syslog: {network: udp, port: 5514}
sources: [all]
targets: [h*]
expect:
  default: any
  rules:
    - {from: all, to: {role: db}, service: web, expect: filtered}
    - {to: h1, service: [web, syslog], expect: closed}
    - {from: [{role: "w*"}], service: all, expect: unreachable}
probe: {concurrency: 64, timeout: 500ms, attempts: 3, spacing: 50ms, pace: 200}
`

func TestParseGood(t *testing.T) {
	t.Parallel()
	f, err := Parse("good.yaml", []byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	want := &File{
		Path: "good.yaml", Name: "web tier",
		Agents: []Agent{
			{Name: "h1", Address: "10.77.0.2:7700"},
			{Name: "h2", Address: "10.77.0.3:7700", Labels: map[string]string{"role": "db", "zone": "a"}},
			{Name: "h10", Address: "unix:/run/sockagent.sock", Labels: map[string]string{"role": "web"}},
		},
		Services: []Service{{Name: "web", Network: "tcp", Port: 8080, Pos: diag.Pos{Line: 7, Col: 3}}, {Name: "syslog", Network: "udp", Port: 5514, Pos: diag.Pos{Line: 8, Col: 3}}},
		Sources:  []Selector{{All: true, Name: "all", Pos: diag.Pos{Line: 9, Col: 11}}},
		Targets:  []Selector{{Name: "h*", Pos: diag.Pos{Line: 10, Col: 11}}},
		Default:  Any,
		Rules: []Rule{
			{From: []Selector{{All: true, Name: "all", Pos: diag.Pos{Line: 14, Col: 14}}}, To: []Selector{{Labels: map[string]string{"role": "db"}, Pos: diag.Pos{Line: 14, Col: 23}}},
				Services: []string{"web"}, Expect: Filtered, Pos: diag.Pos{Line: 14, Col: 7}},
			{From: []Selector{{All: true, Name: "all", Pos: diag.Pos{Line: 15, Col: 7}}}, To: []Selector{{Name: "h1", Pos: diag.Pos{Line: 15, Col: 12}}},
				Services: []string{"web", "syslog"}, Expect: Closed, Pos: diag.Pos{Line: 15, Col: 7}},
			{From: []Selector{{Labels: map[string]string{"role": "w*"}, Pos: diag.Pos{Line: 16, Col: 15}}}, To: []Selector{{All: true, Name: "all", Pos: diag.Pos{Line: 16, Col: 7}}},
				Expect: Unreachable, Pos: diag.Pos{Line: 16, Col: 7}},
		},
		Probe: Probe{Concurrency: 64, Timeout: 500 * time.Millisecond, Attempts: 3, Spacing: 50 * time.Millisecond, Pace: 200},
	}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got\n%+v\nwant\n%+v", f, want)
	}
	if !IsMatrix([]byte(goodFile)) || IsMatrix([]byte("agents: {a: local}\nsteps: []\n")) || IsMatrix([]byte("[1, 2]")) || IsMatrix([]byte("{")) {
		t.Error("IsMatrix: want true for a matrix only")
	}
	// The name defaults to the file's.
	f, err = Parse("dir/edge.yaml", []byte("services: {a: {network: udp6, port: 1}}\nsources: all\ntargets: {role: x}\nexpect: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "edge" || f.Default != Open || len(f.Sources) != 1 || !f.Sources[0].All || f.Targets[0].Labels["role"] != "x" {
		t.Errorf("got %+v", f)
	}
}

// TestParseInvalid: every problem at its FILE:LINE:COL, with a "did you mean" where a typo is
// likely; all the messages are in testdata/invalid.golden.
func TestParseInvalid(t *testing.T) {
	t.Parallel()
	base := "services: {web: {network: tcp, port: 80}}\nsources: [all]\ntargets: [all]\nexpect: {default: open}\n"
	cases := []struct{ name, src string }{
		{"empty", ""},
		{"syntax", "services: {web: [\n"},
		{"two documents", base + "---\nname: x\n"},
		{"not a map", "- a\n- b\n"},
		{"missing keys", "name: x\n"},
		{"unknown key", base + "sevrices: {}\n"},
		{"duplicate key", base + "name: a\nname: b\n"},
		{"merge key", "x: &web {network: tcp}\n" + base + "probe: {<<: *web}\n"},
		{"bad agent name", "agents: {1h: local}\n" + base},
		{"agent without port", "agents: {h1: 10.0.0.1}\n" + base},
		{"agent bad port", "agents: {h1: \"10.0.0.1:99999\"}\n" + base},
		{"agent no address", "agents: {h1: {labels: {role: web}}}\n" + base},
		{"agent unknown key", "agents: {h1: {adress: local}}\n" + base},
		{"agent list", "agents: [h1]\n" + base},
		{"label key", "agents: {h1: {address: local, labels: {9x: y}}}\n" + base},
		{"label pattern", "agents: {h1: {address: local, labels: {role: \"[\"}}}\n" + base},
		{"label list", "agents: {h1: {address: local, labels: {role: [a]}}}\n" + base},
		{"services empty", "services: {}\nsources: [all]\ntargets: [all]\nexpect: {}\n"},
		{"service network", "services: {web: {network: tpc, port: 80}}\nsources: [all]\ntargets: [all]\nexpect: {}\n"},
		{"service port", "services: {web: {network: tcp, port: 0}, dns: {network: udp, port: x}}\nsources: [all]\ntargets: [all]\nexpect: {}\n"},
		{"service incomplete", "services: {web: {network: tcp}}\nsources: [all]\ntargets: [all]\nexpect: {}\n"},
		{"service named all", "services: {all: {network: tcp, port: 1}}\nsources: [all]\ntargets: [all]\nexpect: {}\n"},
		{"service key", "services: {web: {network: tcp, prot: 1}}\nsources: [all]\ntargets: [all]\nexpect: {}\n"},
		{"selector empty list", "services: {web: {network: tcp, port: 80}}\nsources: []\ntargets: [~]\nexpect: {}\n"},
		{"selector empty map", "services: {web: {network: tcp, port: 80}}\nsources: [{}]\ntargets: [[a]]\nexpect: {}\n"},
		{"selector pattern", "services: {web: {network: tcp, port: 80}}\nsources: [\"h[\"]\ntargets: [all]\nexpect: {}\n"},
		{"verdict typo", "services: {web: {network: tcp, port: 80}}\nsources: [all]\ntargets: [all]\nexpect: {default: opne}\n"},
		{"verdict list", "services: {web: {network: tcp, port: 80}}\nsources: [all]\ntargets: [all]\nexpect: {default: [open]}\n"},
		{"expect key", "services: {web: {network: tcp, port: 80}}\nsources: [all]\ntargets: [all]\nexpect: {defualt: open}\n"},
		{"rules not a list", base[:len(base)-len("expect: {default: open}\n")] + "expect: {rules: {from: all}}\n"},
		{"rule without expect", base[:len(base)-len("expect: {default: open}\n")] + "expect: {rules: [{from: all}]}\n"},
		{"rule unknown service", base[:len(base)-len("expect: {default: open}\n")] + "expect: {rules: [{service: wbe, expect: open}]}\n"},
		{"rule unknown key", base[:len(base)-len("expect: {default: open}\n")] + "expect: {rules: [{form: all, expect: open}]}\n"},
		{"probe", base + "probe: {concurrency: 0, attempts: 1, pace: x, timeout: 2m, spacing: -1s, tries: 2}\n"},
		{"probe high", base + "probe: {concurrency: 1025, attempts: 11, timeout: 1x, spacing: 11s}\n"},
	}
	var out strings.Builder
	for _, c := range cases {
		f, err := Parse(c.name+".yaml", []byte(c.src))
		var errs *diag.Errors
		if !errors.As(err, &errs) || f != nil {
			t.Errorf("%s: Parse gave %v, %v; want *diag.Errors and no file", c.name, f, err)
			continue
		}
		for _, e := range errs.List {
			if e.Pos.Line < 1 || e.Pos.Col < 1 || e.Path != c.name+".yaml" {
				t.Errorf("%s: problem without a position: %+v", c.name, e)
			}
		}
		fmt.Fprintf(&out, "%s\n", err)
	}
	golden(t, "invalid.golden", out.String())
}

// The networks of services are those the agent probes.
func TestNetworksProbed(t *testing.T) {
	t.Parallel()
	for _, n := range networks {
		if !contract.NetworkAllowed(contract.OpProbe, n) {
			t.Errorf("network %s is not one the agent probes", n)
		}
	}
}

func TestBudgets(t *testing.T) {
	t.Parallel()
	head := "services: {web: {network: tcp, port: 1}}\ntargets: [all]\nexpect: {}\nsources: ["
	_, err := Parse("big.yaml", []byte(head+strings.Repeat("a, ", yamlwalk.MaxNodes)+"a]\n"))
	if err == nil || !strings.Contains(err.Error(), "big.yaml:4:") || !strings.Contains(err.Error(), "more than 200000 YAML nodes") {
		t.Fatalf("got %v, want the node budget", err)
	}
	// Problems are reported once each, and at most 50.
	var many strings.Builder
	for i := range 60 {
		fmt.Fprintf(&many, "x%d: 1\n", i)
	}
	// An alias repeats a node: its problem is reported once.
	_, err = Parse("many.yaml", []byte(head+"&l [a], *l]\n"+many.String()))
	var errs *diag.Errors
	if !errors.As(err, &errs) || len(errs.List) != yamlwalk.MaxProblems {
		t.Fatalf("got %v, want %d problems", err, yamlwalk.MaxProblems)
	}
	if strings.Count(err.Error(), "not a list") != 1 {
		t.Errorf("the same problem twice at one place:\n%v", err)
	}
	if last := errs.List[yamlwalk.MaxProblems-1]; last.Msg != "too many problems (61 in all); fix these and run again" || last.Pos != errs.List[yamlwalk.MaxProblems-2].Pos {
		t.Errorf("last problem %+v", last)
	}
}

// TestParseBounds: each bound admits its value and refuses the next.
func TestParseBounds(t *testing.T) {
	t.Parallel()
	tail := "sources: [all]\ntargets: [all]\nexpect: {}\n"
	services := func(n int) string {
		var b strings.Builder
		b.WriteString("services:\n")
		for i := range n {
			fmt.Fprintf(&b, "  s%d: {network: tcp, port: %d}\n", i, i+1)
		}
		return b.String()
	}
	agents := func(n int) string {
		var b strings.Builder
		b.WriteString("agents:\n")
		for i := range n {
			fmt.Fprintf(&b, "  h%d: local\n", i)
		}
		return b.String()
	}
	cases := []struct {
		name, src, problem string
	}{
		{"64 services", services(64) + tail, ""},
		{"65 services", services(65) + tail, "65 services; at most 64"},
		{"10000 agents", agents(10_000) + services(1) + tail, ""},
		{"10001 agents", agents(10_001) + services(1) + tail, "10001 agents; at most 10000"},
		{"ports", "agents: {a: \"10.0.0.1:65535\", b: \"h:1\", c: \"[::1]:7700\"}\nservices: {x: {network: tcp, port: 65535}, y: {network: udp, port: 1}}\n" + tail, ""},
		{"port 65536", "services: {x: {network: tcp, port: 65536}}\n" + tail, "port \"65536\" is not a number from 1 to 65535"},
		{"agent port 0", "agents: {a: \"h:0\"}\nservices: {x: {network: tcp, port: 1}}\n" + tail, "port \"0\" is not a number"},
		{"agent port 65536", "agents: {a: \"h:65536\"}\nservices: {x: {network: tcp, port: 1}}\n" + tail, "port \"65536\" is not a number"},
		{"probe at its bounds", services(1) + tail + "probe: {concurrency: 1024, attempts: 10, pace: 1048576, timeout: 1m, spacing: 10s}\n", ""},
		{"probe at its low bounds", services(1) + tail + "probe: {concurrency: 1, attempts: 2, pace: 1, timeout: 1ms, spacing: 1ms}\n", ""},
		{"pace over", services(1) + tail + "probe: {pace: 1048577}\n", "probe.pace: \"1048577\" is not a number from 1 to 1048576"},
		{"spacing 0", services(1) + tail + "probe: {spacing: 0s}\n", "probe.spacing: \"0s\" is not a duration"},
		{"agent without host", "agents: {a: \":7700\"}\nservices: {x: {network: tcp, port: 1}}\n" + tail, "\":7700\": no host"},
		{"agent IPv6 unbracketed", "agents: {a: \"::1:7700\"}\nservices: {x: {network: tcp, port: 1}}\n" + tail, "an IPv6 host goes in brackets"},
	}
	for _, c := range cases {
		_, err := Parse("b.yaml", []byte(c.src))
		if (c.problem == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.problem) {
			t.Errorf("%s: %v, want %q", c.name, err, c.problem)
		}
	}
	// Exactly 50 problems: all of them, no "too many".
	var b strings.Builder
	for i := range 46 {
		fmt.Fprintf(&b, "x%d: 1\n", i)
	}
	_, err := Parse("p.yaml", []byte("name: x\n"+b.String()))
	var errs *diag.Errors
	if !errors.As(err, &errs) || len(errs.List) != yamlwalk.MaxProblems || strings.Contains(err.Error(), "too many") {
		t.Errorf("50 problems: %v", err)
	}
}
