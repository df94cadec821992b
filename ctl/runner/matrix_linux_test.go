package runner

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/localagent"
	"github.com/sockagent/sockagent/lab/labtest"
)

// A cell that is not as expected fails the step with EXPECTATION_FAILED, and the report lists
// exactly that cell: source, target, service, verdict, expected. In a network namespace of
// its own (the test binary runs itself there), nftables refuses one of the two ports a
// (not in-process) agent serves.
func TestMatrixStepClosedPort(t *testing.T) {
	if os.Getenv("SOCKCTL_MATRIX_NETNS") == "" {
		labtest.NeedNetns(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestMatrixStepClosedPort$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "SOCKCTL_MATRIX_NETNS=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestMatrixStepClosedPort") {
			t.Fatalf("in a namespace of its own: %v\n%s", err, out)
		}
		return
	}
	// In the namespace: loopback up, and TCP to port 7812 refused.
	for _, args := range [][]string{{"ip", "link", "set", "lo", "up"},
		{"nft", "add table inet m\nadd chain inet m in { type filter hook input priority 0; }\nadd rule inet m in tcp dport 7812 reject with tcp reset"}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	remote, err := localagent.Start(agent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	f := parseScenario(t, fmt.Sprintf(`agents: {a: local, t: %s}
steps:
  - matrix:
      services: {web: {network: tcp, port: 7811}, db: {network: tcp, port: 7812}}
      sources: all
      targets: all
      expect: {default: open}
      probe: {timeout: 300ms, spacing: 20ms}
  - {on: a, sleep: {duration: 1ms}}
`, remote.Addr()))
	start := time.Now()
	rep, _ := timedRun(Config{File: f, SessionTTL: DefaultSessionTTL})
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("the run took %s", el)
	}
	if rep.OK() || rep.Failed != 1 || rep.Skipped != 1 || len(rep.Steps) != 2 {
		t.Fatalf("%d passed, %d failed, %d skipped: %+v", rep.Passed, rep.Failed, rep.Skipped, rep.Steps)
	}
	s := rep.Steps[0]
	want := []MatrixCell{{Source: "a", Target: "t", Service: "db", Verdict: "closed", Expected: "open", Reason: contract.ReasonConnectionRefused}}
	if len(s.Mismatches) != 1 {
		t.Fatalf("mismatches %+v, want %+v", s.Mismatches, want)
	}
	got := s.Mismatches[0]
	got.Message, got.Address = "", ""
	if got != want[0] || !strings.HasSuffix(s.Mismatches[0].Address, ":7812") {
		t.Errorf("mismatch %+v, want %+v at port 7812", s.Mismatches[0], want[0])
	}
	if s.Status != StatusFailed || s.Reason != contract.ReasonExpectationFailed || s.Figures["cells"] != 4 || s.Figures["mismatches"] != 1 ||
		s.Message != "failed: EXPECTATION_FAILED: 1 of 4 cells not as expected: a -> t db: closed, expected open (CONNECTION_REFUSED) (measured: 4 cells: 2 sources x 2 targets x 2 services)" {
		t.Errorf("step 1: %+v", s)
	}
	if left := sockets(t, remote.Addr()); len(left) != 0 {
		t.Errorf("agent t has %d sockets open: %v", len(left), left)
	}
}
