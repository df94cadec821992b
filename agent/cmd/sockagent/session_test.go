package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRestartUnknownSocket: a socket id from before a restart answers UNKNOWN_SOCKET naming the
// new agent instance and saying that the agent may have restarted.
func TestRestartUnknownSocket(t *testing.T) {
	t.Parallel()
	target := "unix:" + filepath.Join(shortTempDir(t), "a.sock")
	first := start(t, sockagentBin, "--listen", target)
	ctx := ctxT(t)
	info1, err := sockagentv1.NewAgentServiceClient(first.conn).GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := first.sockets().Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if c := first.stop(t); c != 0 {
		t.Fatalf("first sockagent exit %d", c)
	}
	second := start(t, sockagentBin, "--listen", target)
	info2, err := sockagentv1.NewAgentServiceClient(second.conn).GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info1.GetInstanceId() == info2.GetInstanceId() {
		t.Fatalf("both instances have id %s", info1.GetInstanceId())
	}
	id := l.GetSocket().GetSocketId()
	_, err = second.sockets().GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: id})
	wantStatus(t, err, codes.NotFound, "UNKNOWN_SOCKET")
	msg := status.Convert(err).Message()
	for _, want := range []string{id, "instance " + info2.GetInstanceId(), "restarted"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetMetadata()["instance_id"] != info2.GetInstanceId() {
			t.Errorf("ErrorInfo metadata %v, want instance_id %s", ei.GetMetadata(), info2.GetInstanceId())
		}
	}
}

// TestIdleTimeoutFlag: --idle-timeout closes an unused socket outside a session; a negative
// value is a usage error.
func TestIdleTimeoutFlag(t *testing.T) {
	t.Parallel()
	p := startLocal(t, "--idle-timeout", "300ms")
	ctx := ctxT(t)
	l, err := p.sockets().Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := p.sockets().GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: l.GetSocket().GetSocketId()})
		if status.Code(err) == codes.NotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket still open 10s after a 300ms idle timeout: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	_, errOut, code := runBin(t, sockagentBin, "--idle-timeout", "-1s")
	if code != 2 || !strings.Contains(errOut, "--idle-timeout -1s") {
		t.Errorf("negative --idle-timeout: exit %d, stderr %q", code, errOut)
	}
}

// TestSockctlKilledSessionReaped: sockctl run killed with SIGKILL mid-step leaves its sockets
// in the agent only until its session's lease runs out.
func TestSockctlKilledSessionReaped(t *testing.T) {
	t.Parallel()
	p := startLocal(t)
	ctx := ctxT(t)
	sc, ss := p.sockets(), sockagentv1.NewSessionServiceClient(p.conn)
	file := filepath.Join(t.TempDir(), "block.yaml")
	scenario := "name: blocks\nagents: {a: " + p.addr + "}\nsteps:\n" +
		"  - {on: a, listen: {network: tcp, address: \"127.0.0.1:0\"}, as: lis}\n" +
		"  - {on: a, accept: {socket: lis, timeout: 1m}}\n"
	if err := os.WriteFile(file, []byte(scenario), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sockctlBin, "run", file, "--session-ttl", "1s")
	dieWithTest(cmd)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // killed below: the exit status says nothing
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	poll := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s; sockctl output:\n%s", what, out.String())
			}
			time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
		}
	}
	var sessionID string
	poll("sockctl blocked in Accept inside its session", func() bool {
		l, err := sc.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
		if err != nil || len(l.GetSockets()) != 1 || l.GetSockets()[0].GetPendingCalls() != 1 {
			return false
		}
		sessionID = l.GetSockets()[0].GetSessionId()
		return true
	})
	if sessionID == "" {
		t.Fatal("sockctl's listener is not in a session")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	killed := time.Now()
	poll("the agent reclaims the killed sockctl's sockets", func() bool {
		l, err := sc.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
		return err == nil && len(l.GetSockets()) == 0
	})
	if d := time.Since(killed); d > 5*time.Second {
		t.Errorf("reclaimed %s after the kill; the TTL is 1s", d)
	}
	_, err := ss.KeepAlive(ctx, &sockagentv1.KeepAliveRequest{SessionId: sessionID})
	wantStatus(t, err, codes.NotFound, "UNKNOWN_SESSION")
	if l, err := ss.ListSessions(ctx, &sockagentv1.ListSessionsRequest{}); err != nil || len(l.GetSessions()) != 0 {
		t.Errorf("sessions left: %v, %v", l, err)
	}
}
