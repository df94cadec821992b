package main

import (
	"errors"
	"io"
	"net"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// openStream opens a server reflection stream and leaves it open: an RPC that does not end
// by itself, so GracefulStop waits for it.
func openStream(t *testing.T, p *proc) reflectionpb.ServerReflection_ServerReflectionInfoClient {
	t.Helper()
	st, err := reflectionpb.NewServerReflectionClient(p.conn).ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil { // the stream is open at the agent
		t.Fatal(err)
	}
	return st
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

var stoppingRE = regexp.MustCompile(`msg=stopping`)

// TestShutdownWhileAnRPCStaysOpen: after SIGTERM, while an open stream keeps the process
// alive, the agent has answered blocked calls UNAVAILABLE AGENT_STOPPING, closed its sockets
// (their peers see EOF), and refuses new calls with UNAVAILABLE; a second SIGTERM then exits
// at once with status 1, long before --shutdown-timeout.
func TestShutdownWhileAnRPCStaysOpen(t *testing.T) {
	t.Parallel()
	p := startLocal(t, "--shutdown-timeout", "10m")
	sc := p.sockets()
	lis := listenTCP(t, sc)
	id, peer := dialedPeer(t, sc)
	recvErr := blockedRecv(t, sc, id)
	stream := openStream(t, p)

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := p.log.waitFor(stoppingRE, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-recvErr:
		wantStatus(t, err, codes.Unavailable, contract.ReasonAgentStopping)
	case <-time.After(10 * time.Second):
		t.Fatal("Recv still blocked 10s after SIGTERM")
	}
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := peer.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("peer of the agent's socket read %d, %v; want 0, EOF", n, err)
	}
	if _, err := net.DialTimeout("tcp", lis.GetLocalAddress(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial the agent's listener after SIGTERM: %v, want connection refused", err)
	}
	// New calls: the control listener closes and the open connection is drained (GOAWAY),
	// so a new RPC, on a new connection or the old one, fails with UNAVAILABLE.
	fresh, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for _, c := range []*grpc.ClientConn{fresh, p.conn} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := sockagentv1.NewAgentServiceClient(c).GetInfo(ctxT(t), &sockagentv1.GetInfoRequest{})
			if status.Code(err) == codes.Unavailable {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GetInfo %s after SIGTERM: %v, want UNAVAILABLE", c.Target(), err)
			}
			time.Sleep(10 * time.Millisecond) // polling interval; the condition above decides
		}
	}
	if !p.running() {
		t.Fatalf("the agent exited while a stream was open and --shutdown-timeout 10m: the checks above prove nothing\n%s", p.log)
	}

	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 1 {
		t.Errorf("exit status %d after a second SIGTERM, want 1", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("exited %s after the second SIGTERM, want at once", d)
	}
	if _, err := p.log.waitFor(regexp.MustCompile(`level=ERROR msg="second signal: exiting at once" signal=terminated`), time.Second); err != nil {
		t.Error(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("open stream after the agent exited: %v, want UNAVAILABLE", err)
	}
}

// TestShutdownTimeoutCutsOff: an RPC that stays open (a reflection stream) holds the graceful
// stop for --shutdown-timeout and no longer; the agent then cuts it off, says so, and exits 0.
func TestShutdownTimeoutCutsOff(t *testing.T) {
	t.Parallel()
	const bound = time.Second
	p := startLocal(t, "--shutdown-timeout", bound.String())
	stream := openStream(t, p)
	start := time.Now()
	if code := p.stop(t); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	d := time.Since(start)
	if d < bound || d > bound+4*time.Second {
		t.Errorf("exited %s after SIGTERM with --shutdown-timeout %s and a stream open; want just over %s", d, bound, bound)
	}
	if _, err := p.log.waitFor(regexp.MustCompile(`level=WARN msg="stopped with RPCs cut off" err="context deadline exceeded"`), time.Second); err != nil {
		t.Error(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("stream after the agent exited: %v, want UNAVAILABLE", err)
	}
}

// TestShutdownPrompt: blocked calls do not hold the stop: they are answered at once, so the
// agent exits well within a long --shutdown-timeout, without cutting anything off.
func TestShutdownPrompt(t *testing.T) {
	t.Parallel()
	p := startLocal(t, "--shutdown-timeout", "10m")
	sc := p.sockets()
	acceptErr := blockedAccept(t, sc, listenTCP(t, sc).GetSocketId())
	id, _ := dialedPeer(t, sc)
	recvErr := blockedRecv(t, sc, id)
	start := time.Now()
	if code := p.stop(t); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("exited %s after SIGTERM; want well within 5s", d)
	}
	for _, ch := range []<-chan error{acceptErr, recvErr} {
		wantStatus(t, <-ch, codes.Unavailable, contract.ReasonAgentStopping)
	}
	lines, err := p.log.all(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if regexp.MustCompile(`cut off|second signal`).MatchString(l) {
			t.Errorf("log line %q on a prompt stop", l)
		}
	}
}
