package client

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// headerRecorder is a server that answers every call Unimplemented and records the
// contract.InstanceHeader values each call carried.
type headerRecorder struct {
	mu  sync.Mutex
	got [][]string
}

func (h *headerRecorder) record(ctx context.Context) {
	v := metadata.ValueFromIncomingContext(ctx, contract.InstanceHeader)
	h.mu.Lock()
	h.got = append(h.got, v)
	h.mu.Unlock()
}

func (h *headerRecorder) last(t *testing.T) []string {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.got) == 0 {
		t.Fatal("the server saw no call")
	}
	return h.got[len(h.got)-1]
}

func serveRecorder(t *testing.T) (*headerRecorder, string) {
	t.Helper()
	h := &headerRecorder{}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
			h.record(ctx)
			return next(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
			h.record(ss.Context())
			return next(srv, ss)
		}))
	sockagentv1.RegisterSocketServiceServer(srv, sockagentv1.UnimplementedSocketServiceServer{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return h, lis.Addr().String()
}

// A one-shot call naming a socket id expects the instance the id carries; a run's instance
// (ExpectInstance) outranks it; an id without one, or a call naming none, sends no header.
func TestInstanceHeader(t *testing.T) {
	t.Parallel()
	h, addr := serveRecorder(t)
	cc, err := Dial(addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const inst = "3fa9c1d2e4b5a6f7"
	plain := sockagentv1.NewSocketServiceClient(cc)
	run := sockagentv1.NewSocketServiceClient(ExpectInstance(cc, inst))
	for _, tc := range []struct {
		name string
		call func() error
		want []string
	}{
		{"get by id", func() error {
			_, err := plain.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: "s0b12ff-3"})
			return err
		}, []string{"0b12ff"}},
		{"recv by id", func() error {
			_, err := plain.Recv(ctx, &sockagentv1.RecvRequest{SocketId: "s0b12ff-3"})
			return err
		}, []string{"0b12ff"}},
		{"an older agent's id", func() error {
			_, err := plain.Close(ctx, &sockagentv1.CloseRequest{SocketId: "s3"})
			return err
		}, nil},
		{"no id", func() error {
			_, err := plain.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
			return err
		}, nil},
		{"attach by id", func() error {
			st, err := plain.Attach(ForSocket(ctx, "s0b12ff-3"))
			if err == nil {
				_, err = st.Recv()
			}
			return err
		}, []string{"0b12ff"}},
		{"the run's instance", func() error {
			_, err := run.Close(ctx, &sockagentv1.CloseRequest{SocketId: "s0b12ff-3"})
			return err
		}, []string{inst}},
		{"the run's instance, no id", func() error {
			_, err := run.Listen(ctx, &sockagentv1.ListenRequest{})
			return err
		}, []string{inst}},
		{"the run's instance on a stream", func() error {
			st, err := run.Attach(ForSocket(ctx, "s0b12ff-3"))
			if err == nil {
				_, err = st.Recv()
			}
			return err
		}, []string{"0b12ff"}}, // set on ctx first: the caller's own header stands
	} {
		if err := tc.call(); err == nil {
			t.Fatalf("%s: the recorder answered", tc.name)
		}
		if got := h.last(t); len(got) != len(tc.want) || (len(got) == 1 && got[0] != tc.want[0]) {
			t.Errorf("%s: header %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := ExpectInstance(cc, ""); got != grpc.ClientConnInterface(cc) {
		t.Errorf("ExpectInstance with no instance wraps the connection")
	}
}
