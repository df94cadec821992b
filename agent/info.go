package agent

import (
	"context"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// agentService is the gRPC adapter of AgentService.
type agentService struct {
	sockagentv1.UnimplementedAgentServiceServer
	a *Agent
}

func (s *agentService) GetInfo(ctx context.Context, _ *sockagentv1.GetInfoRequest) (*sockagentv1.GetInfoResponse, error) {
	a := s.a
	host, _ := os.Hostname() // an empty hostname is the honest answer when the OS has none
	soft, hard := openFileLimits()
	_, set := a.table.who(ctx)
	pol := a.table.policy
	idle := max(a.cfg.IdleTimeout, 0) // negative: never, shown as 0
	return &sockagentv1.GetInfoResponse{
		Hostname:   host,
		Version:    a.cfg.Version,
		Os:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		Interfaces: interfaces(),
		StartedAt:  timestamppb.New(a.started),
		Uptime:     durationpb.New(time.Since(a.started)),
		Limits: &sockagentv1.Limits{
			OpenFilesSoft:  soft,
			OpenFilesHard:  hard,
			DefaultTimeout: durationpb.New(a.cfg.DefaultTimeout),
			MaxRecvBytes:   uint32(a.cfg.MaxRecvBytes),

			IdleTimeout:          durationpb.New(idle),
			MaxMessageBytes:      uint32(a.cfg.MaxMessageBytes),
			AgentSockets:         uint32(pol.MaxSockets),
			AgentBlockingCalls:   uint32(pol.MaxBlockingCalls),
			AgentBufferedBytes:   uint64(pol.MaxBufferedBytes),
			RuleSet:              set.Name,
			CallerSockets:        uint32(set.Limits.Sockets),
			BytesPerCall:         uint32(set.Limits.BytesPerCall),
			CallerBlockingCalls:  uint32(set.Limits.BlockingCalls),
			SessionSockets:       uint32(set.SessionLimits.Sockets),
			SessionBlockingCalls: uint32(set.SessionLimits.BlockingCalls),
			SessionBufferedBytes: uint64(set.SessionLimits.BufferedBytes),
		},
		InstanceId:  a.instance,
		Networks:    Networks(),
		OpenSockets: uint32(a.table.Len()),
		Pid:         int64(os.Getpid()),
	}, nil
}

func interfaces() []*sockagentv1.Interface {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	out := make([]*sockagentv1.Interface, 0, len(ifs))
	for _, ifc := range ifs {
		pi := &sockagentv1.Interface{
			Name:            ifc.Name,
			Index:           int32(ifc.Index),
			Mtu:             int32(ifc.MTU),
			HardwareAddress: ifc.HardwareAddr.String(),
		}
		if f := ifc.Flags.String(); f != "0" {
			pi.Flags = strings.Split(f, "|")
		}
		if addrs, err := ifc.Addrs(); err == nil {
			for _, ad := range addrs {
				pi.Addresses = append(pi.Addresses, ad.String())
			}
		}
		out = append(out, pi)
	}
	return out
}
