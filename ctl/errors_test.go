package ctl

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sockagent/sockagent/agent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

func TestDialRefused(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	target := closedPort(t)
	r := sockctl(t, addr, "dial", "tcp", target)
	r.want(t, ExitFailure, nil, []string{"sockctl: dial tcp " + target + ": CONNECTION_REFUSED (Unavailable): "})
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing on failure", r.stdout)
	}
	if n := strings.Count(r.stderr, "\n"); n != 1 {
		t.Errorf("stderr has %d lines, want 1:\n%s", n, r.stderr)
	}
}

func TestAgentErrors(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	var l sockagentv1.ListenResponse
	okJSON(t, addr, &l, "listen", "tcp", "127.0.0.1:0")
	lid := l.GetSocket().GetSocketId()
	t.Cleanup(func() { ok(t, addr, "close", lid) }) // before the agent's own cleanup

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"close", "nosuch"}, "sockctl: close nosuch: UNKNOWN_SOCKET (NotFound): "},
		{[]string{"get", "nosuch"}, "sockctl: get nosuch: UNKNOWN_SOCKET (NotFound): "},
		{[]string{"recv", lid}, "sockctl: recv " + lid + ": WRONG_SOCKET_KIND (FailedPrecondition): "},
		{[]string{"accept", lid, "--wait", "50ms"}, "sockctl: accept " + lid + ": TIMEOUT (DeadlineExceeded): "},
		{[]string{"listen", "tcp", l.GetSocket().GetLocalAddress()}, "sockctl: listen tcp " + l.GetSocket().GetLocalAddress() + ": ADDRESS_IN_USE (AlreadyExists): "},
		{[]string{"dial", "tcp", "127.0.0.1:notaport"}, "sockctl: dial tcp 127.0.0.1:notaport: "},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := sockctl(t, addr, tc.args...)
			r.want(t, ExitFailure, nil, []string{tc.want})
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing on failure", r.stdout)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	// A working agent: a usage error that slipped through to it would exit 0 or 1, not 2.
	addr := startAgent(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command given"},
		{[]string{"nosuch"}, `unknown command "nosuch"`},
		{[]string{"listen", "tcp"}, "expected NETWORK ADDRESS, got 1 argument"},
		{[]string{"dial", "tcp", "a", "b"}, "expected NETWORK ADDRESS, got 3 arguments"},
		{[]string{"close"}, "expected ID, got 0 arguments"},
		{[]string{"ls", "extra"}, "takes no arguments, got 1"},
		{[]string{"info", "extra", "more"}, "takes no arguments, got 2"},
		{[]string{"sendto", "s1"}, "expected ID ADDRESS [DATA]"},
		{[]string{"-o", "yaml", "ls"}, `invalid argument "yaml" for "-o, --output"`},
		{[]string{"ls", "--output=xml"}, "must be table, json or id"},
		{[]string{"-o", "id", "send", "s1", "x"}, "-o id prints the ids of the sockets or sessions a command prints, and send prints none; use -o id with "},
		{[]string{"info", "-o", "id"}, "info prints none"},
		{[]string{"accept", "s1", "--wait", "soon"}, `invalid argument "soon" for "--wait"`},
		{[]string{"--timeout", "5", "ls"}, `invalid argument "5" for "--timeout"`},
		{[]string{"recv", "s1", "--wait", "-1s"}, "--wait must not be negative"},
		{[]string{"--timeout", "-1s", "ls"}, "--timeout must not be negative"},
		{[]string{"dial", "tcp", "127.0.0.1:1", "--connect-timeout", "x"}, `"--connect-timeout"`},
		{[]string{"recv", "s1", "--max-bytes", "-3"}, `"--max-bytes"`},
		{[]string{"listen", "udp", "127.0.0.1:0"}, `unknown network "udp": use one of tcp, tcp4, tcp6, unix`},
		{[]string{"bind", "tcp", "127.0.0.1:0"}, `unknown network "tcp"`},
		{[]string{"dial", "sctp", "127.0.0.1:1"}, `unknown network "sctp"`},
		{[]string{"shutdown", "s1", "sideways"}, `unknown direction "sideways"`},
		{[]string{"close", "s1", "--nosuch"}, "unknown flag: --nosuch"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := sockctl(t, addr, tc.args...)
			r.want(t, ExitUsage, nil, []string{tc.want, "--help' for usage."})
			if !strings.HasPrefix(r.stderr, "sockctl: ") {
				t.Errorf("stderr does not start with sockctl: %q", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing on a usage error", r.stdout)
			}
		})
	}
}

func TestAgentUnreachable(t *testing.T) {
	t.Parallel()
	gone := closedPort(t)
	for _, args := range [][]string{{"info"}, {"close", "s1"}, {"dial", "tcp", "127.0.0.1:1"}} {
		r := sockctl(t, gone, args...)
		r.want(t, ExitFailure, nil, []string{"sockctl: cannot reach agent " + gone + ": "})
		if strings.Contains(r.stderr, "CONNECTION_REFUSED") {
			t.Errorf("an unreachable agent must not look like a refused dial:\n%s", r.stderr)
		}
	}
}

