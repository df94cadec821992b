package agent

import (
	"context"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// sessionService is the gRPC adapter of SessionService.
type sessionService struct {
	sockagentv1.UnimplementedSessionServiceServer
	t *engine.Table
}

func (s *sessionService) OpenSession(ctx context.Context, r *sockagentv1.OpenSessionRequest) (*sockagentv1.OpenSessionResponse, error) {
	var ttl time.Duration
	if d := r.GetTtl(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, fail(engine.BadArg(contract.ReasonInvalidArgument, "open session: ttl: %v", err))
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
