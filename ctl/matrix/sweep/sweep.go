// Package sweep measures an expanded matrix (package spec) through agents a caller has
// connected already: every target serves an echo on each service, in the caller's session
// there, and every source measures all of its cells in one MeasureService.Sweep. `sockctl
// matrix` (package matrix) and a scenario's matrix step (package runner) both run a matrix
// with it; each connects, keeps its own list of the sockets to close, and cleans up.
package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/client"
	"github.com/sockagent/sockagent/ctl/matrix/spec"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

const (
	// sweepMargin is added to a sweep's worst case for its RPC deadline.
	sweepMargin = 5 * time.Second
	// The agent's defaults, for the sweep's deadline.
	agentConcurrency = 32
	agentTimeout     = time.Second
	agentAttempts    = 2
	agentSpacing     = 100 * time.Millisecond
	// slowestPace is the pace a deadline assumes when the file sets none: no agent cap is
	// expected below it.
	slowestPace = 100
)

// Agent is one agent of a matrix run, as its caller connected it.
type Agent struct {
	Name    string
	Sockets sockagentv1.SocketServiceClient
	Measure sockagentv1.MeasureServiceClient
	// Session is the run's session there: what the agent opens for the matrix lives in it, so
	// a killed sockctl leaves nothing behind past its lease. nil: no session.
	Session *client.Session
	// Host is the address its listeners bind and its peers probe.
	Host string
	// Local says the agent runs in-process: it shares the host, so its listeners take any
	// port rather than the service's.
	Local bool
	// Err is why the agent could not be reached: its cells are agent-unavailable.
	Err error

	mu     sync.Mutex
	addrs  map[string]string // service -> the served socket's address
	failed map[string]error  // service -> why it could not be served
}

// Each runs fn on every item, at most par at once.
func Each[T any](items []T, par int, fn func(T)) {
	var g errgroup.Group
	g.SetLimit(max(par, 1))
	for _, it := range items {
		g.Go(func() error {
			fn(it)
			return nil
		})
	}
	_ = g.Wait() // fn reports on its own
}

// Serve opens an echo on every service: a listener (TCP) or a datagram socket (UDP, whose echo
// is the reply that proves a datagram arrived). opened gets each socket's id as soon as it
// exists, before it is served, so that the caller closes it whatever happens next.
func (a *Agent) Serve(ctx context.Context, services []spec.Service, opened func(id string)) {
	for _, s := range services {
		addr, err := a.serve(ctx, s, opened)
		a.mu.Lock()
		if a.addrs == nil {
			a.addrs, a.failed = map[string]string{}, map[string]error{}
		}
		if err != nil {
			a.failed[s.Name] = err
		} else {
			a.addrs[s.Name] = addr
		}
		a.mu.Unlock()
	}
}

// serve opens one service's socket on the agent's host and serves an echo on it.
func (a *Agent) serve(ctx context.Context, s spec.Service, opened func(string)) (string, error) {
	port := s.Port
	if a.Local {
		port = 0 // in-process agents share this host: each takes a port of its own
	}
	addr := net.JoinHostPort(a.Host, strconv.Itoa(port))
	cctx, cancel := context.WithTimeout(a.Session.With(ctx), client.ConnectTimeout)
	defer cancel()
	rid := client.NewRequestID()
	var sock *sockagentv1.Socket
	var err error
	op := "listen"
	if s.Network[:3] == "udp" {
		op = "bind"
		var r *sockagentv1.BindResponse
		r, err = client.Retry(cctx, func(ctx context.Context) (*sockagentv1.BindResponse, error) {
			return a.Sockets.Bind(ctx, &sockagentv1.BindRequest{Network: s.Network, Address: addr, RequestId: rid})
		})
		sock = r.GetSocket()
	} else {
		var r *sockagentv1.ListenResponse
		r, err = client.Retry(cctx, func(ctx context.Context) (*sockagentv1.ListenResponse, error) {
			return a.Sockets.Listen(ctx, &sockagentv1.ListenRequest{Network: s.Network, Address: addr, RequestId: rid})
		})
		sock = r.GetSocket()
	}
	if err != nil {
		return "", fmt.Errorf("%s %s %s on %s: %w", op, s.Name, s.Network, addr, err)
	}
	opened(sock.GetSocketId())
	if _, err := a.Sockets.Serve(cctx, &sockagentv1.ServeRequest{SocketId: sock.GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO}); err != nil {
		return "", fmt.Errorf("serve echo on %s %s: %w", s.Name, sock.GetLocalAddress(), err)
	}
	return sock.GetLocalAddress(), nil
}

// verdicts maps the agent's verdicts to a cell's.
var verdicts = map[sockagentv1.SweepVerdict]spec.Verdict{
	sockagentv1.SweepVerdict_SWEEP_VERDICT_OPEN:        spec.Open,
	sockagentv1.SweepVerdict_SWEEP_VERDICT_CLOSED:      spec.Closed,
	sockagentv1.SweepVerdict_SWEEP_VERDICT_FILTERED:    spec.Filtered,
	sockagentv1.SweepVerdict_SWEEP_VERDICT_UNREACHABLE: spec.Unreachable,
	sockagentv1.SweepVerdict_SWEEP_VERDICT_ERROR:       spec.Error,
}