func TestAgentFromEnv(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	gone := closedPort(t)

	// $SOCKCTL_AGENT is used when --agent is not given.
	r := invocation{env: map[string]string{"SOCKCTL_AGENT": addr}, args: []string{"info", "-o", "json"}}.exec(t)
	r.want(t, ExitOK, []string{`"hostname"`}, nil)
	r = invocation{env: map[string]string{"SOCKCTL_AGENT": gone}, args: []string{"info"}}.exec(t)
	r.want(t, ExitFailure, nil, []string{"cannot reach agent " + gone + ":"})

	// --agent wins over the environment.
	r = invocation{env: map[string]string{"SOCKCTL_AGENT": gone}, args: []string{"--agent", addr, "info"}}.exec(t)
	r.want(t, ExitOK, []string{"hostname:", "idle timeout:", "10m0s",
		"agent limits:", "4096 sockets, 4096 blocking calls, 268435456 buffered bytes",
		"your limits:", "rule set default:", "session limits:", "256 sockets, 64 blocking calls"}, nil)
}

func TestAgentOverUnix(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "sockctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "agent.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	serveAgent(t, lis)
	sockctl(t, "unix:"+path, "ls").want(t, ExitOK, []string{"ID  NETWORK"}, nil)
	sockctl(t, "unix:"+path+".nosuch", "ls").want(t, ExitFailure, nil, []string{"cannot reach agent unix:" + path + ".nosuch: "})
}

func TestInfo(t *testing.T) {
	t.Parallel()
	sockets := t.TempDir()
	addr := startAgentConfig(t, agent.Config{SocketDir: sockets})
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	var info sockagentv1.GetInfoResponse
	okJSON(t, addr, &info, "info")
	if info.GetHostname() != host {
		t.Errorf("info: hostname %q, want %q", info.GetHostname(), host)
	}
	if info.GetVersion() == "" || info.GetSocketDir() != sockets {
		t.Errorf("info: version %q, socket_dir %q (want %q)", info.GetVersion(), info.GetSocketDir(), sockets)
	}
	r := ok(t, addr, "info")
	r.want(t, ExitOK, []string{"hostname:", " " + host + "\n", "version:", "\nsocket dir:", " " + sockets + "\n", "interfaces:\n", "  lo"}, nil)
}

func TestHelp(t *testing.T) {
	t.Parallel()
	cmds := []string{"listen", "bind", "dial", "accept", "send", "recv", "sendto", "recvfrom",
		"shutdown", "close", "ls", "get", "info"}
	for _, c := range cmds {
		t.Run(c, func(t *testing.T) {
			t.Parallel()
			r := invocation{args: []string{c, "--help"}}.exec(t)
			r.want(t, ExitOK, []string{"Usage:\n  sockctl " + c, "Examples:\n  sockctl " + c, "Exit status: 0"}, nil)
			if r.stderr != "" {
				t.Errorf("stderr %q, want nothing", r.stderr)
			}
		})
	}
	r := invocation{args: []string{"--help"}}.exec(t)
	want := []string{"Exit status", "sockctl listen tcp", "sockctl accept", "sockctl dial tcp",
		"sockctl send", "sockctl recv", "sockctl close"}
	for _, c := range cmds {
		want = append(want, "\n  "+c+" ")
	}
	r.want(t, ExitOK, want, nil)
	if !strings.Contains(r.stdout, "\n  completion  ") || !strings.Contains(r.stdout, "\n  sessions  ") {
		t.Errorf("root help does not list the completion and sessions commands:\n%s", r.stdout)
	}
	// 'help CMD' works too.
	invocation{args: []string{"help", "dial"}}.exec(t).want(t, ExitOK, []string{"sockctl dial tcp 127.0.0.1:8080"}, nil)
}

// TestJSONStable pins the JSON form: protojson field names, two-space indent, one space after
// the colon (protojson alone varies its whitespace between builds).
func TestJSONStable(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := &writer{stdout: &buf}
	err := w.json(&sockagentv1.CloseResponse{Socket: &sockagentv1.Socket{
		SocketId:      "s7",
		Network:       "tcp",
		Kind:          sockagentv1.SocketKind_SOCKET_KIND_STREAM,
		State:         sockagentv1.SocketState_SOCKET_STATE_CLOSED,
		LocalAddress:  "127.0.0.1:5000",
		BytesSent:     13,
		CreatedAt:     timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
		PendingCalls:  0,
		RemoteAddress: "",
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "socket": {
    "socketId": "s7",
    "network": "tcp",
    "kind": "SOCKET_KIND_STREAM",
    "state": "SOCKET_STATE_CLOSED",
    "localAddress": "127.0.0.1:5000",
    "bytesSent": "13",
    "createdAt": "2026-01-02T03:04:05Z"
  }
}
`
	if buf.String() != want {
		t.Errorf("json:\n%s\nwant:\n%s", buf.String(), want)
	}
	var back sockagentv1.CloseResponse
	if err := protojson.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Errorf("the output does not parse back: %v", err)
	}
}
