package agent

import (
	"context"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// socketService is the gRPC adapter of SocketService: proto <-> Go, one short method per RPC.
type socketService struct {
	sockagentv1.UnimplementedSocketServiceServer
	t *table
}

// maxTimeout bounds a request's timeout: anything longer is surely a mistake.
const maxTimeout = 24 * time.Hour

func timeoutOf(op string, d *durationpb.Duration) (time.Duration, error) {
	v, err := durationOf(op, "timeout", d)
	if err != nil {
		return 0, err
	}
	if v < 0 || v > maxTimeout {
		return 0, badArg(ReasonInvalidArgument, "%s: timeout %s out of range; give 0 (the agent's default) up to %s", op, v, maxTimeout)
	}
	return v, nil
}

// SessionHeader is the gRPC metadata key naming the session a Listen, Bind, Dial or Accept
// opens its socket in.
const SessionHeader = "sockagent-session"

// inSession returns ctx carrying the session the request's SessionHeader names, if any.
func inSession(ctx context.Context) context.Context {
	if v := metadata.ValueFromIncomingContext(ctx, SessionHeader); len(v) > 0 && v[0] != "" {
		return WithSession(ctx, v[0])
	}
	return ctx
}

func toProto(in Info) *sockagentv1.Socket {
	now := time.Now()
	idle := now.Sub(in.LastUsed)
	if in.Pending > 0 || in.Serving != nil || idle < 0 {
		idle = 0
	}
	return &sockagentv1.Socket{
		SessionId:        in.Session,
		LastUsedAt:       timestamppb.New(in.LastUsed),
		Age:              durationpb.New(now.Sub(in.Created)),
		Idle:             durationpb.New(idle),
		SocketId:         in.ID,
		Network:          in.Network,
		Kind:             sockagentv1.SocketKind(in.Kind),
		State:            sockagentv1.SocketState(in.State),
		LocalAddress:     in.Local,
		RemoteAddress:    in.Remote,
		BytesSent:        in.BytesSent,
		BytesReceived:    in.BytesRecv,
		MessagesSent:     in.MsgsSent,
		MessagesReceived: in.MsgsRecv,
		Accepted:         in.Accepted,
		ParentId:         in.Parent,
		CreatedAt:        timestamppb.New(in.Created),
		PendingCalls:     in.Pending,
		Owner:            in.Owner,
		Serving:          servingProto(in.Serving),
		Attached:         in.Attached,
	}
}

func fail(err error) error { return toStatus(err).Err() }

func (s *socketService) Listen(ctx context.Context, r *sockagentv1.ListenRequest) (*sockagentv1.ListenResponse, error) {
	in, err := s.t.Listen(inSession(ctx), r.GetNetwork(), r.GetAddress(), r.GetRequestId())
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.ListenResponse{Socket: toProto(in)}, nil
}

func (s *socketService) Bind(ctx context.Context, r *sockagentv1.BindRequest) (*sockagentv1.BindResponse, error) {
	in, err := s.t.Bind(inSession(ctx), r.GetNetwork(), r.GetAddress(), r.GetRequestId())
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.BindResponse{Socket: toProto(in)}, nil
}

func (s *socketService) Dial(ctx context.Context, r *sockagentv1.DialRequest) (*sockagentv1.DialResponse, error) {
	to, err := timeoutOf("dial", r.GetTimeout())
	if err != nil {
		return nil, fail(err)
	}
	in, err := s.t.Dial(inSession(ctx), r.GetNetwork(), r.GetAddress(), r.GetLocalAddress(), to, r.GetRequestId())
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.DialResponse{Socket: toProto(in)}, nil
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
	return &sockagentv1.AcceptResponse{Socket: toProto(in)}, nil
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
	in, err := s.t.Shutdown(ctx, r.GetSocketId(), Direction(r.GetDirection()))
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.ShutdownResponse{Socket: toProto(in)}, nil
}

func (s *socketService) Close(ctx context.Context, r *sockagentv1.CloseRequest) (*sockagentv1.CloseResponse, error) {
	in, err := s.t.Close(ctx, r.GetSocketId())
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.CloseResponse{Socket: toProto(in)}, nil
}

func (s *socketService) GetSocket(ctx context.Context, r *sockagentv1.GetSocketRequest) (*sockagentv1.GetSocketResponse, error) {
	in, err := s.t.GetFor(ctx, r.GetSocketId())
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.GetSocketResponse{Socket: toProto(in)}, nil
}

func (s *socketService) ListSockets(ctx context.Context, _ *sockagentv1.ListSocketsRequest) (*sockagentv1.ListSocketsResponse, error) {
	list := s.t.List(ctx)
	out := make([]*sockagentv1.Socket, len(list))
	for i, in := range list {
		out[i] = toProto(in)
	}
	return &sockagentv1.ListSocketsResponse{Sockets: out}, nil
}

// sessionService is the gRPC adapter of SessionService.
type sessionService struct {
	sockagentv1.UnimplementedSessionServiceServer
	t *table
}

func sessionProto(in SessionInfo) *sockagentv1.Session {
	return &sockagentv1.Session{
		SessionId: in.ID,
		Name:      in.Name,
		Owner:     in.Owner,
		Ttl:       durationpb.New(in.TTL),
		CreatedAt: timestamppb.New(in.Created),
		ExpiresAt: timestamppb.New(in.Expires),
		Sockets:   uint32(in.Sockets),
	}
}

func (s *sessionService) OpenSession(ctx context.Context, r *sockagentv1.OpenSessionRequest) (*sockagentv1.OpenSessionResponse, error) {
	var ttl time.Duration
	if d := r.GetTtl(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, fail(badArg(ReasonInvalidArgument, "open session: ttl: %v", err))
		}
		ttl = d.AsDuration()
	}
	in, err := s.t.OpenSession(ctx, ttl, r.GetName())
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.OpenSessionResponse{Session: sessionProto(in)}, nil
}

func (s *sessionService) KeepAlive(ctx context.Context, r *sockagentv1.KeepAliveRequest) (*sockagentv1.KeepAliveResponse, error) {
	in, err := s.t.KeepAlive(ctx, r.GetSessionId())
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.KeepAliveResponse{Session: sessionProto(in)}, nil
}

func (s *sessionService) CloseSession(ctx context.Context, r *sockagentv1.CloseSessionRequest) (*sockagentv1.CloseSessionResponse, error) {
	in, n, err := s.t.CloseSession(ctx, r.GetSessionId())
	if err != nil {
		return nil, fail(err)
	}
	return &sockagentv1.CloseSessionResponse{Session: sessionProto(in), ClosedSockets: uint32(n)}, nil
}

func (s *sessionService) ListSessions(ctx context.Context, _ *sockagentv1.ListSessionsRequest) (*sockagentv1.ListSessionsResponse, error) {
	list := s.t.ListSessions(ctx)
	out := make([]*sockagentv1.Session, len(list))
	for i, in := range list {
		out[i] = sessionProto(in)
	}
	return &sockagentv1.ListSessionsResponse{Sessions: out}, nil
}
