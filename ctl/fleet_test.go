package ctl

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// fleetSocket is a socket a fleet test opened: its agent, id and local address.
type fleetSocket struct {
	agent, addr, id, local string
}

// openSocket opens a socket with args (listen or bind) on the agent at addr and closes it at
// the end of the test.
func openSocket(t *testing.T, agent, addr string, args ...string) fleetSocket {
	t.Helper()
	id := strings.TrimSpace(ok(t, addr, append([]string{"-o", "id"}, args...)...).stdout)
	t.Cleanup(func() { sockctl(t, addr, "close", id) })
	var s sockagentv1.GetSocketResponse
	okJSON(t, addr, &s, "get", id)
	return fleetSocket{agent: agent, addr: addr, id: id, local: s.GetSocket().GetLocalAddress()}
}

// tabTable aligns rows as the single-agent tables are aligned (text/tabwriter, padding 2):
// the oracle of the fleet tables' alignment.
func tabTable(rows ...string) string {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, r)
	}
	_ = tw.Flush()
	return buf.String()
}

// oneDigitSeconds makes ages and idle times of up to 9s read 0s: a loaded machine may take
// a second between opening a socket and listing it.
var oneDigitSeconds = regexp.MustCompile(`\b[0-9]s\b`)

// writeInventory writes an inventory file and returns its path.
func writeInventory(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "inv.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Three agents with known sockets, given in no order: one table, AGENT first, rows by agent
// and then in each agent's order (oldest first), aligned as the one-agent table is; a
// served socket's note line follows, prefixed with its agent, as the one-agent ls prints it.
func TestFleetLsThreeAgents(t *testing.T) {
	t.Parallel()
	h1, h2, h3 := startAgent(t), startAgent(t), startAgent(t)
	l1 := openSocket(t, "h1", h1, "listen", "tcp", "127.0.0.1:0")
	u1 := openSocket(t, "h1", h1, "bind", "udp", "127.0.0.1:0")
	l2 := openSocket(t, "h2", h2, "listen", "tcp", "127.0.0.1:0")
	ok(t, h2, "serve", l2.id, "echo")
	single := ok(t, h2, "ls").stdout
	note := strings.SplitN(single, "\n", 3)[2] // under the header and l2's row
	if !strings.HasPrefix(note, l2.id+" serving echo: ") {
		t.Fatalf("single-agent ls of h2 has no serving note:\n%s", single)
	}

	r := invocation{args: []string{"ls", "--agent", "h3=" + h3, "--agent", "h1=" + h1, "--agent", "h2=" + h2}}.exec(t)
	r.want(t, ExitOK, nil, nil)
	if r.stderr != "" {
		t.Errorf("stderr: %q, want nothing", r.stderr)
	}
	want := tabTable(
		"AGENT\t"+socketHeader,
		"h1\t"+l1.id+"\ttcp\tlistener\topen\t"+l1.local+"\t-\t0\t0\t-\t0s\t0s",
		"h1\t"+u1.id+"\tudp\tdatagram\topen\t"+u1.local+"\t-\t0\t0\t-\t0s\t0s",
		"h2\t"+l2.id+"\ttcp\tlistener\topen\t"+l2.local+"\t-\t0\t0\t-\t0s\t0s",
	) + "h2 " + note
	if got := oneDigitSeconds.ReplaceAllString(r.stdout, "0s"); got != want {
		t.Errorf("fleet ls:\n%s\nwant:\n%s", got, want)
	}

	// -o id: the ids, agent by agent.
	r = invocation{args: []string{"ls", "-o", "id", "--agent", "h3=" + h3, "--agent", "h2=" + h2, "--agent", "h1=" + h1}}.exec(t)
	r.want(t, ExitOK, nil, nil)
	if want := l1.id + "\n" + u1.id + "\n" + l2.id + "\n"; r.stdout != want {
		t.Errorf("fleet ls -o id: %q, want %q", r.stdout, want)
	}
}

// One agent given by NAME=ADDR or by its inventory name prints exactly what the one-agent
// command prints.
func TestFleetOneAgentAsToday(t *testing.T) {
	t.Parallel()
	h1 := startAgent(t)
	openSocket(t, "h1", h1, "listen", "tcp", "127.0.0.1:0")
	inv := writeInventory(t, "agents:\n  h1: "+h1+"\n")
	for _, args := range [][]string{{"ls"}, {"ls", "-o", "json"}, {"ls", "-o", "id"}, {"sessions", "ls"}, {"info", "-o", "json"}} {
		today := ok(t, h1, args...)
		for _, form := range [][]string{{"--agent", "h1=" + h1}, {"--inventory", inv, "--agent", "h1"}} {
			r := invocation{args: append(append([]string{}, args...), form...)}.exec(t)
			r.want(t, ExitOK, nil, nil)
			got, want := oneDigitSeconds.ReplaceAllString(r.stdout, "0s"), oneDigitSeconds.ReplaceAllString(today.stdout, "0s")
			if strings.Contains(args[len(args)-1], "json") {
				got, want = uptimes.ReplaceAllString(got, ""), uptimes.ReplaceAllString(want, "")
			}
			if got != want {
				t.Errorf("%v %v:\n%s\nwant as today:\n%s", args, form, got, want)
			}
		}
	}
}

// uptimes are the figures of -o json that change from one call to the next.
var uptimes = regexp.MustCompile(`"(uptime|age|idle)": "[^"]*"`)

// hungAgent is an address that accepts TCP connections and never says anything: an agent
// stuck, or another service on its port. Its connections are closed at the end of the test.
func hungAgent(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return lis.Addr().String()
}

// An agent that refuses, among agents that answer: its row says why and where, in its place
// by name, widening no column; the others' rows are all there; exit 3, and stderr names it.
func TestFleetRefusedAgent(t *testing.T) {
	t.Parallel()
	h1, h4 := startAgent(t), startAgent(t)
	gone := closedPort(t)
	l1 := openSocket(t, "h1", h1, "listen", "tcp", "127.0.0.1:0")
	l4 := openSocket(t, "h4", h4, "listen", "tcp", "127.0.0.1:0")
	r := invocation{args: []string{"ls", "--agent", "h4=" + h4, "--agent", "h3=" + gone, "--agent", "h1=" + h1}}.exec(t)
	r.want(t, ExitUnreachable, nil, nil)
	if want := "sockctl: 1 of 3 agents did not answer: h3\n"; r.stderr != want {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
	table := tabTable(
		"AGENT\t"+socketHeader,
		"h1\t"+l1.id+"\ttcp\tlistener\topen\t"+l1.local+"\t-\t0\t0\t-\t0s\t0s",
		"h4\t"+l4.id+"\ttcp\tlistener\topen\t"+l4.local+"\t-\t0\t0\t-\t0s\t0s",
	)
	lines := strings.SplitAfter(table, "\n")
	idWidth := len(l1.id) + 2
	row := fmt.Sprintf("%-7s%-*sunreachable: connection refused (is sockagent running at %s?)\n", "h3", idWidth, "-", gone)
	want := lines[0] + lines[1] + row + lines[2]
	if got := oneDigitSeconds.ReplaceAllString(r.stdout, "0s"); got != want {
		t.Errorf("fleet ls:\n%s\nwant:\n%s", got, want)
	}

	// -o id says on stderr why an agent has no ids.
	r = invocation{args: []string{"ls", "-o", "id", "--agent", "h3=" + gone, "--agent", "h1=" + h1}}.exec(t)
	r.want(t, ExitUnreachable, nil, nil)
	if r.stdout != l1.id+"\n" {
		t.Errorf("-o id: %q, want %q", r.stdout, l1.id+"\n")
	}
	wantErr := fmt.Sprintf("sockctl: agent h3 (%s): unreachable: connection refused (is sockagent running at %s?)\nsockctl: 1 of 2 agents did not answer: h3\n", gone, gone)
	if r.stderr != wantErr {
		t.Errorf("-o id stderr:\n%q\nwant\n%q", r.stderr, wantErr)
	}

	// Every agent gone is exit 3 too: the table holds their rows only.
	r = invocation{args: []string{"sessions", "ls", "--agent", "x=" + gone, "--agent", "y=unix:" + filepath.Join(t.TempDir(), "none.sock")}}.exec(t)
	r.want(t, ExitUnreachable, []string{"x      -        unreachable: connection refused (is sockagent running at " + gone + "?)\n",
		"y      -        unreachable: no such file or directory (is sockagent running at unix:"}, []string{"2 of 2 agents did not answer: x, y"})
	if !strings.HasPrefix(r.stdout, "AGENT  SESSION  NAME  TTL  EXPIRES IN  SOCKETS\n") {
		t.Errorf("header: %q", r.stdout)
	}
}

// An agent that accepts the connection and never answers holds the view no longer than
// --agent-timeout; agents are asked --concurrency at a time, so four hung agents take one
// timeout at a concurrency of 4 and two at 2.
func TestFleetHungAgentBounded(t *testing.T) {
	t.Parallel()
	h1 := startAgent(t)
	hung := []string{hungAgent(t), hungAgent(t), hungAgent(t), hungAgent(t)}
	const timeout = 400 * time.Millisecond
	args := []string{"info", "--agent-timeout", timeout.String(), "--agent", "h1=" + h1}
	for i, addr := range hung {
		args = append(args, "--agent", fmt.Sprintf("hung%d=%s", i, addr))
	}
	// Sorted, h1 comes first and answers at once: at 2, hung0 and hung1 time out together,
	// then hung2 and hung3.
	for _, tc := range []struct {
		concurrency string
		rounds      time.Duration
	}{{"5", 1}, {"2", 2}} {
		start := time.Now()
		r := invocation{args: append(args, "--concurrency", tc.concurrency)}.exec(t)
		took := time.Since(start)
		r.want(t, ExitUnreachable, []string{"h1     "}, []string{"4 of 5 agents did not answer: hung0, hung1, hung2, hung3"})
		for i, addr := range hung {
			want := fmt.Sprintf("hung%d  -         unreachable: no answer within 400ms (--agent-timeout): is %s a sockagent?\n", i, addr)
			if !strings.Contains(r.stdout, want) {
				t.Errorf("--concurrency %s: no row %q in\n%s", tc.concurrency, want, r.stdout)
			}
		}
		min, max := tc.rounds*timeout, tc.rounds*timeout+2*time.Second
		if took < min || took > max {
			t.Errorf("--concurrency %s: took %s, want %s to %s", tc.concurrency, took, min, max)
		}
	}
}

// --select picks by label (patterns too), by name, or all, from --inventory or from
// $SOCKCTL_INVENTORY; several --select are any of them; -o json is one array, items first
// carrying "agent", and an agent that did not answer an object with its address and error.
func TestFleetSelectAndJSON(t *testing.T) {
	t.Parallel()
	h1, h2, h4 := startAgent(t), startAgent(t), startAgent(t)
	gone := closedPort(t)
	l1 := openSocket(t, "h1", h1, "listen", "tcp", "127.0.0.1:0")
	openSocket(t, "h2", h2, "listen", "tcp", "127.0.0.1:0")
	l4 := openSocket(t, "h4", h4, "listen", "tcp", "127.0.0.1:0")
	inv := writeInventory(t, fmt.Sprintf(`agents:
  h1: {address: %s, labels: {role: web, zone: eu-1}}
  h2: {address: %s, labels: {role: db, zone: eu-2}}
  h3: {address: %s, labels: {role: web, zone: us-1}}
  h4: %s
`, h1, h2, gone, h4))
	agentsOf := func(stdout string) string {
		var names []string
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
			names = append(names, strings.Fields(line)[0])
		}
		return strings.Join(names, " ")
	}
	for _, tc := range []struct {
		env    map[string]string
		args   []string
		code   int
		picked string
		stderr string
	}{
		{args: []string{"--inventory", inv}, code: ExitUnreachable, picked: "h1 h2 h3 h4"},
		{args: []string{"--inventory", inv, "--select", "role=web"}, code: ExitUnreachable, picked: "h1 h3"},
		{args: []string{"--inventory", inv, "--select", "role=web,zone=eu-*"}, code: ExitOK, picked: "h1"},
		{args: []string{"--inventory", inv, "--select", "zone=eu-?"}, code: ExitOK, picked: "h1 h2"},
		{args: []string{"--inventory", inv, "--select", "h4", "--select", "role=db"}, code: ExitOK, picked: "h2 h4"},
		{args: []string{"--inventory", inv, "--select", "h[24]"}, code: ExitOK, picked: "h2 h4"},
		{args: []string{"--inventory", inv, "--select", "all"}, code: ExitUnreachable, picked: "h1 h2 h3 h4"},
		{args: []string{"--inventory", inv, "--agent", "h2", "--agent", "h4", "--select", "role=db"}, code: ExitOK, picked: "h2"},
		{env: map[string]string{envInventory: inv}, args: []string{"--select", "zone=eu-2"}, code: ExitOK, picked: "h2"},
		{args: []string{"--inventory", inv, "--select", "role=cache"}, code: ExitFailure,
			stderr: "sockctl: --select role=cache picks none of the 4 agents of " + inv + ": 'sockctl info --inventory " + inv + "' shows their labels\n"},
		{args: []string{"--agent", "a=" + h1, "--agent", "b=" + h2, "--select", "role=web"}, code: ExitFailure,
			stderr: "sockctl: --select role=web picks none of the agents given with --agent (they carry no labels: select by name, or give --inventory)\n"},
	} {
		r := invocation{env: tc.env, args: append([]string{"ls"}, tc.args...)}.exec(t)
		r.want(t, tc.code, nil, nil)
		if tc.stderr != "" {
			if r.stderr != tc.stderr || r.stdout != "" {
				t.Errorf("ls %v: stdout %q stderr %q, want none and %q", tc.args, r.stdout, r.stderr, tc.stderr)
			}
			continue
		}
		if got := agentsOf(r.stdout); got != tc.picked {
			t.Errorf("ls %v: agents %q, want %q\n%s", tc.args, got, tc.picked, r.stdout)
		}
	}

	r := invocation{args: []string{"ls", "--inventory", inv, "--select", "role=web", "--select", "h4", "-o", "json"}}.exec(t)
	r.want(t, ExitUnreachable, nil, []string{"1 of 3 agents did not answer: h3"})
	socket := func(agent string, s fleetSocket) string {
		return fmt.Sprintf(`  {
    "agent": %q,
    "socketId": %q,
    "network": "tcp",
    "kind": "SOCKET_KIND_LISTENER",
    "state": "SOCKET_STATE_OPEN",
    "localAddress": %q,
    "createdAt": "T",
    "owner": "anonymous",
    "lastUsedAt": "T",
    "age": "T",
    "idle": "T"
  }`, agent, s.id, s.local)
	}
	want := "[\n" + socket("h1", l1) + ",\n" + fmt.Sprintf(`  {
    "agent": "h3",
    "address": %q,
    "error": {
      "reason": "AGENT_UNAVAILABLE",
      "message": "unreachable: connection refused (is sockagent running at %s?)"
    }
  },
`, gone, gone) + socket("h4", l4) + "\n]\n"
	times := regexp.MustCompile(`"(createdAt|lastUsedAt|age|idle)": "[^"]*"`)
	if got := times.ReplaceAllString(r.stdout, `"$1": "T"`); got != want {
		t.Errorf("-o json:\n%s\nwant:\n%s", got, want)
	}

	// Nothing to show is an empty array, not null.
	r = invocation{args: []string{"sessions", "ls", "--inventory", inv, "--select", "role=db", "-o", "json"}}.exec(t)
	r.want(t, ExitOK, nil, nil)
	if r.stdout != "[]\n" {
		t.Errorf("no sessions, -o json: %q, want \"[]\\n\"", r.stdout)
	}
}

// info and sessions ls of several agents: a line per agent (hostname, version, platform,
// uptime, sockets, labels), a line per session; agents of a discovery are named by host.
func TestFleetInfoAndSessions(t *testing.T) {
	t.Parallel()
	h1 := startAgentConfig(t, agent.Config{Labels: map[string]string{"zone": "a", "role": "web"}})
	h2 := startAgent(t)
	openSocket(t, "h2", h2, "listen", "tcp", "127.0.0.1:0")
	var info sockagentv1.GetInfoResponse
	okJSON(t, h1, &info, "info")
	host, version, platform := info.GetHostname(), info.GetVersion(), info.GetOs()+"/"+info.GetArch()

	r := invocation{args: []string{"info", "--agent", "h2=" + h2, "--agent", "h1=" + h1}}.exec(t)
	r.want(t, ExitOK, nil, nil)
	want := tabTable(
		"AGENT\t"+infoHeader,
		"h1\t"+host+"\t"+version+"\t"+platform+"\t0s\t0\trole=web,zone=a",
		"h2\t"+host+"\t"+version+"\t"+platform+"\t0s\t1\t-",
	)
	if got := oneDigitSeconds.ReplaceAllString(r.stdout, "0s"); got != want {
		t.Errorf("fleet info:\n%s\nwant:\n%s", got, want)
	}

	open := func(addr, name string) string {
		id := strings.TrimSpace(ok(t, addr, "-o", "id", "sessions", "open", "--ttl", "1h", "--name", name).stdout)
		t.Cleanup(func() { sockctl(t, addr, "sessions", "close", id) })
		return id
	}
	s1a, s1b, s2 := open(h1, "first"), open(h1, "second"), open(h2, "other")
	r = invocation{args: []string{"sessions", "ls", "--inventory", "list:" + h2 + "," + h1}}.exec(t)
	r.want(t, ExitOK, nil, nil)
	want = tabTable(
		"AGENT\t"+sessionHeader,
		host+"\t"+s2+"\tother\t1h0m0s\t1h0m0s\t0",
		host+"-2\t"+s1a+"\tfirst\t1h0m0s\t1h0m0s\t0",
		host+"-2\t"+s1b+"\tsecond\t1h0m0s\t1h0m0s\t0",
	)
	if got := regexp.MustCompile(`\b59m5[0-9]s\b`).ReplaceAllString(r.stdout, "1h0m0s"); got != want {
		t.Errorf("fleet sessions ls:\n%s\nwant:\n%s", got, want)
	}
	r = invocation{args: []string{"sessions", "ls", "-o", "id", "--agent", "b=" + h2, "--agent", "a=" + h1}}.exec(t)
	r.want(t, ExitOK, nil, nil)
	if want := s1a + "\n" + s1b + "\n" + s2 + "\n"; r.stdout != want {
		t.Errorf("fleet sessions ls -o id: %q, want %q", r.stdout, want)
	}
}

// Flags a fleet view cannot work with are usage errors (exit 2) that say what to give,
// before any agent is asked.
func TestFleetUsage(t *testing.T) {
	t.Parallel()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("ci:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	two := []string{"--agent", "a=127.0.0.1:1", "--agent", "b=127.0.0.1:2"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append([]string{"ls", "--concurrency", "0"}, two...), "--concurrency 0: give 1 up to 4096"},
		{append([]string{"ls", "--concurrency", "4097"}, two...), "--concurrency 4097: give 1 up to 4096"},
		{append([]string{"info", "--agent-timeout", "0s"}, two...), "--agent-timeout 0s: give more than 0, up to 1h0m0s"},
		{append([]string{"info", "--agent-timeout", "61m"}, two...), "--agent-timeout 1h1m0s: give more than 0, up to 1h0m0s"},
		{[]string{"ls", "--select", "role=web"}, "--select picks agents of an inventory: give --inventory FILE (or dns:NAME, list:ADDR,ADDR), set $SOCKCTL_INVENTORY, or name the agents with --agent"},
		{append([]string{"ls", "--select", ""}, two...), `--select "": empty; give KEY=VALUE, a name pattern such as web*, or all`},
		{append([]string{"ls", "--select", "h["}, two...), `--select "h[": "h[" is not a pattern (* ? [a-z]): syntax error in pattern`},
		{append([]string{"ls", "--select", "role=[x"}, two...), `--select "role=[x": "[x" is not a pattern (* ? [a-z]): syntax error in pattern`},
		{append([]string{"ls", "--select", "ro le=web"}, two...), `--select "ro le=web": label key "ro le": give 1 to 63 letters`},
		{append([]string{"ls", "--select", "=web"}, two...), `--select "=web": label key "": give 1 to 63`},
		{append([]string{"ls", "--select", "role=web,role=db"}, two...), `--select "role=web,role=db": label role given twice`},
		{[]string{"ls", "--agent", "a=127.0.0.1:1", "--agent", "=127.0.0.1:2"}, `--agent "=127.0.0.1:2": give NAME=HOST:PORT, HOST:PORT, unix:PATH or a name of the inventory`},
		{[]string{"ls", "--agent", "a=127.0.0.1:1", "--agent", "b="}, `--agent "b=": give NAME=HOST:PORT`},
		{[]string{"ls", "--agent", "a=127.0.0.1:1", "--agent", ""}, `--agent "": give NAME=HOST:PORT`},
		{[]string{"ls", "--agent", "a=127.0.0.1:1", "--agent", "a=127.0.0.1:2"}, "agent a given twice; give each agent once"},
		{[]string{"ls", "--token-file", tokens, "--agent", "a=127.0.0.1:1", "--agent", "b=192.0.2.1:7700"}, "agent b: token file " + tokens + ": refusing to send a bearer token in clear text to 192.0.2.1:7700"},
	} {
		r := invocation{args: tc.args}.exec(t)
		r.want(t, ExitUsage, nil, []string{tc.want})
		if r.stdout != "" {
			t.Errorf("%v: stdout %q, want nothing", tc.args, r.stdout)
		}
	}
}

// whyNoAnswer tells an agent not reached (with what to check) from one that did not answer
// in time and from one that refused the call, and carries the agent's reason.
func TestWhyNoAnswer(t *testing.T) {
	t.Parallel()
	tgt := fleetTarget{name: "h1", addr: "127.0.0.1:7700"}
	denied, err := status.New(codes.PermissionDenied, "list sockets: the policy refuses it").WithDetails(&errdetails.ErrorInfo{Domain: contract.Domain, Reason: contract.ReasonPolicyDenied})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		err          error
		state        connectivity.State
		reason, want string
	}{
		{status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:7700: connect: connection refused"`), connectivity.TransientFailure,
			contract.ReasonAgentUnavailable, "unreachable: connection refused (is sockagent running at 127.0.0.1:7700?)"},
		{status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial unix /run/x.sock: connect: no such file or directory"`), connectivity.TransientFailure,
			contract.ReasonAgentUnavailable, "unreachable: no such file or directory (is sockagent running at 127.0.0.1:7700?)"},
		{status.Error(codes.Unavailable, "Error while dialing: refused"), connectivity.TransientFailure,
			contract.ReasonAgentUnavailable, "unreachable: refused (is sockagent running at 127.0.0.1:7700?)"},
		{status.Error(codes.Unavailable, "the agent is gone"), connectivity.TransientFailure,
			contract.ReasonAgentUnavailable, "unreachable: the agent is gone"},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), connectivity.Connecting,
			contract.ReasonAgentUnavailable, "unreachable: no answer within 2s (--agent-timeout): is 127.0.0.1:7700 a sockagent?"},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), connectivity.Ready,
			contract.ReasonAgentUnavailable, "no answer within 2s (--agent-timeout)"},
		{denied.Err(), connectivity.Ready,
			contract.ReasonPolicyDenied, "error: ask h1: POLICY_DENIED (PermissionDenied): list sockets: the policy refuses it (next: the agent's --policy refuses it; 'sockctl info' shows your rule set)"},
		{status.Error(codes.Unauthenticated, "no token"), connectivity.Ready,
			"Unauthenticated", "error: ask h1: Unauthenticated: no token"},
	} {
		reason, err := whyNoAnswer(tgt, 2*time.Second, tc.state, tc.err)
		if reason != tc.reason || err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v (%s): %s %v, want %s %s", tc.err, tc.state, reason, err, tc.reason, tc.want)
		}
	}

	// A credential file gone between the check and the call: the agent's row says so.
	ans := ask(t.Context(), fleetTarget{name: "h1", addr: "127.0.0.1:1", dial: client.Options{CA: filepath.Join(t.TempDir(), "gone.pem")}}, time.Second,
		func(context.Context, client.Clients) (*sockagentv1.GetInfoResponse, error) {
			t.Error("called without a connection")
			return nil, nil
		})
	if ans.err == nil || ans.reason != contract.ReasonAgentUnavailable || !strings.HasPrefix(ans.err.Error(), "error: ") || !strings.Contains(ans.err.Error(), "gone.pem") {
		t.Errorf("ask with a CA file gone: %s %v", ans.reason, ans.err)
	}
}

