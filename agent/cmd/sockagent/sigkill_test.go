package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// TestSIGKILLMidScenario: three sockagent processes; `sockctl run` blocks on agent b (an
// accept with a 10s timeout) while a and c hold sockets of the run. b is killed with SIGKILL.
// The run must end within the step's timeout with exit 1, that step failed as
// AGENT_UNAVAILABLE (the agent, not the target), the later steps skipped, cleanup done on a
// and c (nothing left open there) and reported failed for b's sockets.
func TestSIGKILLMidScenario(t *testing.T) {
	t.Parallel()
	a, b, c := startLocal(t), startLocal(t), startLocal(t)
	file := filepath.Join(t.TempDir(), "kill.yaml")
	scenario := fmt.Sprintf(`name: agent b killed mid-run
agents:
  a: %s
  b: %s
  c: %s
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: la}
  - {on: b, listen: {network: tcp, address: "127.0.0.1:0"}, as: lb}
  - {on: c, listen: {network: tcp, address: "127.0.0.1:0"}, as: lc}
  - parallel:
      - {on: a, accept: {socket: la, timeout: 5s}, as: from_c}
      - {on: c, dial: {network: tcp, address: "127.0.0.1:${la.local_port}", timeout: 5s}, as: to_a}
  - {on: b, name: b waits for a peer, accept: {socket: lb, timeout: 10s}, as: never}
  - {on: c, send: {socket: to_a, data: "not sent"}}
`, a.addr, b.addr, c.addr)
	if err := os.WriteFile(file, []byte(scenario), 0o600); err != nil {
		t.Fatal(err)
	}

	run := startSockctl(t, "run", file, "-o", "json")
	waitCallPending(t, b, run)
	if err := b.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killed := time.Now()
	var runErr error
	select {
	case runErr = <-run.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("sockctl still running 10s (the step's timeout) after agent b was killed:\n%s", run.stderr.String())
	}
	t.Logf("sockctl ended %s after SIGKILL", time.Since(killed).Round(time.Millisecond))
	if ee, ok := runErr.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("sockctl run: %v, want exit status 1\nstderr: %s", runErr, run.stderr.String())
	}
	checkKillReport(t, run.stdout.Bytes())
	for _, p := range []*proc{a, c} {
		info, err := sockagentv1.NewAgentServiceClient(p.conn).GetInfo(ctxT(t), &sockagentv1.GetInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if n := info.GetOpenSockets(); n != 0 {
			t.Errorf("agent at %s: %d sockets open after the run, want 0 (cleanup finished)", p.addr, n)
		}
	}
}

// sockctlRun is a sockctl process running in the background.
type sockctlRun struct {
	stdout, stderr bytes.Buffer
	exited         chan error // Wait's result
}

// startSockctl starts the sockctl binary with args, bounded to 30s.
func startSockctl(t *testing.T, args ...string) *sockctlRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	r := &sockctlRun{exited: make(chan error, 1)}
	cmd := exec.CommandContext(ctx, sockctlBin, args...)
	dieWithTest(cmd)
	cmd.Stdout, cmd.Stderr = &r.stdout, &r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exited <- cmd.Wait() }()
	return r
}

// waitCallPending waits until one of p's sockets has a call pending, failing the test if
// run ends first or nothing is pending within 15s.
func waitCallPending(t *testing.T, p *proc, run *sockctlRun) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := p.sockets().ListSockets(ctxT(t), &sockagentv1.ListSocketsRequest{})
		if err != nil {
			t.Fatalf("list %s: %v", p.addr, err)
		}
		if slices.ContainsFunc(r.GetSockets(), func(s *sockagentv1.Socket) bool { return s.GetPendingCalls() == 1 }) {
			return
		}
		select {
		case err := <-run.exited:
			t.Fatalf("sockctl exited (%v) before a call was pending on %s:\n%s\n%s", err, p.addr, run.stdout.String(), run.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no call pending on %s after 15s: %v", p.addr, r.GetSockets())
		}
		time.Sleep(time.Millisecond) // polling interval; the condition above decides
	}
}

// checkKillReport checks the JSON report of the run whose agent b was killed: the accept on
// b failed as AGENT_UNAVAILABLE, the step after it was skipped, every other step passed,
// and cleanup closed a's and c's sockets and failed on b's, saying the agent is unavailable.
func checkKillReport(t *testing.T, report []byte) {
	t.Helper()
	var rep struct {
		Steps []struct {
			Index, Agent, Action, Status, Reason, Message string
		}
		Cleanup []struct {
			Agent, Socket, Alias, Status, Error string
		}
	}
	if err := json.Unmarshal(report, &rep); err != nil {
		t.Fatalf("sockctl -o json: %v\n%s", err, report)
	}
	var killedStep, after bool
	for _, s := range rep.Steps {
		switch {
		case s.Agent == "b" && s.Action == "accept":
			killedStep = true
			if s.Status != "failed" || s.Reason != "AGENT_UNAVAILABLE" {
				t.Errorf("step %s (accept on b): %s %s %q, want failed AGENT_UNAVAILABLE", s.Index, s.Status, s.Reason, s.Message)
			}
		case s.Action == "send":
			after = true
			if s.Status != "skipped" {
				t.Errorf("step %s after the failure: %s, want skipped", s.Index, s.Status)
			}
		case s.Status != "passed":
			t.Errorf("step %s (%s on %s): %s %s %s, want passed", s.Index, s.Action, s.Agent, s.Status, s.Reason, s.Message)
		}
	}
	if !killedStep || !after {
		t.Errorf("report lacks the accept on b or the step after it:\n%s", report)
	}
	want := map[string]string{"a/la": "closed", "a/from_c": "closed", "b/lb": "failed", "c/lc": "closed", "c/to_a": "closed"}
	got := map[string]string{}
	for _, c := range rep.Cleanup {
		got[c.Agent+"/"+c.Alias] = c.Status
		if c.Agent == "b" && !strings.Contains(c.Error, "agent unavailable") {
			t.Errorf("cleanup of %s on b: error %q, want it to say the agent is unavailable", c.Alias, c.Error)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("cleanup %v, want %v", got, want)
	}
}
