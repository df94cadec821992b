package ctl

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sockagent/sockagent/ctl/client"
	"github.com/sockagent/sockagent/ctl/runner"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// writeScenario writes a scenario file into the test's directory and returns its path.
func writeScenario(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// loopbackExample copies examples/NAME with its n listeners on 0.0.0.0:0 moved to 127.0.0.1:0,
// and fails if the file has another count of them or any other wildcard address: tests never
// listen on every interface of the host.
func loopbackExample(t *testing.T, name string, n int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if got := strings.Count(text, `address: "0.0.0.0:0"`); got != n {
		t.Fatalf("examples/%s: %d listeners on 0.0.0.0:0, want %d", name, got, n)
	}
	text = strings.ReplaceAll(text, `address: "0.0.0.0:0"`, `address: "127.0.0.1:0"`)
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") && (strings.Contains(line, "0.0.0.0") || strings.Contains(line, "[::]")) {
			t.Fatalf("examples/%s: a wildcard address left: %s", name, line)
		}
	}
	return writeScenario(t, name, text)
}

func runArgs(t *testing.T, args ...string) result {
	t.Helper()
	return invocation{args: append([]string{"run"}, args...)}.exec(t)
}

const helloTCP = `name: hello tcp
agents: {server: local, client: local}
steps:
  - {on: server, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - parallel:
      - {on: server, accept: {socket: lis, timeout: 5s}, as: conn}
      - {on: client, dial: {network: tcp, address: "${server.host}:${lis.local_port}"}, as: cli}
  - {on: client, send: {socket: cli, data: "Hello, World!"}, expect: {bytes: 13}}
  - {on: server, recv: {socket: conn, exact_bytes: 13, timeout: 2s}, expect: {data: "Hello, World!"}}
  - {on: server, send: {socket: conn, data: "Hello, World!"}}
  - {on: client, recv: {socket: cli, exact_bytes: 13, timeout: 2s}, expect: {data: "Hello, World!", within: 2s}}
  - {on: client, close: {socket: cli}}
  - {on: server, recv: {socket: conn, timeout: 2s}, expect: {eof: true}}
  - {on: client, dial: {network: tcp, address: "127.0.0.1:${lis.local_port}"}, as: again}
`

func TestRunLocalHello(t *testing.T) {
	t.Parallel()
	p := writeScenario(t, "hello.yaml", helloTCP)
	r := runArgs(t, p)
	r.want(t, ExitOK, []string{
		"STEP       AGENT      ACTION    RESULT",
		"\n2.1        server     accept    ok",
		"\n4          server     recv      ok ",
		`got 13 bytes "Hello, World!"`,
		"cleanup: 3 socket(s) closed\n", // lis, conn and again; cli was closed by a step
		"\n10 passed, 0 failed\n",
	}, nil)
	if !strings.HasSuffix(r.stdout, "10 passed, 0 failed\n") {
		t.Errorf("the report does not end with the count line:\n%s", r.stdout)
	}
}

// agentClient connects to an agent the test started, to watch its socket table.
func agentClient(t *testing.T, addr string) sockagentv1.SocketServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return sockagentv1.NewSocketServiceClient(cc)
}

const failing = `name: fails at step 4
agents: {a: local, b: local}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: b, dial: {network: tcp, address: "${a.host}:${lis.local_port}"}, as: cli}
  - {on: a, accept: {socket: lis}, as: srv}
  - {name: nothing was sent, on: a, recv: {socket: srv, timeout: 100ms}, expect: {data: "x"}}
  - {on: b, send: {socket: cli, data: "late"}}
  - parallel:
      - {on: a, recv: {socket: srv, exact_bytes: 4}, expect: {data: "late"}}
`