// The bounds of the flags are inclusive: one agent at a time, 4096 at once and an hour's
// timeout are taken, and --timeout 0 (none) leaves --agent-timeout alone; an inventory of more agents than a view takes is refused before any
// is asked.
func TestFleetBounds(t *testing.T) {
	t.Parallel()
	h1, h2 := startAgent(t), startAgent(t)
	two := []string{"--agent", "a=" + h1, "--agent", "b=" + h2}
	for _, flags := range [][]string{{"--concurrency", "1"}, {"--concurrency", "4096"}, {"--agent-timeout", "1h"}, {"--timeout", "0"}, {"--agent-timeout", "1ns", "--timeout", "5s"}} {
		r := invocation{args: append(append([]string{"info"}, two...), flags...)}.exec(t)
		if strings.Contains(flags[1], "ns") { // within 1ns no agent answers: both rows say so
			r.want(t, ExitUnreachable, []string{"a      -         unreachable: no answer within 1ns (--agent-timeout)"}, []string{"2 of 2 agents did not answer: a, b"})
			continue
		}
		r.want(t, ExitOK, []string{"\na      ", "\nb      "}, nil)
	}
	var inv strings.Builder
	inv.WriteString("agents:\n")
	for i := range maxDiscovered + 1 {
		fmt.Fprintf(&inv, "  a%d: 127.0.0.1:%d\n", i, 1+i%1000)
	}
	r := invocation{args: []string{"ls", "--inventory", writeInventory(t, inv.String())}}.exec(t)
	r.want(t, ExitUsage, nil, []string{"4097 agents: a view takes at most 4096; narrow it with --select"})
	empty := writeInventory(t, "agents: {}\n")
	r = invocation{args: []string{"ls", "--inventory", empty}}.exec(t)
	r.want(t, ExitFailure, nil, []string{"sockctl: --inventory " + empty + " names no agents: give agents: {NAME: HOST:PORT, ...}\n"})
	// --timeout bounds each agent too, when shorter than --agent-timeout.
	start := time.Now()
	r = invocation{args: []string{"info", "--agent", "a=" + hungAgent(t), "--agent", "b=" + h1, "--timeout", "300ms"}}.exec(t)
	if took := time.Since(start); took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("--timeout 300ms: took %s, want 300ms to 3s", took)
	}
	r.want(t, ExitUnreachable, []string{"unreachable: no answer within 300ms (--agent-timeout)"}, nil)
}
