package ctl

import (
	"regexp"
	"strings"
	"testing"
)

// The README's first command: sockctl demo with no agent starts one in-process.
func TestDemoInProcess(t *testing.T) {
	t.Parallel()
	r := invocation{args: []string{"demo"}}.exec(t)
	r.want(t, ExitOK, []string{
		"# an in-process sockagent serves on 127.0.0.1:",
		"-3 --exact 13 --wait 5s\nHello, World!\n",
		"CONNECTION_REFUSED",
		"# demo passed: 21 sockctl commands",
	}, nil)
	if n := strings.Count(r.stdout, "$ sockctl "); n != 21 {
		t.Errorf("%d commands shown, want 21", n)
	}
}

// Against a given agent, the demo leaves its socket table empty (startAgent checks).
func TestDemoAgainstAgent(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	r := sockctl(t, addr, "demo")
	r.want(t, ExitOK, []string{"# demo passed"}, nil)
	if strings.Contains(r.stdout, "in-process") {
		t.Errorf("demo started its own agent although --agent was given")
	}
	// An unreachable agent fails before the first step (opening the demo's session), exit 1.
	gone := closedPort(t)
	r = sockctl(t, gone, "demo")
	r.want(t, ExitFailure, nil, []string{"sockctl: demo: cannot reach agent " + gone + ": "})
	if r.stdout != "" {
		t.Errorf("steps ran on an unreachable agent:\n%s", r.stdout)
	}
}

// On another agent the demo's sockets live in a leased session of its own, closed at the end.
func TestDemoLeased(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	r := sockctl(t, addr, "demo")
	r.want(t, ExitOK, []string{"# demo passed"}, nil)
	if !regexp.MustCompile(`\n(s[0-9a-f]{6}-\d+ +tcp +listener +open +127\.0\.0\.1:\d+ +- +0 +0 +[0-9a-f]{16} )`).MatchString(r.stdout) {
		t.Errorf("the demo's listener is not in a session:\n%s", r.stdout)
	}
	if r := ok(t, addr, "sessions", "ls", "-o", "id"); r.stdout != "" {
		t.Errorf("sessions left after the demo: %q", r.stdout)
	}
}
