package main

import (
	"path/filepath"
	"strings"
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
