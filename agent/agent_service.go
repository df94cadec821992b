package agent

import (
	"context"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/procstat"
	"github.com/sockagent/sockagent/agent/internal/rlimit"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// agentService is the gRPC adapter of AgentService.
type agentService struct {
	sockagentv1.UnimplementedAgentServiceServer
	a *Agent
}

func (s *agentService) GetInfo(ctx context.Context, req *sockagentv1.GetInfoRequest) (*sockagentv1.GetInfoResponse, error) {
	a := s.a
	h := a.hostInfo.get(time.Now())
	r := &sockagentv1.GetInfoResponse{
		Uptime:      durationpb.New(time.Since(a.started)),
		OpenSockets: uint32(a.table.Len()),
		Process:     processStats(req.GetProcess()),
	}
	// The other fields change only with the host snapshot and the caller's rule set: they are
	// encoded once per pair and sent as they are (unknown fields are written after the known
	// ones, and a client decodes them as the fields they are). The response is meant for the
	// wire only: read in this process, it shows none of them.
	key := infoKey{set: a.table.RuleSet(ctx), pol: a.table.Policy()}
	enc, ok := h.encoded.Load(key)
	if !ok {
		b, err := proto.Marshal(a.staticInfo(h, key))
		if err != nil {
			return nil, err
		}
		enc, _ = h.encoded.LoadOrStore(key, b)
	}
	r.ProtoReflect().SetUnknown(enc.([]byte))
	return r, nil
}

// infoKey is what GetInfo's unchanging fields depend on besides the host snapshot.
type infoKey struct {
	set *policy.RuleSet
	pol *policy.Policy
}

// staticInfo is GetInfo's answer without the fields that change from call to call (uptime,
// open_sockets, process).
func (a *Agent) staticInfo(h *hostSnapshot, key infoKey) *sockagentv1.GetInfoResponse {
	set, pol := key.set, key.pol
	idle := max(a.cfg.IdleTimeout, 0) // negative: never, shown as 0
	return &sockagentv1.GetInfoResponse{
		Hostname:   h.hostname,
		Labels:     a.cfg.Labels,
		Version:    a.cfg.Version,
		Os:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		Interfaces: h.interfaces,
		StartedAt:  timestamppb.New(a.started),
		Limits: &sockagentv1.Limits{
			OpenFilesSoft:  h.filesSoft,
			OpenFilesHard:  h.filesHard,
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
			CallerBufferedBytes:  uint64(set.Limits.BufferedBytes),
			CallerSessions:       uint32(set.Limits.Sessions),
			SessionSockets:       uint32(set.SessionLimits.Sockets),
			SessionBlockingCalls: uint32(set.SessionLimits.BlockingCalls),
			SessionBufferedBytes: uint64(set.SessionLimits.BufferedBytes),

			MaxConnections:             uint32(a.cfg.MaxConnections),
			MaxUnauthenticated:         uint32(a.cfg.MaxUnauthenticated),
			MaxConnectionsPerPeer:      uint32(a.cfg.MaxConnectionsPerPeer),
			AuthTimeout:                durationpb.New(a.cfg.AuthTimeout),
			MaxStreams:                 uint32(a.cfg.MaxStreams),
			MaxHealthWatches:           uint32(a.cfg.MaxHealthWatches),
			HealthWatchesPerConnection: uint32(a.cfg.MaxHealthWatchesPerConn),
		},
		InstanceId: a.instance,
		Networks:   contract.AllNetworks(),
		Pid:        pid,
		SocketDir:  a.cfg.SocketDir,
	}
}

// processStats reads the agent process's resources when asked (nil otherwise).
func processStats(asked bool) *sockagentv1.ProcessStats {
	if !asked {
		return nil
	}
	p := procstat.Read()
	return &sockagentv1.ProcessStats{
		Goroutines: uint32(p.Goroutines),
		OpenFiles:  uint32(p.OpenFiles),
		Threads:    uint32(p.Threads),
		RssBytes:   uint64(p.RSSBytes),
	}
}

// pid is the agent process's id, which never changes.
var pid = int64(os.Getpid())

// HostInfoMaxAge is how old the hostname and the interface list GetInfo reports may be: they
// change only when the host is reconfigured, and reading them costs a dozen syscalls (a
// netlink dump per interface on Linux), so GetInfo reuses what it read for this long.
const HostInfoMaxAge = time.Second

// hostSnapshot is the hostname, the interfaces and the open-file limits read at one time. Its
// interfaces are shared by every GetInfo answer built from it and never modified.
type hostSnapshot struct {
	at                   time.Time
	hostname             string
	interfaces           []*sockagentv1.Interface
	filesSoft, filesHard uint64
	encoded              sync.Map // infoKey -> []byte: staticInfo encoded, for this snapshot
}

// hostCache keeps the latest hostSnapshot; one GetInfo a HostInfoMaxAge reads the host again
// (the others of that moment wait for it), the rest reuse the snapshot.
type hostCache struct {
	cur atomic.Pointer[hostSnapshot]
	mu  sync.Mutex // serialises refreshes
}

func (c *hostCache) get(now time.Time) *hostSnapshot {
	if h := c.cur.Load(); h != nil && fresh(h, now) {
		return h
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.cur.Load(); h != nil && fresh(h, now) {
		return h // another call refreshed it meanwhile
	}
	host, _ := os.Hostname() // an empty hostname is the honest answer when the OS has none
	h := &hostSnapshot{at: time.Now(), hostname: host, interfaces: interfaces()}
	h.filesSoft, h.filesHard = rlimit.Current()
	c.cur.Store(h)
	return h
}

// fresh reports whether h is younger than HostInfoMaxAge at now (a now before h.at, which only
// a caller's own clock could give, counts as stale).
func fresh(h *hostSnapshot, now time.Time) bool {
	age := now.Sub(h.at)
	return age >= 0 && age < HostInfoMaxAge
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
