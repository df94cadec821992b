package runner

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
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
