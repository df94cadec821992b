package spec

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func mustParse(t *testing.T, src string) *File {
	t.Helper()
	f, err := Parse("m.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestExpand(t *testing.T) {
	t.Parallel()
	f := mustParse(t, `
agents:
  h10: {address: "10.0.0.10:7700", labels: {role: web, zone: b}}
  h2: {address: "10.0.0.2:7700", labels: {role: db, zone: a}}
  h1: {address: "10.0.0.1:7700", labels: {role: web, zone: a}}
  x: local
services:
  web: {network: tcp, port: 80}
  dns: {network: udp, port: 53}
sources: [{role: web}, x]
targets: ["h*"]
expect:
  default: open
  rules:
    - {to: {role: db}, expect: filtered}
    - {from: h1, to: {zone: "[ab]"}, service: dns, expect: closed}
    - {from: x, to: h2, service: [web], expect: any}
`)
	p, err := Expand(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := func(as []Agent) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.Name)
		}
		return out
	}
	if got := names(p.Sources); !slices.Equal(got, []string{"h1", "h10", "x"}) {
		t.Errorf("sources %v", got)
	}
	if got := names(p.Targets); !slices.Equal(got, []string{"h1", "h2", "h10"}) {
		t.Errorf("targets %v", got)
	}
	var got []string
	for _, c := range p.Cells {
		got = append(got, fmt.Sprintf("%s %s>%s %s", c.Service, c.Source, c.Target, c.Expected))
	}
	want := []string{
		"web h1>h2 filtered", "web h1>h10 open",
		"web h10>h1 open", "web h10>h2 filtered",
		"web x>h1 open", "web x>h2 any", "web x>h10 open",
		"dns h1>h2 closed", "dns h1>h10 closed",
		"dns h10>h1 open", "dns h10>h2 filtered",
		"dns x>h1 open", "dns x>h2 filtered", "dns x>h10 open",
	}
	if !slices.Equal(got, want) {
		t.Errorf("cells:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The inventory's agents replace the file's: labels move the cells.
	inv := []Agent{{Name: "h1", Labels: map[string]string{"role": "db", "zone": "a"}}, {Name: "h2", Labels: map[string]string{"role": "web"}}, {Name: "h10"}, {Name: "x"}}
	p, err = Expand(f, inv)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(p.Sources); !slices.Equal(got, []string{"h2", "x"}) {
		t.Errorf("sources by the inventory's labels: %v", got)
	}
}

func TestExpandProblems(t *testing.T) {
	t.Parallel()
	f := mustParse(t, `
agents: {web1: local, web2: local, db1: local}
services: {web: {network: tcp, port: 80}}
sources: [wbe1, "z*", {role: web}]
targets: [all]
expect:
  rules:
    - {from: db2, to: dbx, expect: open}
`)
	_, err := Expand(f, nil)
	want := `m.yaml:4:11: sources: no agent "wbe1" (agents: db1, web1, web2); did you mean "web1"?
m.yaml:4:17: sources: z* picks no agent (agents: db1, web1, web2)
m.yaml:4:23: sources: {role: web} picks no agent (agents: db1, web1, web2)
m.yaml:8:14: from: no agent "db2" (agents: db1, web1, web2); did you mean "db1"?
m.yaml:8:23: to: no agent "dbx" (agents: db1, web1, web2); did you mean "db1"?`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	// No agents at all, and more than ten.
	_, err = Expand(f, []Agent{})
	if err == nil || !strings.Contains(err.Error(), "(agents: none: declare them under agents or give --inventory)") {
		t.Errorf("no agents: %v", err)
	}
	var many []Agent
	for i := range 10 {
		many = append(many, Agent{Name: fmt.Sprintf("h%d", i)})
	}
	_, err = Expand(f, many)
	if err == nil || !strings.Contains(err.Error(), "(agents: h0, h1, h2, h3, h4, h5, h6, h7, h8, h9)") {
		t.Errorf("ten agents: %v", err)
	}
	many = nil
	for i := range 12 {
		many = append(many, Agent{Name: fmt.Sprintf("h%d", i)})
	}
	_, err = Expand(f, many)
	if err == nil || !strings.Contains(err.Error(), "(agents: h0, h1, h2, h3, h4, h5, h6, h7, h8, h9 and 2 more)") {
		t.Errorf("many agents: %v", err)
	}
}

func TestExpandMaxCells(t *testing.T) {
	t.Parallel()
	f := mustParse(t, "services: {a: {network: tcp, port: 1}, b: {network: tcp, port: 2}}\nsources: [all]\ntargets: [all]\nexpect: {}\n")
	var agents []Agent
	for i := range 708 { // 2 x 708 x 708 = 1,002,528 > MaxCells
		agents = append(agents, Agent{Name: fmt.Sprintf("h%d", i)})
	}
	if _, err := Expand(f, agents); err == nil || err.Error() != "m.yaml:1:1: 2 services x 708 sources x 708 targets is more than 1000000 cells; split the matrix" {
		t.Errorf("got %v", err)
	}
	p, err := Expand(f, agents[:707]) // 999,698
	if err != nil || len(p.Cells) != 2*707*706 {
		t.Errorf("707 agents: %v, %d cells", err, len(p.Cells))
	}
}

func TestNaturalCompare(t *testing.T) {
	t.Parallel()
	names := []string{"h10", "h2", "h1", "a", "h", "h02x", "h2a", "b1", "b01", "99999999999999999999"}
	slices.SortFunc(names, NaturalCompare)
	if want := []string{"99999999999999999999", "a", "b1", "b01", "h", "h1", "h2", "h2a", "h02x", "h10"}; !slices.Equal(names, want) {
		t.Errorf("got %v, want %v", names, want)
	}
}

func TestSelector(t *testing.T) {
	t.Parallel()
	a := Agent{Name: "web-3", Labels: map[string]string{"role": "web", "zone": "eu-1"}}
	cases := []struct {
		s    Selector
		want bool
		str  string
	}{
		{Selector{All: true, Name: "all"}, true, "all"},
		{Selector{Name: "web-3"}, true, "web-3"},
		{Selector{Name: "web-?"}, true, "web-?"},
		{Selector{Name: "web"}, false, "web"},
		{Selector{Labels: map[string]string{"role": "web"}}, true, "{role: web}"},
		{Selector{Labels: map[string]string{"zone": "eu-*", "role": "web"}}, true, "{role: web, zone: eu-*}"},
		{Selector{Labels: map[string]string{"zone": "us-*", "role": "web"}}, false, "{role: web, zone: us-*}"},
		{Selector{Labels: map[string]string{"rack": "*"}}, false, "{rack: *}"},
	}
	for _, c := range cases {
		if got := c.s.Picks(a.Name, a.Labels); got != c.want || c.s.String() != c.str {
			t.Errorf("%s: picks %v, want %v; String %q", c.str, got, c.want, c.s.String())
		}
	}
}

func TestMatches(t *testing.T) {
	t.Parallel()
	for _, e := range []Verdict{Open, Closed, Filtered, Unreachable, Any} {
		for _, v := range []Verdict{Open, Closed, Filtered, Unreachable, AgentUnavailable, Error} {
			want := (e == v || e == Any) && v != AgentUnavailable && v != Error
			if got := Matches(e, v); got != want {
				t.Errorf("Matches(%s, %s) = %v", e, v, got)
			}
		}
	}
}
