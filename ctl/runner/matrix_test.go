package runner

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/localagent"
	"github.com/sockagent/sockagent/ctl/matrix/spec"
	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// parseScenario writes src to a file of the test's and parses it.
func parseScenario(t *testing.T, src string) *scenario.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := scenario.Parse(path, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// freePort is a TCP port nothing listens on at 127.0.0.1 just now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// sockets lists the sockets open on the agent at addr.
func sockets(t *testing.T, addr string) []*sockagentv1.Socket {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := sockagentv1.NewSocketServiceClient(conn).ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetSockets()
}

// A matrix step whose cells are all open passes, says how many, and closes what it opened as
// it ends: a second matrix on the same fixed port of a (not in-process) agent passes too, and
// the agent is left with no socket. The matrix's agents are picked by name, label and all.
func TestMatrixStepOpen(t *testing.T) {
	t.Parallel()
	remote, err := localagent.Start(agent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	port := freePort(t)
	f := parseScenario(t, fmt.Sprintf(`name: m
agents:
  a: local
  b: {address: local, labels: {role: web}}
  r: %s
steps:
  - matrix:
      services: {web: {network: tcp, port: %d}, log: {network: udp, port: %d}}
      sources: [all]
      targets: [a, {role: web}, r]
      expect: {default: open}
      probe: {timeout: 500ms, spacing: 50ms}
  - name: again
    matrix: {services: {web: {network: tcp, port: %d}}, sources: [a], targets: [r], expect: {default: open}}
    expect: {within: 5s}
`, remote.Addr(), port, port, port))
	start := time.Now()
	rep, _ := timedRun(Config{File: f, SessionTTL: DefaultSessionTTL})
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("the run took %s", el)
	}
	if !rep.OK() || rep.Passed != 2 || len(rep.Steps) != 2 {
		t.Fatalf("%d passed, %d failed: %+v", rep.Passed, rep.Failed, rep.Steps)
	}
	s := rep.Steps[0]
	// 3 sources x 3 targets, less the 3 cells of an agent with itself, x 2 services.
	if s.Name != "matrix web, log" || s.Agent != "" || s.Action != "matrix" || s.Figures["cells"] != 12 || s.Figures["mismatches"] != 0 ||
		!strings.HasPrefix(s.Message, "12 cells as expected (3 sources x 3 targets x 2 services) in ") || s.Mismatches != nil {
		t.Errorf("step 1: %+v", s)
	}
	if s := rep.Steps[1]; s.Name != "again" || s.Figures["cells"] != 1 || !strings.HasPrefix(s.Message, "1 cells as expected (1 sources x 1 targets x 1 services)") {
		t.Errorf("step 2: %+v", s)
	}
	if len(rep.Cleanup) != 0 {
		t.Errorf("the run's cleanup closed %+v; the steps should have", rep.Cleanup)
	}
	if left := sockets(t, remote.Addr()); len(left) != 0 {
		t.Errorf("agent r has %d sockets open: %v", len(left), left)
	}
}

// A cell that is not as expected fails the step with EXPECTATION_FAILED, and the report lists
// exactly that cell: source, target, service, verdict, expected. In a network namespace of
// its own (the test binary runs itself there), nftables refuses one of the two ports a
// (not in-process) agent serves.
func TestMatrixStepClosedPort(t *testing.T) {
	if os.Getenv("SOCKCTL_MATRIX_NETNS") == "" {
		needNetns(t)
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

// needNetns skips (fails with CI set) a test that needs root, ip and nft.
func needNetns(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root for network namespaces"
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			why = tool + " not found (iproute2, nftables)"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI must run this test, but it %s", why)
	}
	t.Skip("skipping: " + why)
}

// The message lists the first maxShownCells cells and counts the rest; the report's form
// keeps every field of every cell.
func TestMismatchText(t *testing.T) {
	t.Parallel()
	var bad []spec.Cell
	for i := range maxShownCells + 2 {
		bad = append(bad, spec.Cell{Source: "s", Target: "t" + strconv.Itoa(i), Service: "web", Verdict: spec.Filtered, Expected: spec.Open, Reason: "TIMEOUT", Message: "m", Address: "a"})
	}
	bad[1].Reason = ""
	got := mismatchText(bad, 20)
	want := "12 of 20 cells not as expected: s -> t0 web: filtered, expected open (TIMEOUT); s -> t1 web: filtered, expected open;" +
		" s -> t2 web: filtered, expected open (TIMEOUT)"
	if !strings.HasPrefix(got, want) || strings.Contains(got, "t10 ") || !strings.HasSuffix(got, "s -> t9 web: filtered, expected open (TIMEOUT); and 2 more (-o json lists them all)") {
		t.Errorf("%s", got)
	}
	if got := mismatchText(bad[:maxShownCells], 10); strings.Contains(got, "more") || !strings.HasSuffix(got, "t9 web: filtered, expected open (TIMEOUT)") {
		t.Errorf("%s", got)
	}
	cells := matrixCells(bad[:1])
	if len(cells) != 1 || cells[0] != (MatrixCell{Source: "s", Target: "t0", Service: "web", Verdict: "filtered", Expected: "open", Reason: "TIMEOUT", Message: "m", Address: "a"}) {
		t.Errorf("%+v", cells)
	}
	if matrixCells(nil) != nil {
		t.Error("no cells: want nil, so that the report leaves mismatches out")
	}
}
