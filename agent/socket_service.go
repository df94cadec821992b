package agent

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// socketService is the gRPC adapter of SocketService: proto <-> engine, one short method per
// RPC; the engine does the work and decides every error's reason.
type socketService struct {
	sockagentv1.UnimplementedSocketServiceServer
	t *engine.Table
}

// inSession returns ctx carrying the session the request's contract.SessionHeader names, if any.
func inSession(ctx context.Context) context.Context {
	if v := metadata.ValueFromIncomingContext(ctx, contract.SessionHeader); len(v) > 0 && v[0] != "" {
		return engine.WithSession(ctx, v[0])
	}
	return ctx
}

// expectingInstance returns ctx carrying the agent instance the request's
// contract.InstanceHeader expects, if any, for the engine to check on every call naming a
// socket id. Several values are passed on joined, which no instance id matches: the engine
// refuses them as malformed rather than pick one.
func expectingInstance(ctx context.Context) context.Context {
	if v := metadata.ValueFromIncomingContext(ctx, contract.InstanceHeader); len(v) > 0 {
		return engine.WithInstance(ctx, strings.Join(v, ","))
	}
	return ctx
}

func (s *socketService) Listen(ctx context.Context, r *sockagentv1.ListenRequest) (*sockagentv1.ListenResponse, error) {
	o, err := optionsOf("listen", r.GetOptions())
	if err != nil {
		return nil, fail(err)
	}
	srv, err := tlsServerOf(r.GetTls())
	if err != nil {
		return nil, fail(err)
	}
	in, err := s.t.ListenTLS(inSession(ctx), r.GetNetwork(), r.GetAddress(), r.GetRequestId(), srv, o)
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.ListenResponse{Socket: socketProto(in)}, nil
}

func (s *socketService) Bind(ctx context.Context, r *sockagentv1.BindRequest) (*sockagentv1.BindResponse, error) {
	o, err := optionsOf("bind", r.GetOptions())
	if err != nil {
		return nil, fail(err)
	}
	in, err := s.t.Bind(inSession(ctx), r.GetNetwork(), r.GetAddress(), r.GetRequestId(), o, multicastOf(r.GetMulticast()))
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.BindResponse{Socket: socketProto(in)}, nil
}

func (s *socketService) Dial(ctx context.Context, r *sockagentv1.DialRequest) (*sockagentv1.DialResponse, error) {
	to, err := timeoutOf("dial", r.GetTimeout())
	if err != nil {
		return nil, fail(err)
	}
	o, err := optionsOf("dial", r.GetOptions())
	if err != nil {
		return nil, fail(err)
	}
	cl, err := tlsClientOf("dial", r.GetTls())
	if err != nil {
		return nil, fail(err)
	}
	in, err := s.t.DialTLS(inSession(ctx), r.GetNetwork(), r.GetAddress(), r.GetLocalAddress(), to, r.GetRequestId(), cl, o)
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.DialResponse{Socket: socketProto(in)}, nil
}

func (s *socketService) Accept(ctx context.Context, r *sockagentv1.AcceptRequest) (*sockagentv1.AcceptResponse, error) {
	to, err := timeoutOf("accept", r.GetTimeout())
	if err != nil {
		return nil, fail(err)
	}
	in, err := s.t.Accept(inSession(ctx), r.GetSocketId(), to, r.GetRequestId())
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.AcceptResponse{Socket: socketProto(in)}, nil
}

func (s *socketService) Send(ctx context.Context, r *sockagentv1.SendRequest) (*sockagentv1.SendResponse, error) {
	to, err := timeoutOf("send", r.GetTimeout())
	if err != nil {
		return nil, fail(err)
	}
	n, err := s.t.Send(ctx, r.GetSocketId(), r.GetData(), to)
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.SendResponse{BytesSent: uint64(n)}, nil
}

func (s *socketService) Recv(ctx context.Context, r *sockagentv1.RecvRequest) (*sockagentv1.RecvResponse, error) {
	to, err := timeoutOf("recv", r.GetTimeout())
	if err != nil {
		return nil, fail(err)
	}
	data, eof, err := s.t.Recv(ctx, r.GetSocketId(), r.GetMaxBytes(), r.GetExactBytes(), to)
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.RecvResponse{Data: data, Eof: eof}, nil
}

func (s *socketService) SendTo(ctx context.Context, r *sockagentv1.SendToRequest) (*sockagentv1.SendToResponse, error) {
	to, err := timeoutOf("sendto", r.GetTimeout())
	if err != nil {
		return nil, fail(err)
	}
	n, err := s.t.SendTo(ctx, r.GetSocketId(), r.GetAddress(), r.GetData(), to)
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.SendToResponse{BytesSent: uint64(n)}, nil
}

