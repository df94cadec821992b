package ctl

import (
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
	// An unreachable agent fails on the first step, exit 1.
	r = sockctl(t, closedPort(t), "demo")
	r.want(t, ExitFailure, []string{"(stderr) sockctl: cannot reach agent"}, []string{"demo: step 1"})
}
