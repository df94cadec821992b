package ctl

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/bufpool"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/localagent"
)

func TestMain(m *testing.M) {
	bufpool.Install() // as sockctl's main does
	goleak.VerifyTestMain(m)
}

// startAgent runs a real agent in-process on 127.0.0.1:0 and returns its address. At the end
// of the test the agent must have no open sockets; then it is closed.
func startAgent(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	serveAgent(t, lis)
	return lis.Addr().String()
}

// serveAgent runs a real agent in-process on lis, checked and closed as by startAgent.
func serveAgent(t *testing.T, lis net.Listener) {
	t.Helper()
	serveAgentConfig(t, lis, agent.Config{})
}

// startAgentConfig is startAgent with an agent configured by cfg (TLS, tokens).
func startAgentConfig(t *testing.T, cfg agent.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	serveAgentConfig(t, lis, cfg)
	return lis.Addr().String()
}

// serveAgentConfig is serveAgent with an agent configured by cfg.
func serveAgentConfig(t *testing.T, lis net.Listener, cfg agent.Config) {
	t.Helper()
	a, err := localagent.Serve(lis, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n := a.NumSockets(); n != 0 {
			t.Errorf("agent has %d open sockets at the end of the test, want 0", n)
		}
		_ = a.Close()
	})
}

// closedPort returns a 127.0.0.1 address on which nothing listens (at least just now).
func closedPort(t *testing.T) string {
	t.Helper()
	return closedPortOn(t, "127.0.0.1")
}

// closedPortOn is closedPort on host's address: a port free there a moment ago.
func closedPortOn(t *testing.T, host string) string {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return addr
}

// result is what one sockctl run produced.
type result struct {
	code           int
	stdout, stderr string
}

// invocation describes one sockctl run.
type invocation struct {
	env   map[string]string // the environment sockctl sees; nothing else
	build *contract.Build   // sockctl's own build; nil: this binary's
	stdin string
	args  []string
}

// exec runs sockctl in-process.
func (in invocation) exec(t *testing.T) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string { return in.env[k] }
	build := contract.ReadBuild()
	if in.build != nil {
		build = *in.build
	}
	code := runBuild(context.Background(), build, in.args, getenv, strings.NewReader(in.stdin), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// sockctl runs sockctl against the agent at addr with args.
func sockctl(t *testing.T, addr string, args ...string) result {
	t.Helper()
	return invocation{args: append([]string{"--agent", addr}, args...)}.exec(t)
}

// ok runs sockctl against addr and fails the test unless it exits 0.
func ok(t *testing.T, addr string, args ...string) result {
	t.Helper()
	r := sockctl(t, addr, args...)
	if r.code != ExitOK {
		t.Fatalf("sockctl %s: exit %d, want 0\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// okJSON runs sockctl -o json against addr, expects exit 0 and decodes stdout into m.
func okJSON(t *testing.T, addr string, m proto.Message, args ...string) {
	t.Helper()
	r := ok(t, addr, append(args, "-o", "json")...)
	if err := protojson.Unmarshal([]byte(r.stdout), m); err != nil {
		t.Fatalf("sockctl %s -o json: stdout is not the response: %v\n%s", strings.Join(args, " "), err, r.stdout)
	}
}

// want checks a result's exit code, and that stdout and stderr contain the given strings.
func (r result) want(t *testing.T, code int, stdoutHas, stderrHas []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdoutHas {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout does not contain %q:\n%s", s, r.stdout)
		}
	}
	for _, s := range stderrHas {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr does not contain %q:\n%s", s, r.stderr)
		}
	}
}
