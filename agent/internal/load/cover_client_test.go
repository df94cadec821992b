package load

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// serveAgent runs an in-process agent on 127.0.0.1 under the policy YAML (the default when
// empty) and returns it and a client connection to it.
func serveAgent(t *testing.T, yaml string) (*agent.Agent, *grpc.ClientConn) {
	t.Helper()
	var cfg agent.Config
	if yaml != "" {
		p, err := policy.Parse("test.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Policy = p
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		a.Close()
		<-served
	})
	return a, conn
}

// TestSoakClient: the client a soak kills holds, once it says "ready", a session with a
// listener and a connection both ways, a UDP socket outside the session, and two pending
// calls (a Recv and an Attach stream); when its context ends it returns without error.
func TestSoakClient(t *testing.T) {
	a, conn := serveAgent(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- SoakClient(ctx, conn, pw)
		pw.Close()
	}()
	line := make([]byte, len("ready\n"))
	if _, err := io.ReadFull(pr, line); err != nil || string(line) != "ready\n" {
		t.Fatalf("client said %q (%v), want ready", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	info, err := sockagentv1.NewAgentServiceClient(conn).GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n, s := info.GetOpenSockets(), a.NumSessions(); n != 4 || s != 1 {
		t.Errorf("ready client holds %d sockets and %d sessions, want 4 and 1", n, s)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("SoakClient after its context ended: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SoakClient still running 10s after its context ended")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("SoakClient took %s to return after its context ended", el)
	}
}

// TestSoakClientRefused: a client that cannot open its session says so, and holds nothing.
func TestSoakClientRefused(t *testing.T) {
	a, conn := serveAgent(t, "default:\n  limits: {sessions: 1}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sockagentv1.NewSessionServiceClient(conn).OpenSession(ctx, &sockagentv1.OpenSessionRequest{Ttl: dur(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err := SoakClient(ctx, conn, &out)
	if err == nil || !strings.HasPrefix(err.Error(), "open session: ") || !strings.Contains(err.Error(), "ResourceExhausted") {
		t.Errorf("SoakClient over the session limit: %v, want open session: ... ResourceExhausted", err)
	}
	if out.Len() != 0 || a.NumSockets() != 0 {
		t.Errorf("refused client wrote %q and left %d sockets", out.String(), a.NumSockets())
	}
}

// TestPhasesRefused: a phase the agent refuses ends with an error naming the phase's step and
// the agent's status, and leaves no socket behind; a stopped agent fails the figures' reads.
func TestPhasesRefused(t *testing.T) {
	a, conn := serveAgent(t, "default:\n  limits: {sockets: 3}\n")
	sc, ac := sockagentv1.NewSocketServiceClient(conn), sockagentv1.NewAgentServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := Connect(ctx, sc, 5, 2); err == nil || !strings.Contains(err.Error(), "ResourceExhausted") {
		t.Errorf("Connect 5 under a limit of 3 sockets: %v, want ResourceExhausted", err)
	}
	if _, err := BlockingCalls(ctx, sc, 5, 2); err == nil || !strings.Contains(err.Error(), "ResourceExhausted") {
		t.Errorf("BlockingCalls 5 under a limit of 3 sockets: %v, want ResourceExhausted", err)
	}
	if n, err := Settle(ctx, 0, func() (int, error) { return OpenSockets(ctx, ac) }); err != nil || n != 0 || a.NumSockets() != 0 {
		t.Errorf("after the refusals: %d sockets (%v), agent %d; want 0", n, err, a.NumSockets())
	}
	a.Close()
	if _, err := OpenSockets(ctx, ac); err == nil || !strings.HasPrefix(err.Error(), "get info: ") {
		t.Errorf("OpenSockets of a stopped agent: %v, want get info: ...", err)
	}
	if _, err := ReadSample(ctx, ac); err == nil || !strings.HasPrefix(err.Error(), "get info: ") {
		t.Errorf("ReadSample of a stopped agent: %v, want get info: ...", err)
	}
	if _, err := Proc(-1).Threads(); err == nil {
		t.Error("Threads of pid -1: no error")
	}
}
