// Package agent is the sockagent daemon as a library: a gRPC server (SocketService,
// AgentService, health, reflection) over a table of real OS sockets.
//
// The socket table (table.go) knows nothing of gRPC; the adapter (service.go) knows nothing of
// syscalls; toStatus (errors.go) is the one bridge from Go errors to gRPC status.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Version is the agent's version, set at build time with -ldflags "-X ...agent.Version=v1.2.3".
var Version = "dev"

// Defaults applied by New to zero Config fields.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultMaxRecvBytes = 1 << 20
)

// Config configures an Agent. The zero value is usable.
type Config struct {
	// Logger receives one line per RPC; nil discards.
	Logger *slog.Logger
	// Version reported by GetInfo; empty means the package Version.
	Version string
	// DefaultTimeout applies to blocking calls whose timeout is 0.
	DefaultTimeout time.Duration
	// MaxRecvBytes bounds max_bytes and exact_bytes of one Recv or RecvFrom.
	MaxRecvBytes int
	// ServerOptions are added to the gRPC server's options (credentials, limits).
	ServerOptions []grpc.ServerOption
}

// Agent serves the sockagent.v1 API over gRPC.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	table    *table
	srv      *grpc.Server
	health   *health.Server
	started  time.Time
	instance string
}

// New builds an Agent; call Serve to accept connections and Close or Shutdown to stop.
func New(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Version == "" {
		cfg.Version = Version
	}
	if cfg.DefaultTimeout < 0 || cfg.MaxRecvBytes < 0 {
		return nil, fmt.Errorf("agent config: DefaultTimeout %s and MaxRecvBytes %d must not be negative", cfg.DefaultTimeout, cfg.MaxRecvBytes)
	}
	if cfg.DefaultTimeout == 0 {
		cfg.DefaultTimeout = DefaultTimeout
	}
	if cfg.MaxRecvBytes == 0 {
		cfg.MaxRecvBytes = DefaultMaxRecvBytes
	}
	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails on supported platforms
	a := &Agent{
		cfg:      cfg,
		log:      cfg.Logger,
		table:    newTable(cfg.DefaultTimeout, cfg.MaxRecvBytes),
		health:   health.NewServer(),
		started:  time.Now(),
		instance: hex.EncodeToString(id[:]),
	}
	opts := append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(a.logUnary)}, cfg.ServerOptions...)
	a.srv = grpc.NewServer(opts...)
	sockagentv1.RegisterSocketServiceServer(a.srv, &socketService{t: a.table})
	sockagentv1.RegisterAgentServiceServer(a.srv, &agentService{a: a})
	healthpb.RegisterHealthServer(a.srv, a.health)
	reflection.Register(a.srv)
	for _, svc := range []string{"", sockagentv1.SocketService_ServiceDesc.ServiceName, sockagentv1.AgentService_ServiceDesc.ServiceName} {
		a.health.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}
	return a, nil
}

// Serve accepts gRPC connections on lis until the agent stops.
func (a *Agent) Serve(lis net.Listener) error {
	a.log.Info("serving", "addr", lis.Addr().String(), "version", a.cfg.Version, "instance", a.instance)
	return a.srv.Serve(lis)
}

// NumSockets counts the sockets open in the agent's table.
func (a *Agent) NumSockets() int { return a.table.Len() }

// InstanceID is random per Agent: a new one means the agent restarted.
func (a *Agent) InstanceID() string { return a.instance }

// Shutdown stops gracefully: health turns NOT_SERVING, every socket is closed (blocked calls
// return UNAVAILABLE with reason AGENT_STOPPING), in-flight RPCs finish, and the server stops.
// When ctx ends first, remaining RPCs are cut off.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.health.Shutdown()
	a.table.Stop()
	done := make(chan struct{})
	go func() {
		a.srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		a.srv.Stop()
		<-done
		return ctx.Err()
	}
}

// Close stops at once: every socket is closed and every RPC cut off.
func (a *Agent) Close() error {
	a.health.Shutdown()
	a.table.Stop()
	a.srv.Stop()
	return nil
}

type socketGetter interface{ GetSocket() *sockagentv1.Socket }

// logUnary writes one structured line per RPC: rpc socket network local remote err.
func (a *Agent) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	if !a.log.Enabled(ctx, slog.LevelInfo) {
		return resp, err
	}
	rpc := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs, slog.String("rpc", rpc))
	var id, network, local, remote string
	if r, ok := req.(interface{ GetSocketId() string }); ok {
		id = r.GetSocketId()
	}
	if r, ok := req.(interface{ GetNetwork() string }); ok {
		network = r.GetNetwork()
	}
	if r, ok := req.(interface{ GetAddress() string }); ok {
		if rpc == "Listen" || rpc == "Bind" {
			local = r.GetAddress()
		} else {
			remote = r.GetAddress()
		}
	}
	if g, ok := resp.(socketGetter); ok && g.GetSocket() != nil {
		s := g.GetSocket()
		id, network, local, remote = s.GetSocketId(), s.GetNetwork(), s.GetLocalAddress(), s.GetRemoteAddress()
	}
	for _, kv := range [][2]string{{"socket", id}, {"network", network}, {"local", local}, {"remote", remote}} {
		if kv[1] != "" {
			attrs = append(attrs, slog.String(kv[0], kv[1]))
		}
	}
	st := status.Convert(err)
	attrs = append(attrs, slog.String("code", st.Code().String()), slog.Duration("dur", time.Since(start)))
	if err != nil {
		attrs = append(attrs, slog.String("err", st.Message()))
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "rpc", attrs...)
	return resp, err
}