func (s *socketService) RecvFrom(ctx context.Context, r *sockagentv1.RecvFromRequest) (*sockagentv1.RecvFromResponse, error) {
	to, err := timeoutOf("recvfrom", r.GetTimeout())
	if err != nil {
		return nil, fail(err)
	}
	data, from, err := s.t.RecvFrom(ctx, r.GetSocketId(), r.GetMaxBytes(), to)
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.RecvFromResponse{Data: data, Address: from}, nil
}

func (s *socketService) Shutdown(ctx context.Context, r *sockagentv1.ShutdownRequest) (*sockagentv1.ShutdownResponse, error) {
	dir, _ := shutdownDirections.engine(r.GetDirection()) // unknown: the zero Direction, which the engine refuses
	in, err := s.t.Shutdown(ctx, r.GetSocketId(), dir)
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.ShutdownResponse{Socket: socketProto(in)}, nil
}

func (s *socketService) Close(ctx context.Context, r *sockagentv1.CloseRequest) (*sockagentv1.CloseResponse, error) {
	in, err := s.t.Close(ctx, r.GetSocketId())
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.CloseResponse{Socket: socketProto(in)}, nil
}

func (s *socketService) GetSocket(ctx context.Context, r *sockagentv1.GetSocketRequest) (*sockagentv1.GetSocketResponse, error) {
	in, err := s.t.GetFor(ctx, r.GetSocketId())
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.GetSocketResponse{Socket: socketProto(in)}, nil
}

func (s *socketService) ListSockets(ctx context.Context, _ *sockagentv1.ListSocketsRequest) (*sockagentv1.ListSocketsResponse, error) {
	list := s.t.List(ctx)
	out := make([]*sockagentv1.Socket, len(list))
	for i, in := range list {
		out[i] = socketProto(in)
	}
	return &sockagentv1.ListSocketsResponse{Sockets: out}, nil
}

func (s *socketService) Serve(ctx context.Context, r *sockagentv1.ServeRequest) (*sockagentv1.ServeResponse, error) {
	b, _ := behaviours.engine(r.GetBehaviour()) // unknown: the zero Behaviour, which the engine refuses
	pc, err := proxyConfigOf(r)
	if err != nil {
		return nil, fail(err)
	}
	in, err := s.t.ServeWith(ctx, r.GetSocketId(), b, r.GetChunkSize(), r.GetMaxConnections(), pc)
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.ServeResponse{Socket: socketProto(in)}, nil
}

func (s *socketService) UpdateToxics(ctx context.Context, r *sockagentv1.UpdateToxicsRequest) (*sockagentv1.UpdateToxicsResponse, error) {
	toxics, err := toxicsOf("update toxics", r.GetToxics())
	if err != nil {
		return nil, fail(err)
	}
	in, err := s.t.UpdateToxics(ctx, r.GetSocketId(), toxics)
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.UpdateToxicsResponse{Socket: socketProto(in)}, nil
}

func (s *socketService) SetOptions(ctx context.Context, r *sockagentv1.SetOptionsRequest) (*sockagentv1.SetOptionsResponse, error) {
	o, err := optionsOf("setoptions", r.GetOptions())
	if err != nil {
		return nil, fail(err)
	}
	in, err := s.t.SetOptions(ctx, r.GetSocketId(), o, r.GetJoin(), r.GetLeave())
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.SetOptionsResponse{Socket: socketProto(in)}, nil
}

func (s *socketService) Attach(stream grpc.BidiStreamingServer[sockagentv1.AttachRequest, sockagentv1.AttachResponse]) error {
	ctx := stream.Context()
	if err := s.t.Attach(ctx, &attachStream{s: stream}, streamCountsFrom(ctx)); err != nil {
		return fail(err)
	}
	return nil
}

// attachStream carries an Attach's engine messages over its gRPC stream. Only the engine's
// downstream goroutine sends, so one response message is reused for every send: gRPC marshals
// it before Send returns, and no stats handler or tracing of the agent keeps it.
type attachStream struct {
	s    grpc.BidiStreamingServer[sockagentv1.AttachRequest, sockagentv1.AttachResponse]
	resp sockagentv1.AttachResponse
}

func (a *attachStream) Recv() (*engine.AttachIn, error) {
	r, err := a.s.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, err
	}
	return &engine.AttachIn{SocketID: r.GetSocketId(), ReadSize: r.GetReadSize(), Data: r.GetData(),
		Address: r.GetAddress(), CloseWrite: r.GetCloseWrite()}, nil
}

func (a *attachStream) Send(out *engine.AttachOut) error {
	a.resp.Data, a.resp.RemoteAddress, a.resp.Eof = out.Data, out.RemoteAddress, out.EOF
	return a.s.Send(&a.resp)
}
