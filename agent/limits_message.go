package agent

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// messageSizeLog logs the requests gRPC refused before any interceptor ran: a request over
// Config.MaxMessageBytes gets RESOURCE_EXHAUSTED "grpc: received message larger than max
// (SIZE vs. LIMIT)" from gRPC itself, which no RPC log line would show. The agent's own
// RESOURCE_EXHAUSTED answers carry an ErrorInfo; gRPC's carry none, which tells them apart.
type messageSizeLog struct {
	log *slog.Logger
	max int
}

type rpcNameKey struct{}

func (h messageSizeLog) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, rpcNameKey{}, info.FullMethodName)
}

func (h messageSizeLog) HandleRPC(ctx context.Context, s stats.RPCStats) {
	end, ok := s.(*stats.End)
	if !ok || end.IsClient() || end.Error == nil {
		return
	}
	st := status.Convert(end.Error)
	if st.Code() != codes.ResourceExhausted || len(st.Details()) != 0 {
		return
	}
	name, _ := ctx.Value(rpcNameKey{}).(string)
	h.log.Warn("request refused by gRPC: larger than --max-message-bytes (Config.MaxMessageBytes)",
		"rpc", name, "limit", h.max, "err", st.Message())
}

func (messageSizeLog) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (messageSizeLog) HandleConn(context.Context, stats.ConnStats) {}
