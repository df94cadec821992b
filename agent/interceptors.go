package agent

// The interceptors every RPC passes through: authentication (the caller, from the
// connection's client certificate and the bearer token), one log line per RPC (DEBUG, or
// INFO when audited), and the audit line of the RPCs that create, write to or close a
// socket. Admission (every limit) is the
// engine's, on the path of each call that needs it.

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sockagent/sockagent/agent/internal/engine"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// audited are the RPCs that create, write to or close a socket. Their log line carries
// audit=true, and they are also written to Config.AuditLogger when it is set.
var audited = map[string]bool{
	sockagentv1.SocketService_Listen_FullMethodName:   true,
	sockagentv1.SocketService_Bind_FullMethodName:     true,
	sockagentv1.SocketService_Dial_FullMethodName:     true,
	sockagentv1.SocketService_Accept_FullMethodName:   true,
	sockagentv1.SocketService_Send_FullMethodName:     true,
	sockagentv1.SocketService_SendTo_FullMethodName:   true,
	sockagentv1.SocketService_Shutdown_FullMethodName: true,
	sockagentv1.SocketService_Close_FullMethodName:    true,
	sockagentv1.SocketService_Attach_FullMethodName:   true,
	sockagentv1.SocketService_Serve_FullMethodName:    true,
	// UpdateToxics changes what a proxy does to the traffic it forwards.
	sockagentv1.SocketService_UpdateToxics_FullMethodName: true,
	// Measurements open their own sockets and send to their target.
	sockagentv1.MeasureService_Probe_FullMethodName:      true,
	sockagentv1.MeasureService_Throughput_FullMethodName: true,
}

// IsAudited reports whether the RPC fullMethod ("/sockagent.v1.SocketService/Dial") creates,
// writes to or closes a socket, and is therefore audited.
func IsAudited(fullMethod string) bool { return audited[fullMethod] }

// unary authenticates a unary RPC, runs it with the caller in its context, and logs it.
func (a *Agent) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	caller, gen, why, authed, err := a.callerOf(ctx, info.FullMethod)
	ctx = engine.WithCaller(expectingInstance(ctx), caller)
	var resp any
	if err == nil {
		var done func() bool
		if ctx, done = a.tracked(ctx, caller, gen); done == nil {
			why, err = "token revoked", errUnauthenticated()
		} else {
			resp, err = handler(ctx, req)
			why, err = revokedEnd(done(), err)
		}
	}
	a.logRPC(ctx, rpcRecord{method: info.FullMethod, caller: caller, authFailure: why, unauthenticated: !authed, req: req, resp: resp, err: err, start: start})
	return resp, err
}

// rpcRecord is what one RPC's log line says.
type rpcRecord struct {
	method      string
	caller      Caller
	authFailure string // why the credentials were refused; for the log only
	// unauthenticated: the caller did not prove who it is (a health RPC without a token, or a
	// refused one); its line counts against the rate of refusalLog.
	unauthenticated bool
	req, resp       any
	err             error
	start           time.Time
	counts          *engine.StreamCounts // an Attach's bytes; nil for other RPCs
}

type socketGetter interface{ GetSocket() *sockagentv1.Socket }

