package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sockctlBin, "run", file, "-o", "json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// The accept on b is pending once b's listener shows one pending call.
	deadline := time.Now().Add(15 * time.Second)
	for pending := false; !pending; {
		r, err := b.sockets().ListSockets(ctxT(t), &sockagentv1.ListSocketsRequest{})
		if err != nil {
			t.Fatalf("list b: %v", err)
		}
		for _, s := range r.GetSockets() {
			pending = pending || s.GetPendingCalls() == 1
		}
		select {
		case err := <-exited:
			t.Fatalf("sockctl exited (%v) before the accept on b was pending:\n%s\n%s", err, stdout.String(), stderr.String())
		default:
		}
		if !pending && time.Now().After(deadline) {
			t.Fatalf("no call pending on b after 15s: %v", r.GetSockets())
		}
		time.Sleep(time.Millisecond) // polling interval; the condition above decides
	}
	if err := b.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killed := time.Now()
	var runErr error
	select {
	case runErr = <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("sockctl still running 10s (the step's timeout) after agent b was killed:\n%s", stderr.String())
	}
	took := time.Since(killed)
	t.Logf("sockctl ended %s after SIGKILL", took.Round(time.Millisecond))
	if ee, ok := runErr.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("sockctl run: %v, want exit status 1\nstderr: %s", runErr, stderr.String())
	}

	var rep struct {
		Steps []struct {
			Index, Agent, Action, Status, Reason, Message string
		}
		Cleanup []struct {
			Agent, Socket, Alias, Status, Error string
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("sockctl -o json: %v\n%s", err, stdout.String())
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
		t.Errorf("report lacks the accept on b or the step after it:\n%s", stdout.String())
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
