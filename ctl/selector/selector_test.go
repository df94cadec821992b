package selector

import "testing"

func TestPicks(t *testing.T) {
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
		{Selector{Names: []string{"a", "web-3"}}, true, "[a, web-3]"},
		{Selector{Names: []string{"web-*"}}, false, "[web-*]"},
		{Selector{Names: []string{}}, false, "[]"},
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