// logRPC writes one structured line per RPC to the log, keys rpc caller peer [token] [audit]
// socket network local remote [bytes] [bytes_read] [destinations] [destinations_more] code dur
// [err] [auth], and the same line, with
// message "audit", to the audit log for the audited RPCs. Lines of the audited RPCs and of
// refused credentials are at INFO; the rest at DEBUG, so that a busy agent's log at the
// default level holds what changed sockets and who was refused, not every read and list.
func (a *Agent) logRPC(ctx context.Context, r rpcRecord) {
	audit := audited[r.method]
	level := rpcLevel(audit, r.authFailure)
	toLog := a.log.Enabled(ctx, level)
	toAudit := audit && a.audit != nil && a.audit.Enabled(ctx, slog.LevelInfo)
	if !toLog && !toAudit {
		return
	}
	var suppressed int
	if r.unauthenticated {
		ok, n := a.refusals.allow()
		if !ok {
			return
		}
		suppressed = n
	}
	rpc := r.method[strings.LastIndexByte(r.method, '/')+1:]
	attrs := make([]slog.Attr, 0, 15)
	attrs = append(attrs, slog.String("rpc", rpc), slog.String("caller", r.caller.ID))
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil && p.Addr.String() != "" {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if r.caller.Kind == "cert" && r.caller.Token != "" {
		attrs = append(attrs, slog.String("token", r.caller.Token))
	}
	if audit {
		attrs = append(attrs, slog.Bool("audit", true))
	}
	attrs = a.appendSocketAttrs(attrs, rpc, audit, r.req, r.resp)
	if b, ok := r.resp.(interface{ GetBytesSent() uint64 }); ok && r.err == nil {
		attrs = append(attrs, slog.Uint64("bytes", b.GetBytesSent()))
	}
	if r.counts != nil { // an Attach: written to the socket, read from it (both, even on error)
		attrs = append(attrs, slog.Uint64("bytes", r.counts.Written.Load()), slog.Uint64("bytes_read", r.counts.Read.Load()))
		// and where its datagrams went: each per-message address, bounded
		if dests, more := r.counts.Destinations(); len(dests) > 0 {
			attrs = append(attrs, slog.String("destinations", strings.Join(dests, " ")))
			if more > 0 {
				attrs = append(attrs, slog.Int("destinations_more", more))
			}
		}
	}
	st := status.Convert(r.err)
	attrs = append(attrs, slog.String("code", st.Code().String()), slog.Duration("dur", time.Since(r.start)))
	if r.err != nil {
		attrs = append(attrs, slog.String("err", st.Message()))
	}
	if r.authFailure != "" {
		attrs = append(attrs, slog.String("auth", r.authFailure))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	if toLog {
		a.log.LogAttrs(ctx, level, "rpc", attrs...)
	}
	if toAudit {
		a.audit.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
	}
}

// rpcLevel is the level of an RPC's line in the log: INFO for an audited RPC or refused
// credentials, else DEBUG.
func rpcLevel(audit bool, authFailure string) slog.Level {
	if audit || authFailure != "" {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// appendSocketAttrs appends the socket an RPC concerns, keys socket network local remote: from
// the socket in its response, else from its request (and, for an audited call on a socket, the
// socket's own addresses: Send and SendTo answer with counts only).
func (a *Agent) appendSocketAttrs(attrs []slog.Attr, rpc string, audit bool, req, resp any) []slog.Attr {
	var id, network, local, remote string
	if q, ok := req.(interface{ GetSocketId() string }); ok {
		id = q.GetSocketId()
	}
	if q, ok := req.(interface{ GetNetwork() string }); ok {
		network = q.GetNetwork()
	}
	if q, ok := req.(interface{ GetAddress() string }); ok {
		if rpc == "Listen" || rpc == "Bind" {
			local = q.GetAddress()
		} else {
			remote = q.GetAddress()
		}
	}
	if g, ok := resp.(socketGetter); ok && g.GetSocket() != nil {
		s := g.GetSocket()
		id, network, local, remote = s.GetSocketId(), s.GetNetwork(), s.GetLocalAddress(), s.GetRemoteAddress()
	} else if audit && id != "" {
		if in, err := a.table.Get(id); err == nil {
			network, local = in.Network, in.Local
			if remote == "" {
				remote = in.Remote
			}
		}
	}
	for _, kv := range [][2]string{{"socket", id}, {"network", network}, {"local", local}, {"remote", remote}} {
		if kv[1] != "" {
			attrs = append(attrs, slog.String(kv[0], clip(kv[1], maxLoggedField)))
		}
	}
	return attrs
}

// maxLoggedField bounds a request's string in a log line: a wrong address as long as the
// request allows would otherwise be written whole to the log and the audit log.
const maxLoggedField = 256

// logReclaim writes one structured line, message "reclaim", for a socket the agent closed on
// its own (its session closed, its session's lease expired, or idle), keys audit socket owner
// [session] network local remote cause why; to the log and to the audit log.
func (a *Agent) logReclaim(in engine.Info, cause, why string) {
	ctx := context.Background()
	toLog := a.log.Enabled(ctx, slog.LevelInfo)
	toAudit := a.audit != nil && a.audit.Enabled(ctx, slog.LevelInfo)
	if !toLog && !toAudit {
		return
	}
	attrs := []slog.Attr{slog.Bool("audit", true), slog.String("socket", in.ID), slog.String("owner", in.Owner)}
	for _, kv := range [][2]string{{"session", in.Session}, {"network", in.Network}, {"local", in.Local}, {"remote", in.Remote}} {
		if kv[1] != "" {
			attrs = append(attrs, slog.String(kv[0], kv[1]))
		}
	}
	attrs = append(attrs, slog.String("cause", cause), slog.String("why", why))
	if toLog {
		a.log.LogAttrs(ctx, slog.LevelInfo, "reclaim", attrs...)
	}
	if toAudit {
		a.audit.LogAttrs(ctx, slog.LevelInfo, "reclaim", attrs...)
	}
}

// authStream authenticates a streaming RPC (server reflection, later streams) and logs its
// end like a unary RPC.
func (a *Agent) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	start := time.Now()
	caller, gen, why, authed, err := a.callerOf(ctx, info.FullMethod)
	ctx = engine.WithCaller(expectingInstance(ctx), caller)
	var done func() bool
	if err == nil {
		if ctx, done = a.tracked(ctx, caller, gen); done == nil {
			why, err = "token revoked", errUnauthenticated()
		}
	}
	var counts *engine.StreamCounts
	if info.FullMethod == sockagentv1.SocketService_Attach_FullMethodName {
		counts = new(engine.StreamCounts)
		ctx = context.WithValue(ctx, streamCountsKey{}, counts)
	}
	cs := &callerStream{ServerStream: ss, ctx: ctx}
	if err == nil {
		err = handler(srv, cs)
		why, err = revokedEnd(done(), err)
	}
	var req any
	if first := cs.first.Load(); first != nil {
		req = *first
	}
	a.logRPC(ctx, rpcRecord{method: info.FullMethod, caller: caller, authFailure: why, unauthenticated: !authed, req: req, err: err, start: start, counts: counts})
	return err
}

// tracked registers an RPC a token authenticated (gen not nil) with trackToken, so that
// revoking the token ends it. done is nil when the token was revoked meanwhile; for an RPC no
// token authenticated it does nothing.
func (a *Agent) tracked(ctx context.Context, c Caller, gen *Tokens) (context.Context, func() bool) {
	if gen == nil {
		return ctx, func() bool { return false }
	}
	ctx, done, ok := a.trackToken(ctx, c, gen)
	if !ok {
		return ctx, nil
	}
	return ctx, done
}

// revokedEnd is the outcome of an RPC whose token was revoked while it ran: the failure its
// cancelled context caused becomes UNAUTHENTICATED (a call that had already succeeded keeps its
// result).
func revokedEnd(revoked bool, err error) (why string, _ error) {
	if revoked && err != nil {
		return "token revoked", errUnauthenticated()
	}
	return "", err
}

type streamCountsKey struct{}

// streamCountsFrom returns the counts authStream put in ctx, or nil.
func streamCountsFrom(ctx context.Context) *engine.StreamCounts {
	c, _ := ctx.Value(streamCountsKey{}).(*engine.StreamCounts)
	return c
}

// callerStream is a ServerStream whose context carries the caller, and which keeps what the
// first request names (Attach's socket_id; Throughput's network and address), for the RPC's
// log line.
type callerStream struct {
	grpc.ServerStream
	ctx   context.Context
	first atomic.Pointer[streamRequest]
}

func (s *callerStream) Context() context.Context { return s.ctx }

func (s *callerStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && s.first.Load() == nil {
		var r streamRequest
		if q, ok := m.(interface{ GetSocketId() string }); ok {
			r.socket = q.GetSocketId()
		}
		if q, ok := m.(interface{ GetNetwork() string }); ok {
			r.network = q.GetNetwork()
		}
		if q, ok := m.(interface{ GetAddress() string }); ok {
			r.address = q.GetAddress()
		}
		s.first.Store(&r)
	}
	return err
}

// streamRequest is what a stream's first request names, for logRPC.
type streamRequest struct{ socket, network, address string }

func (r streamRequest) GetSocketId() string { return r.socket }
func (r streamRequest) GetNetwork() string  { return r.network }
func (r streamRequest) GetAddress() string  { return r.address }

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