// The first failure stops the run; later steps are skipped; every socket is closed on every
// agent (startAgent checks the tables are empty).
func TestRunFailureCleansUp(t *testing.T) {
	t.Parallel()
	a, b := startAgent(t), startAgent(t)
	p := writeScenario(t, "fail.yaml", failing)
	r := runArgs(t, p, "--agent", "a="+a, "--agent", "b="+b)
	r.want(t, ExitFailure, []string{
		"\n4          a          recv      FAIL ",
		"TIMEOUT",
		"\n5          b          send      skip ",
		"\n6.1        a          recv      skip ",
		"cleanup: 3 socket(s) closed\n",
		"\n3 passed, 1 failed, 2 skipped\n",
	}, []string{"run " + p + ": 1 of 6 steps failed"})
}

func TestRunKeepGoing(t *testing.T) {
	t.Parallel()
	p := writeScenario(t, "fail.yaml", failing)
	r := runArgs(t, p, "--keep-going")
	r.want(t, ExitFailure, []string{"\n5 passed, 1 failed\n", "\n6.1        a          recv      ok "}, nil)
}

// Ctrl-C during a blocked step: the run ends at once and still closes everything.
func TestRunCancelCleansUp(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	sc := agentClient(t, addr)
	p := writeScenario(t, "block.yaml", `name: blocks
agents: {a: local}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: a, accept: {socket: lis, timeout: 1m}}
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type res struct {
		code int
		out  strings.Builder
	}
	done := make(chan *res, 1)
	go func() {
		r := &res{}
		var errOut strings.Builder
		r.code = run(ctx, []string{"run", p, "--agent", "a=" + addr}, nil, nil, &r.out, &errOut)
		done <- r
	}()
	waitFor(t, func() bool { // the accept is blocked in the agent
		l, err := sc.ListSockets(context.Background(), &sockagentv1.ListSocketsRequest{})
		return err == nil && len(l.GetSockets()) == 1 && l.GetSockets()[0].GetPendingCalls() == 1
	})
	start := time.Now()
	cancel()
	r := <-done
	if r.code != ExitFailure {
		t.Errorf("exit %d, want 1", r.code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("run took %s to stop after cancel", d)
	}
	for _, want := range []string{"cleanup: 1 socket(s) closed", "interrupted", "1 passed, 1 failed"} {
		if !strings.Contains(r.out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, r.out.String())
		}
	}
}

// waitFor polls cond until it holds, for at most 10s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(2 * time.Millisecond) // polling interval; the condition decides
	}
}

func TestRunExpectedErrorAndRepeat(t *testing.T) {
	t.Parallel()
	p := writeScenario(t, "refused.yaml", `name: refused and fan-in
agents: {srv: local, cli: local}
vars: {n: "3"}
steps:
  - {on: srv, listen: {network: tcp, address: "127.0.0.1:0"}, as: gone}
  - {on: srv, close: {socket: gone}}
  - {on: cli, dial: {network: tcp, address: "${gone.local_address}"}, expect: {error: CONNECTION_REFUSED}}
  - {on: srv, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - repeat:
      count: 3
      steps:
        - {on: cli, dial: {network: tcp, address: "${srv.host}:${lis.local_port}"}, as: "c${i}"}
        - {on: srv, accept: {socket: lis}, as: "sv${i}"}
        - {on: cli, send: {socket: "c${i}", data: "client ${i} of ${vars.n}"}}
        - {on: srv, recv: {socket: "sv${i}", timeout: 2s}, expect: {data: "client ${i} of ${vars.n}"}}
`)
	r := runArgs(t, p, "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var rep runner.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("-o json is not one JSON document: %v\n%s", err, r.stdout)
	}
	if rep.Passed != 16 || rep.Failed != 0 || len(rep.Steps) != 16 || len(rep.Agents) != 2 {
		t.Errorf("report: %d passed %d failed, %d steps, %d agents", rep.Passed, rep.Failed, len(rep.Steps), len(rep.Agents))
	}
	s := rep.Steps[2]
	if s.Index != "3" || s.Status != runner.StatusPassed || s.Reason != "CONNECTION_REFUSED" || !strings.HasPrefix(s.Message, "failed as expected") {
		t.Errorf("expected-error step: %+v", s)
	}
	last := rep.Steps[len(rep.Steps)-1]
	if last.Index != "5[2].4" || last.Message != `got 13 bytes "client 2 of 3"` {
		t.Errorf("last step: %+v", last)
	}
	if len(rep.Cleanup) != 7 { // lis, c0-c2, sv0-sv2
		t.Errorf("cleanup closed %d sockets, want 7: %+v", len(rep.Cleanup), rep.Cleanup)
	}
}

// An agent whose address refuses the connection is unreachable at once, not after the 5 s
// an agent that does not answer is given.
func TestRunUnreachableAgent(t *testing.T) {
	t.Parallel()
	p := writeScenario(t, "hello.yaml", helloTCP)
	down := closedPort(t)
	t0 := time.Now()
	r := runArgs(t, p, "--agent", "client="+down)
	el := time.Since(t0)
	r.want(t, ExitFailure, []string{"agent client (" + down + ") unreachable: ", "connection refused", "0 passed, 0 failed"},
		[]string{"agent(s) unreachable: client; no step ran"})
	if strings.Contains(r.stdout, "STEP ") {
		t.Errorf("steps ran although an agent was unreachable:\n%s", r.stdout)
	}
	// The lower bound: the in-process server agent was started and reached (a few ms).
	if el < time.Millisecond || el > time.Second {
		t.Errorf("refused agent found unreachable after %s, want 1ms..1s", el)
	}
}

// An agent that accepts the connection and never answers is given client.ConnectTimeout.
func TestRunSilentAgent(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 4)
	go func() { // accept and hold: no HTTP/2 settings ever come back
		for {
			c, err := lis.Accept()
			if err != nil {
				close(held)
				return
			}
			held <- c
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		for c := range held {
			c.Close()
		}
	})
	p := writeScenario(t, "hello.yaml", helloTCP)
	t0 := time.Now()
	r := runArgs(t, p, "--agent", "client="+lis.Addr().String())
	el := time.Since(t0)
	r.want(t, ExitFailure, []string{"agent client (" + lis.Addr().String() + ") unreachable: no answer within 5s"}, nil)
	if el < client.ConnectTimeout || el > client.ConnectTimeout+3*time.Second {
		t.Errorf("silent agent found unreachable after %s, want %s..%s", el, client.ConnectTimeout, client.ConnectTimeout+3*time.Second)
	}
}

func TestRunJUnit(t *testing.T) {
	t.Parallel()
	p := writeScenario(t, "fail.yaml", failing)
	junit := filepath.Join(t.TempDir(), "report.xml")
	r := runArgs(t, p, "--junit", junit)
	if r.code != ExitFailure {
		t.Fatalf("exit %d", r.code)
	}
	data, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var js struct { // what CI servers read of the JUnit XML
		Suites []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Skipped  int    `xml:"skipped,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Type string `xml:"type,attr"`
					Text string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &js); err != nil {
		t.Fatalf("JUnit XML does not parse: %v\n%s", err, data)
	}
	if len(js.Suites) != 1 {
		t.Fatalf("%d suites", len(js.Suites))
	}
	s := js.Suites[0]
	if s.Name != "fails at step 4" || s.Tests != 6 || s.Failures != 1 || s.Skipped != 2 || len(s.Cases) != 6 {
		t.Errorf("suite %s: tests %d failures %d skipped %d cases %d", s.Name, s.Tests, s.Failures, s.Skipped, len(s.Cases))
	}
	f := s.Cases[3].Failure
	if s.Cases[3].Name != "4 nothing was sent" || f == nil || f.Type != "TIMEOUT" ||
		!strings.Contains(f.Text, fmt.Sprintf("%s:7: step 4 on a: recv", p)) {
		t.Errorf("failing case: %+v %+v", s.Cases[3], f)
	}
}

func TestRunBadInput(t *testing.T) {
	t.Parallel()
	p := writeScenario(t, "hello.yaml", helloTCP)
	r := runArgs(t, p, "--agent", "nobody=127.0.0.1:1")
	r.want(t, ExitUsage, nil, []string{`has no agent "nobody" (its agents: client, server)`})
	r = runArgs(t, p, "--agent", "server")
	r.want(t, ExitUsage, nil, []string{"write NAME=HOST:PORT"})
	bad := writeScenario(t, "bad.yaml", "name: x\nagents: {a: local}\nsteps:\n  - {on: b, listen: {network: tcp, address: \"127.0.0.1:0\"}}\n")
	r = runArgs(t, bad)
	if r.code != ExitUsage || !strings.HasPrefix(r.stderr, bad+":4:") {
		t.Errorf("exit %d, stderr %q; want 2 and %s:4:COL: ...", r.code, r.stderr, bad)
	}
	r = invocation{args: []string{"validate", p, bad}}.exec(t)
	if r.code != ExitUsage || !strings.Contains(r.stdout, p+": ok: 10 steps, 2 agents") || !strings.Contains(r.stderr, bad+":4:") {
		t.Errorf("validate: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestRunInventory(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	inv := writeScenario(t, "inv.yaml", fmt.Sprintf("agents:\n  server: %s\n  client: %s\n  other: 127.0.0.1:1\n", a, a))
	p := writeScenario(t, "hello.yaml", helloTCP)
	r := runArgs(t, p, "--inventory", inv, "-o", "json")
	var rep runner.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != ExitOK {
		t.Fatalf("exit %d, %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	for _, ag := range rep.Agents {
		if ag.Address != a {
			t.Errorf("agent %s at %s, want %s from the inventory", ag.Name, ag.Address, a)
		}
	}
}

// TestRunAliasNotCreated: with --keep-going, a step naming the alias of a dial that failed fails
// as a scenario error that says so; it neither sends the alias as a socket id (UNKNOWN_SOCKET
// with a restart hint) nor acts on another socket.
func TestRunAliasNotCreated(t *testing.T) {
	t.Parallel()
	p := writeScenario(t, "alias.yaml", `name: alias of a failed dial
agents: {a: local}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: a, close: {socket: lis}}
  - {on: a, dial: {network: tcp, address: "${lis.local_address}", timeout: 2s}, as: c}
  - {on: a, send: {socket: c, data: x}}
  - {on: a, dial: {network: tcp, address: "${lis.local_address}", timeout: 2s}, as: d, expect: {error: CONNECTION_REFUSED}}
  - {on: a, close: {socket: d}}
`)
	r := runArgs(t, p, "--keep-going", "-o", "json")
	var rep runner.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, r.stdout)
	}
	if r.code != ExitFailure || len(rep.Steps) != 6 {
		t.Fatalf("exit %d, %d steps\n%s", r.code, len(rep.Steps), r.stdout)
	}
	for i, want := range []struct{ status, reason, msg string }{
		2: {runner.StatusFailed, "CONNECTION_REFUSED", ""},
		3: {runner.StatusFailed, "SCENARIO_ERROR", "alias c was not created: step 3 failed"},
		4: {runner.StatusPassed, "CONNECTION_REFUSED", ""},
		5: {runner.StatusFailed, "SCENARIO_ERROR", "alias d was not created: step 5 expected an error"},
	} {
		if i < 2 {
			continue
		}
		s := rep.Steps[i]
		if s.Status != want.status || s.Reason != want.reason || !strings.Contains(s.Message, want.msg) {
			t.Errorf("step %s: %s %s %q; want %s %s %q", s.Index, s.Status, s.Reason, s.Message, want.status, want.reason, want.msg)
		}
	}
}
