package agent_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/reflection"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// Agent.Shutdown answers blocked calls and returns as soon as the RPCs end; an RPC that does
// not end (an open stream) is cut off when ctx ends, and Shutdown says so.
func TestShutdownBound(t *testing.T) {
	t.Parallel()
	t.Run("prompt", func(t *testing.T) {
		t.Parallel()
		a, conn := serveBufconn(t, agent.Config{Reflection: reflection.Register})
		e := &env{a: a, sc: sockagentv1.NewSocketServiceClient(conn)} // no closeAtEnd: Shutdown closes
		ctx := ctxT(t)
		// The peer is the test's, not another socket of the agent: closing that one first
		// would end the Recv with EOF, not AGENT_STOPPING.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		d, err := e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: ln.Addr().String()})
		if err != nil {
			t.Fatal(err)
		}
		peer, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		srv := d.GetSocket().GetSocketId()
		recvErr := make(chan error, 1)
		go func() {
			_, err := e.sc.Recv(ctxT(t), &sockagentv1.RecvRequest{SocketId: srv, Timeout: dur(time.Minute)})
			recvErr <- err
		}()
		e.waitPending(t, srv, 1)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.a.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v, want nil", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Shutdown took %s with only blocked calls; want them answered at once", d)
		}
		wantStatus(t, <-recvErr, codes.Unavailable, contract.ReasonAgentStopping)
		if n := e.a.NumSockets(); n != 0 {
			t.Errorf("%d sockets after Shutdown", n)
		}
		_, err = e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Listen after Shutdown: %v, want UNAVAILABLE", err)
		}
	})
	t.Run("cut off", func(t *testing.T) {
		t.Parallel()
		a, conn := serveBufconn(t, agent.Config{Reflection: reflection.Register})
		rc := reflectionpb.NewServerReflectionClient(conn)
		st, err := rc.ServerReflectionInfo(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		const bound = 300 * time.Millisecond
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		if err := a.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown with a stream open: %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d < bound || d > bound+5*time.Second {
			t.Errorf("Shutdown took %s, want just over %s", d, bound)
		}
		if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
			t.Errorf("stream after Shutdown: %v, want UNAVAILABLE", err)
		}
	})
}
