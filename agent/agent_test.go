package agent_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/bufpool"
	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestMain installs the buffer pool sockagent's main installs, so the tests and benchmarks run
// the agent as it runs in production.
func TestMain(m *testing.M) {
	bufpool.Install()
	goleak.VerifyTestMain(m)
}

// env is one in-process agent behind bufconn (control plane); its sockets are real.
type env struct {
	a    *agent.Agent
	conn *grpc.ClientConn
	sc   sockagentv1.SocketServiceClient
	ac   sockagentv1.AgentServiceClient
}

func newEnv(t *testing.T) *env { return newEnvWith(t, agent.Config{}) }

// newEnvWith is newEnv with a Config.
func newEnvWith(t *testing.T, cfg agent.Config) *env {
	t.Helper()
	a, conn := serveBufconn(t, cfg)
	t.Cleanup(func() { // runs before serveBufconn's cleanup closes the agent
		if n := a.NumSockets(); n != 0 {
			t.Errorf("socket table not empty at the end of the test: %d sockets", n)
		}
	})
	return &env{a: a, conn: conn, sc: sockagentv1.NewSocketServiceClient(conn), ac: sockagentv1.NewAgentServiceClient(conn)}
}

// sockPath is name in the agent's socket directory, where the default policy allows UNIX
// sockets.
func (e *env) sockPath(name string) string { return filepath.Join(e.a.SocketDir(), name) }

// serveBufconn serves a new agent over bufconn and returns it with a client connection; both
// are closed when the test ends.
func serveBufconn(t *testing.T, cfg agent.Config) (*agent.Agent, *grpc.ClientConn) {
	t.Helper()
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
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

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

func (e *env) listen(t *testing.T, network, address string) *sockagentv1.Socket {
	t.Helper()
	r, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: network, Address: address})
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, address, err)
	}
	e.closeAtEnd(t, r.GetSocket().GetSocketId())
	return r.GetSocket()
}

func (e *env) bind(t *testing.T, network, address string) *sockagentv1.Socket {
	t.Helper()
	r, err := e.sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: network, Address: address})
	if err != nil {
		t.Fatalf("bind %s %s: %v", network, address, err)
	}
	e.closeAtEnd(t, r.GetSocket().GetSocketId())
	return r.GetSocket()
}

func (e *env) dial(t *testing.T, network, address string) *sockagentv1.Socket {
	t.Helper()
	r, err := e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: network, Address: address, Timeout: dur(5 * time.Second)})
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, address, err)
	}
	e.closeAtEnd(t, r.GetSocket().GetSocketId())
	return r.GetSocket()
}

func (e *env) accept(t *testing.T, id string) *sockagentv1.Socket {
	t.Helper()
	r, err := e.sc.Accept(ctxT(t), &sockagentv1.AcceptRequest{SocketId: id, Timeout: dur(5 * time.Second)})
	if err != nil {
		t.Fatalf("accept %s: %v", id, err)
	}
	e.closeAtEnd(t, r.GetSocket().GetSocketId())
	return r.GetSocket()
}

// closeAtEnd closes the socket when the test ends unless the test closed it already.
func (e *env) closeAtEnd(t *testing.T, id string) {
	t.Cleanup(func() {
		_, err := e.sc.Close(context.Background(), &sockagentv1.CloseRequest{SocketId: id})
		if err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("close %s: %v", id, err)
		}
	})
}

func (e *env) send(t *testing.T, id, data string) {
	t.Helper()
	r, err := e.sc.Send(ctxT(t), &sockagentv1.SendRequest{SocketId: id, Data: []byte(data)})
	if err != nil {
		t.Fatalf("send %s: %v", id, err)
	}
	if r.GetBytesSent() != uint64(len(data)) {
		t.Fatalf("send %s: bytes_sent %d, want %d", id, r.GetBytesSent(), len(data))
	}
}

func (e *env) recvExact(t *testing.T, id string, n int) string {
	t.Helper()
	r, err := e.sc.Recv(ctxT(t), &sockagentv1.RecvRequest{SocketId: id, ExactBytes: uint32(n), Timeout: dur(5 * time.Second)})
	if err != nil {
		t.Fatalf("recv %s: %v", id, err)
	}
	return string(r.GetData())
}

// waitPending polls the socket until n blocking calls are pending on it: the observable sign
// that a call has reached the agent and is blocked there.
func (e *env) waitPending(t *testing.T, id string, n uint32) {
	t.Helper()
	e.waitSocket(t, id, fmt.Sprintf("pending_calls %d", n), func(s *sockagentv1.Socket) bool { return s.GetPendingCalls() == n })
}

// waitSocket polls GetSocket until cond holds for the socket (what says what cond wants, for
// the failure message), for at most 10s, and returns it.
func (e *env) waitSocket(t *testing.T, id, what string, cond func(*sockagentv1.Socket) bool) *sockagentv1.Socket {
	t.Helper()
	return e.waitSocketAs(t, ctxT(t), id, what, cond)
}

// waitSocketAs is waitSocket for the caller of ctx.
func (e *env) waitSocketAs(t *testing.T, ctx context.Context, id, what string, cond func(*sockagentv1.Socket) bool) *sockagentv1.Socket {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: id})
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if cond(r.GetSocket()) {
			return r.GetSocket()
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s: %v; want %s", id, r.GetSocket(), what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation: the condition decides
	}
}

// wantStatus checks the gRPC code, the ErrorInfo reason and domain, and words of the message.
func wantStatus(t *testing.T, err error, code codes.Code, reason string, msgParts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got success, want %s %s", code, reason)
	}
	st := status.Convert(err)
	if st.Code() != code {
		t.Errorf("code %s, want %s (message %q)", st.Code(), code, st.Message())
	}
	var got string
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			got = ei.GetReason()
			if ei.GetDomain() != contract.Domain {
				t.Errorf("domain %q, want %q", ei.GetDomain(), contract.Domain)
			}
		}
	}
	if got != reason {
		t.Errorf("reason %q, want %q (message %q)", got, reason, st.Message())
	}
	for _, p := range msgParts {
		if !strings.Contains(st.Message(), p) {
			t.Errorf("message %q does not contain %q", st.Message(), p)
		}
	}
}