// Sweep measures the cells (indexes into cells) of source a in one Sweep, and sets every
// cell's verdict: measured, or why it could not be. agents holds every target by name, served
// already.
func (a *Agent) Sweep(ctx context.Context, cells []spec.Cell, idx []int, agents map[string]*Agent, services []spec.Service, pr spec.Probe) {
	byName := map[string]spec.Service{}
	for _, s := range services {
		byName[s.Name] = s
	}
	req := &sockagentv1.SweepRequest{Concurrency: uint32(pr.Concurrency), Attempts: uint32(pr.Attempts), Pace: uint32(pr.Pace),
		Timeout: durationpb.New(pr.Timeout), Spacing: durationpb.New(pr.Spacing)}
	var swept []int
	for _, i := range idx {
		c := &cells[i]
		t := agents[c.Target]
		switch {
		case a.Err != nil:
			c.Verdict, c.Reason, c.Message = spec.AgentUnavailable, contract.ReasonAgentUnavailable, "source "+a.Name+": "+a.Err.Error()
			continue
		case t.Err != nil:
			c.Verdict, c.Reason, c.Message = spec.AgentUnavailable, contract.ReasonAgentUnavailable, "target "+t.Name+": "+t.Err.Error()
			continue
		}
		t.mu.Lock()
		addr, ferr := t.addrs[c.Service], t.failed[c.Service]
		t.mu.Unlock()
		if ferr != nil {
			c.Verdict, c.Message = spec.Error, "target "+t.Name+": "+ferr.Error()
			c.Reason, _ = client.Reason(ferr)
			continue
		}
		c.Address = addr
		req.Targets = append(req.Targets, &sockagentv1.SweepTarget{Network: byName[c.Service].Network, Address: addr, Id: strconv.Itoa(i)})
		swept = append(swept, i)
	}
	if len(swept) == 0 {
		return
	}
	got, err := runSweep(a.Session.With(ctx), a.Measure, req, Deadline(req, pr))
	for k, i := range swept {
		c := &cells[i]
		if r, ok := got[k]; ok {
			c.Verdict, c.Reason, c.Message = verdicts[r.GetVerdict()], r.GetReason(), r.GetMessage()
			c.RTT, c.Attempts = r.GetRtt().AsDuration(), int(r.GetAttempts())
			if c.Verdict == "" {
				c.Verdict, c.Reason = spec.Error, "UNKNOWN_VERDICT"
			}
			continue
		}
		c.Verdict = spec.Error
		c.Reason, c.Message = client.Reason(err)
		if err == nil {
			c.Reason, c.Message = contract.ReasonStepTimeout, "the sweep ended without a result for this target"
		} else if status.Code(err) == codes.Unavailable && client.Transient(err) {
			c.Verdict = spec.AgentUnavailable
		}
	}
}

// runSweep runs one Sweep and returns its results by target index.
func runSweep(ctx context.Context, mc sockagentv1.MeasureServiceClient, req *sockagentv1.SweepRequest, deadline time.Duration) (map[int]*sockagentv1.SweepResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	got := map[int]*sockagentv1.SweepResponse{}
	st, err := mc.Sweep(ctx, req)
	if err != nil {
		return got, err
	}
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		if i := int(r.GetIndex()); i < len(req.Targets) {
			got[i] = r
		}
	}
}

// Deadline bounds a sweep: its rounds of targets, each the worst case of one (every attempt
// timing out, with the pauses between), the pacing of its first contacts, and a margin.
func Deadline(req *sockagentv1.SweepRequest, pr spec.Probe) time.Duration {
	conc, timeout, attempts, spacing, pace := pr.Concurrency, pr.Timeout, pr.Attempts, pr.Spacing, pr.Pace
	if conc <= 0 {
		conc = agentConcurrency
	}
	if timeout <= 0 {
		timeout = agentTimeout
	}
	if attempts <= 0 {
		attempts = agentAttempts
	}
	if spacing <= 0 {
		spacing = agentSpacing
	}
	if pace <= 0 {
		pace = slowestPace
	}
	n := len(req.Targets)
	rounds := (n + conc - 1) / conc
	hosts := map[netip.Addr]bool{}
	for _, t := range req.Targets {
		if ap, err := netip.ParseAddrPort(t.GetAddress()); err == nil {
			hosts[ap.Addr()] = true
		}
	}
	per := time.Duration(attempts)*timeout + time.Duration(attempts-1)*spacing
	return time.Duration(rounds)*per + time.Duration(len(hosts))*time.Second/time.Duration(pace) + sweepMargin
}

// Run measures plan on agents (every source and target by name, connected: an agent with
// Err set has its cells agent-unavailable): the targets serve, then the sources sweep, at
// most par agents at once. opened gets every socket it opens, by agent. It returns the plan's
// cells with their verdicts.
func Run(ctx context.Context, plan *spec.Plan, agents map[string]*Agent, pr spec.Probe, par int, opened func(agent, id string)) []spec.Cell {
	cells := make([]spec.Cell, len(plan.Cells))
	copy(cells, plan.Cells)
	targets := make([]*Agent, 0, len(plan.Targets))
	for _, t := range plan.Targets {
		if a := agents[t.Name]; a.Err == nil {
			targets = append(targets, a)
		}
	}
	Each(targets, par, func(a *Agent) {
		a.Serve(ctx, plan.Services, func(id string) { opened(a.Name, id) })
	})
	sources := make([]*Agent, 0, len(plan.Sources))
	for _, s := range plan.Sources {
		sources = append(sources, agents[s.Name])
	}
	bySource := map[string][]int{}
	for i, c := range cells {
		bySource[c.Source] = append(bySource[c.Source], i)
	}
	Each(sources, par, func(a *Agent) { a.Sweep(ctx, cells, bySource[a.Name], agents, plan.Services, pr) })
	return cells
}
