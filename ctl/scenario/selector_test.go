package scenario

import (
	"slices"
	"testing"
)

func TestSelectorPicks(t *testing.T) {
	t.Parallel()
	labels := map[string]string{"role": "web", "zone": "eu-1"}
	cases := []struct {
		s    Selector
		want bool
		str  string
	}{
		{Selector{All: true, Name: "all"}, true, "all"},
		{Selector{Name: "web-3"}, true, "web-3"},
		{Selector{Name: "web-?"}, true, "web-?"},
		{Selector{Name: "web"}, false, "web"},
		{Selector{Name: "["}, false, "["},
		{Selector{Labels: map[string]string{"role": "web"}}, true, "{role: web}"},
		{Selector{Labels: map[string]string{"zone": "eu-*", "role": "web"}}, true, "{role: web, zone: eu-*}"},
		{Selector{Labels: map[string]string{"zone": "us-*", "role": "web"}}, false, "{role: web, zone: us-*}"},
		{Selector{Labels: map[string]string{"role": "["}}, false, "{role: [}"},
		{Selector{Labels: map[string]string{"rack": "*"}}, false, "{rack: *}"},
	}
	for _, c := range cases {
		if got := c.s.Picks("web-3", labels); got != c.want || c.s.String() != c.str {
			t.Errorf("%s: picks %v, want %v; String %q", c.str, got, c.want, c.s.String())
		}
	}
}

// Pick keeps the file's order and takes the run's labels over the file's when given.
func TestFilePick(t *testing.T) {
	t.Parallel()
	f := &File{Agents: []Agent{
		{Name: "z", Labels: map[string]string{"role": "web"}},
		{Name: "a", Labels: map[string]string{"role": "db"}},
		{Name: "m", Labels: map[string]string{"role": "web"}},
		{Name: "n"},
	}}
	web := Selector{Labels: map[string]string{"role": "web"}}
	if got := f.Pick(web, nil); !slices.Equal(got, []string{"z", "m"}) {
		t.Errorf("file labels: %v, want [z m]", got)
	}
	run := func(name string) map[string]string {
		if name == "n" || name == "a" {
			return map[string]string{"role": "web"}
		}
		return nil
	}
	if got := f.Pick(web, run); !slices.Equal(got, []string{"a", "n"}) {
		t.Errorf("run labels: %v, want [a n]", got)
	}
	if got := f.Pick(Selector{Labels: map[string]string{"role": "cache"}}, nil); got != nil {
		t.Errorf("no match: %v, want nil", got)
	}
}

// A step's on: is a name, or a label selector that fans it out; agents carry labels.
func TestParseFanout(t *testing.T) {
	t.Parallel()
	f, err := Parse("f.yaml", []byte(`agents:
  s: local
  h1: {address: "127.0.0.1:7700", labels: {role: web, zone.name: a}}
steps:
  - {on: s, sleep: {duration: 1ms}}
  - {on: {role: web}, sleep: {duration: 1ms}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if a := f.Agents[1]; a.Address != "127.0.0.1:7700" || a.Labels["role"] != "web" || a.Labels["zone.name"] != "a" || len(a.Labels) != 2 {
		t.Errorf("agent h1: %+v", a)
	}
	if f.Agents[0].Labels != nil {
		t.Errorf("agent s has labels %v, want none", f.Agents[0].Labels)
	}
	if st := f.Steps[0]; st.On != "s" || st.OnAll != nil {
		t.Errorf("step 1: on %q, selector %v", st.On, st.OnAll)
	}
	st := f.Steps[1]
	if st.On != "" || st.OnAll == nil || st.OnAll.String() != "{role: web}" || st.OnAll.Pos != (Pos{Line: 6, Col: 10}) {
		t.Errorf("step 2: on %q, selector %+v", st.On, st.OnAll)
	}
}
