package ctl

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	own := "sockctl " + contract.ReadBuild().String() + "\n"
	v1 := contract.Build{Version: "v1.4.0", Revision: "a0b1f5ddaf3586652444490cc2a5404cf4d94ab4", GoVersion: "go1.26.8", Platform: "linux/amd64"}
	v1line := "sockctl v1.4.0 (revision a0b1f5ddaf3586652444490cc2a5404cf4d94ab4, go1.26.8 linux/amd64)\n"
	same := startAgentConfig(t, agent.Config{Version: "v1.9.1"})
	newer := startAgentConfig(t, agent.Config{Version: "v2.0.0-rc.1"})
	weird := startAgentConfig(t, agent.Config{Version: "v1.0.0\x1b[2J"})
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	agentLine := func(version, addr string) string {
		return "agent " + version + " (" + addr + ", host " + host + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	}
	for _, tc := range []struct {
		name           string
		in             invocation
		code           int
		stdout, stderr string
	}{
		{"own only", invocation{args: []string{"version"}}, 0, own, ""},
		{"own only, versioned", invocation{build: &v1, args: []string{"version"}}, 0, v1line, ""},
		{"agent from --agent", invocation{build: &v1, args: []string{"--agent", same, "version"}}, 0,
			v1line + agentLine("v1.9.1", same), ""},
		{"agent from the environment", invocation{build: &v1, env: map[string]string{envAgent: same}, args: []string{"version"}}, 0,
			v1line + agentLine("v1.9.1", same), ""},
		{"major mismatch", invocation{build: &v1, args: []string{"--agent", newer, "version"}}, 0,
			v1line + agentLine("v2.0.0-rc.1", newer),
			`sockctl: warning: sockctl is v1.4.0 and the agent v2.0.0-rc.1: their major versions differ, so calls may fail or mean something else; use a sockctl of the agent's major version (v2)` + "\n"},
		{"development build compares nothing", invocation{args: []string{"--agent", newer, "version"}}, 0,
			own + agentLine("v2.0.0-rc.1", newer), ""},
		// The agent's version is the agent's to choose: shown escaped, never as terminal codes.
		{"agent version escaped", invocation{build: &v1, args: []string{"--agent", weird, "version"}}, 0,
			v1line + agentLine(`v1.0.0\x1b[2J`, weird), ""},
		{"unreachable agent", invocation{build: &v1, args: []string{"--agent", closedPort(t), "version"}}, 1, v1line, "cannot reach agent"},
		{"arguments", invocation{args: []string{"version", "x"}}, 2, "", "takes no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.in.exec(t)
			stderrOK := r.stderr == tc.stderr
			if tc.code != 0 {
				stderrOK = strings.Contains(r.stderr, tc.stderr)
			}
			if r.code != tc.code || r.stdout != tc.stdout || !stderrOK {
				t.Errorf("exit %d, want %d\nstdout %q\nwant   %q\nstderr %q\nwant   %q", r.code, tc.code, r.stdout, tc.stdout, r.stderr, tc.stderr)
			}
		})
	}
}

func TestMajorMismatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ctl, agent string
		warn       bool
	}{
		{"v1.2.3", "v1.9.0", false},
		{"v1.2.3", "v2.0.0", true},
		{"v2.0.0", "v1.2.3", true},
		{"v0.0.0-20261206003642-a0b1f5ddaf35+dirty", "v0.3.0", false},
		{"v0.3.0", "v1.0.0", true},
		{"dev", "v2.0.0", false},
		{"v2.0.0", "dev", false},
		{"dev", "dev", false},
		{"v1.0.0", "1.0.0", false}, // not a Go version: nothing to compare
	} {
		got := majorMismatch(tc.ctl, tc.agent)
		if (got != "") != tc.warn {
			t.Errorf("majorMismatch(%q, %q) = %q, want a warning %v", tc.ctl, tc.agent, got, tc.warn)
		}
		if tc.warn && (!strings.Contains(got, "sockctl is "+tc.ctl+" and the agent "+tc.agent) || !strings.Contains(got, "major versions differ")) {
			t.Errorf("majorMismatch(%q, %q) = %q: does not name both versions", tc.ctl, tc.agent, got)
		}
	}
}
