package daemon_test

import (
	"flag"
	"io"
	"maps"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/agent/daemon"
)

// TestLabelFlag: --label KEY=VALUE repeated fills Config.Labels and reaches the agent's
// config; a malformed, invalid or repeated label is refused saying which.
func TestLabelFlag(t *testing.T) {
	parse := func(args ...string) (daemon.Config, error) {
		c := daemon.DefaultConfig()
		fs := flag.NewFlagSet("sockagent", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.AddFlags(fs)
		return c, fs.Parse(args)
	}
	c, err := parse("--label", "zone=a", "--label", "role=web", "--label", "empty=")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"zone": "a", "role": "web", "empty": ""}
	if !maps.Equal(c.Labels, want) {
		t.Fatalf("labels %v, want %v", c.Labels, want)
	}
	s, err := c.Build(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !maps.Equal(s.Agent.Labels, want) {
		t.Fatalf("agent config labels %v, want %v", s.Agent.Labels, want)
	}
	for _, tc := range []struct{ arg, want string }{
		{"zone", `"zone": write KEY=VALUE`},
		{"=a", `label key ""`},
		{"zone=a b", `label zone: value "a b"`},
		{"zone=a,zone=b", `value "a,zone=b"`},
	} {
		if _, err := parse("--label", tc.arg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--label %s: %v, want an error with %q", tc.arg, err, tc.want)
		}
	}
	if _, err := parse("--label", "zone=a", "--label", "zone=b"); err == nil || !strings.Contains(err.Error(), "label zone given twice") {
		t.Errorf("repeated key: %v", err)
	}
}
