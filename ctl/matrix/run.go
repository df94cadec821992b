package matrix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Target is how to reach one agent.
type Target struct {
	Addr string // HOST:PORT, unix:PATH or local
	Dial client.Options
}

// Config is one run of a matrix.
type Config struct {
	Plan   *Plan
	Agents map[string]Target // by name; an agent missing here is reached at its Address
	Probe  Probe
	// StartLocal starts an in-process agent for the address "local" (localagent.StartHook).
	StartLocal func(context.Context) (addr string, stop func(), err error)
	// SessionTTL is the lease of the run's session on each agent (0: DefaultSessionTTL): a
	// killed sockctl leaves nothing open for longer.
	SessionTTL time.Duration
	// Parallel bounds the agents set up, swept and cleaned up at once; 0: DefaultParallel.
	Parallel int
	// ConnectTimeout bounds reaching each agent (0: client.ConnectTimeout): an agent that does
	// not answer by then makes its cells agent-unavailable.
	ConnectTimeout time.Duration
}

// Defaults of a run.
const (
	DefaultSessionTTL = 30 * time.Second
	DefaultParallel   = 128
	// sweepMargin is added to a sweep's worst case for its RPC deadline.
	sweepMargin = 5 * time.Second
	// closeTimeout bounds closing one agent's listeners.
	closeTimeout = 5 * time.Second
	// The agent's defaults, for the sweep's deadline.
	agentConcurrency = 32
	agentTimeout     = time.Second
	agentAttempts    = 2
	agentSpacing     = 100 * time.Millisecond
	// slowestPace is the pace a deadline assumes when the file sets none: no agent cap is
	// expected below it.
	slowestPace = 100
)

// Result is a run's outcome.
type Result struct {
	Name    string
	Plan    *Plan
	Cells   []Cell // Plan.Cells with their verdicts
	Elapsed time.Duration
	// Unreachable maps the agents that could not be reached to why.
	Unreachable map[string]string
	// Closed counts the sockets the run opened and closed at the end; Left those it could
	// not close (the agents close them when the session's lease runs out).
	Closed, Left int
}

// Mismatches counts the cells that did not measure what was expected.
func (r *Result) Mismatches() int {
	n := 0
	for _, c := range r.Cells {
		if !c.OK() {
			n++
		}
	}
	return n
}

// node is one agent during a run.
type node struct {
	name    string
	target  Target
	conn    *grpc.ClientConn
	c       client.Clients
	session *client.Session
	stop    func()
	host    string // the address targets listen on and sources probe
	local   bool   // an in-process agent: it shares the host, so its listeners take any port
	err     error  // why it could not be reached

	mu      sync.Mutex
	sockets []string          // opened in the run, to close at the end
	addrs   map[string]string // service -> the served socket's address
	failed  map[string]error  // service -> why it could not be served
}

// Run sets the matrix up on the agents, sweeps it and cleans up: every target serves an echo
// on each service (in the run's session), every source sweeps its targets in one RPC, and every
// socket opened is closed at the end, whatever happened.
func Run(ctx context.Context, cfg Config) *Result {
	start := time.Now()
	plan := cfg.Plan
	res := &Result{Name: plan.Name, Plan: plan, Cells: make([]Cell, len(plan.Cells)), Unreachable: map[string]string{}}
	copy(res.Cells, plan.Cells)
	par := cfg.Parallel
	if par <= 0 {
		par = DefaultParallel
	}
	ttl := cfg.SessionTTL
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	nodes := map[string]*node{}
	var order []*node
	for _, a := range append(append([]Agent{}, plan.Sources...), plan.Targets...) {
		if nodes[a.Name] != nil {
			continue
		}
		t, ok := cfg.Agents[a.Name]
		if !ok {
			t = Target{Addr: a.Address}
		}
		n := &node{name: a.Name, target: t, addrs: map[string]string{}, failed: map[string]error{}}
		nodes[a.Name] = n
		order = append(order, n)
	}
	defer func() {
		res.Closed, res.Left = cleanup(context.WithoutCancel(ctx), order, par)
		res.Elapsed = time.Since(start)
	}()
	connectTimeout := cfg.ConnectTimeout
	if connectTimeout <= 0 {
		connectTimeout = client.ConnectTimeout
	}
	each(order, par, func(n *node) {
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		n.err = n.connect(cctx, cfg.StartLocal, ttl, "sockctl matrix "+plan.Name)
	})
	for _, n := range order {
		if n.err != nil {
			res.Unreachable[n.name] = n.err.Error()
		}
	}
	targets := make([]*node, 0, len(plan.Targets))
	for _, a := range plan.Targets {
		if n := nodes[a.Name]; n.err == nil {
			targets = append(targets, n)
		}
	}
	each(targets, par, func(n *node) { n.serveAll(ctx, plan.Services) })
	sources := make([]*node, 0, len(plan.Sources))
	for _, a := range plan.Sources {
		sources = append(sources, nodes[a.Name])
	}
	bySource := map[string][]int{}
	for i, c := range res.Cells {
		bySource[c.Source] = append(bySource[c.Source], i)
	}
	each(sources, par, func(n *node) { n.sweep(ctx, res.Cells, bySource[n.name], nodes, plan, cfg.Probe) })
	return res
}

// each runs fn on every node, at most par at once.
func each(ns []*node, par int, fn func(*node)) {
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for _, n := range ns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(n)
		})
	}
	wg.Wait()
}

// connect reaches the agent (starting it in-process for "local"), checks that it answers and
// opens the run's session there.
func (n *node) connect(ctx context.Context, startLocal func(context.Context) (string, func(), error), ttl time.Duration, name string) error {
	addr := n.target.Addr
	if addr == "local" {
		if startLocal == nil {
			return errors.New("this sockctl cannot start in-process agents")
		}
		a, stop, err := startLocal(ctx)
		if err != nil {
			return err
		}
		n.stop, addr, n.local = stop, a, true
		n.target.Dial = client.Options{}
	}
	n.host = hostOf(addr)
	conn, err := client.Dial(addr, n.target.Dial)
	if err != nil {
		return err
	}
	n.conn = conn
	n.c = client.NewClients(conn)
	info, err := client.WaitReady(ctx, n.c.Agent, n.target.Dial)
	if err != nil {
		return err
	}
	n.c = client.NewClients(client.ExpectInstance(conn, info.GetInstanceId()))
	n.session, err = client.OpenSession(ctx, n.c.Sessions, ttl, name)
	return err
}

// hostOf is the address an agent's listeners bind and its peers probe: the host of its
// control address, or loopback for a UNIX socket.
func hostOf(addr string) string {
	if strings.HasPrefix(addr, "unix:") {
		return "127.0.0.1"
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return "127.0.0.1"
}

// serveAll opens and serves an echo on every service.
func (n *node) serveAll(ctx context.Context, services []Service) {
	for _, s := range services {
		addr, err := n.serve(ctx, s)
		n.mu.Lock()
		if err != nil {
			n.failed[s.Name] = err
		} else {
			n.addrs[s.Name] = addr
		}
		n.mu.Unlock()
	}
}

// serve opens one service's socket on the agent's host and serves an echo on it: over UDP the
// echo is the reply that proves a datagram arrived.
func (n *node) serve(ctx context.Context, s Service) (string, error) {
	port := s.Port
	if n.local {
		port = 0 // in-process agents share this host: each takes a port of its own
	}
	addr := net.JoinHostPort(n.host, strconv.Itoa(port))
	cctx, cancel := context.WithTimeout(n.session.With(ctx), client.ConnectTimeout)
	defer cancel()
	rid := client.NewRequestID()
	var sock *sockagentv1.Socket
	var err error
	op := "listen"
	if s.Network[:3] == "udp" {
		op = "bind"
		var r *sockagentv1.BindResponse
		r, err = client.Retry(cctx, func(ctx context.Context) (*sockagentv1.BindResponse, error) {
			return n.c.Sockets.Bind(ctx, &sockagentv1.BindRequest{Network: s.Network, Address: addr, RequestId: rid})
		})
		sock = r.GetSocket()
	} else {
		var r *sockagentv1.ListenResponse
		r, err = client.Retry(cctx, func(ctx context.Context) (*sockagentv1.ListenResponse, error) {
			return n.c.Sockets.Listen(ctx, &sockagentv1.ListenRequest{Network: s.Network, Address: addr, RequestId: rid})
		})
		sock = r.GetSocket()
	}
	if err != nil {
		return "", fmt.Errorf("%s %s %s on %s: %w", op, s.Name, s.Network, addr, err)
	}
	n.mu.Lock()
	n.sockets = append(n.sockets, sock.GetSocketId())
	n.mu.Unlock()
	if _, err := n.c.Sockets.Serve(cctx, &sockagentv1.ServeRequest{SocketId: sock.GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO}); err != nil {
		return "", fmt.Errorf("serve echo on %s %s: %w", s.Name, sock.GetLocalAddress(), err)
	}
	return sock.GetLocalAddress(), nil
}

// verdicts maps the agent's verdicts to a cell's.
var verdicts = map[sockagentv1.SweepVerdict]Verdict{
	sockagentv1.SweepVerdict_SWEEP_VERDICT_OPEN:        Open,
	sockagentv1.SweepVerdict_SWEEP_VERDICT_CLOSED:      Closed,
	sockagentv1.SweepVerdict_SWEEP_VERDICT_FILTERED:    Filtered,
	sockagentv1.SweepVerdict_SWEEP_VERDICT_UNREACHABLE: Unreachable,
	sockagentv1.SweepVerdict_SWEEP_VERDICT_ERROR:       Error,
}

// sweep measures the cells (indexes into cells) of source n in one Sweep, and sets every
// cell's verdict: measured, or why it could not be.
func (n *node) sweep(ctx context.Context, cells []Cell, idx []int, nodes map[string]*node, plan *Plan, pr Probe) {
	services := map[string]Service{}
	for _, s := range plan.Services {
		services[s.Name] = s
	}
	req := &sockagentv1.SweepRequest{Concurrency: uint32(pr.Concurrency), Attempts: uint32(pr.Attempts), Pace: uint32(pr.Pace),
		Timeout: durationpb.New(pr.Timeout), Spacing: durationpb.New(pr.Spacing)}
	var swept []int
	for _, i := range idx {
		c := &cells[i]
		t := nodes[c.Target]
		switch {
		case n.err != nil:
			c.Verdict, c.Reason, c.Message = AgentUnavailable, contract.ReasonAgentUnavailable, "source "+n.name+": "+n.err.Error()
			continue
		case t.err != nil:
			c.Verdict, c.Reason, c.Message = AgentUnavailable, contract.ReasonAgentUnavailable, "target "+t.name+": "+t.err.Error()
			continue
		}
		t.mu.Lock()
		addr, ferr := t.addrs[c.Service], t.failed[c.Service]
		t.mu.Unlock()
		if ferr != nil {
			c.Verdict, c.Message = Error, "target "+t.name+": "+ferr.Error()
			c.Reason, _ = client.Reason(ferr)
			continue
		}
		c.Address = addr
		req.Targets = append(req.Targets, &sockagentv1.SweepTarget{Network: services[c.Service].Network, Address: addr, Id: strconv.Itoa(i)})
		swept = append(swept, i)
	}
	if len(swept) == 0 {
		return
	}
	got, err := runSweep(ctx, n.c.Measure, req, sweepDeadline(req, pr))
	for k, i := range swept {
		c := &cells[i]
		if r, ok := got[k]; ok {
			c.Verdict, c.Reason, c.Message = verdicts[r.GetVerdict()], r.GetReason(), r.GetMessage()
			c.RTT, c.Attempts = r.GetRtt().AsDuration(), int(r.GetAttempts())
			if c.Verdict == "" {
				c.Verdict, c.Reason = Error, "UNKNOWN_VERDICT"
			}
			continue
		}
		c.Verdict = Error
		c.Reason, c.Message = client.Reason(err)
		if err == nil {
			c.Reason, c.Message = contract.ReasonStepTimeout, "the sweep ended without a result for this target"
		} else if status.Code(err) == codes.Unavailable && client.Transient(err) {
			c.Verdict = AgentUnavailable
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

// sweepDeadline bounds a sweep: its rounds of targets, each the worst case of one (every
// attempt timing out, with the pauses between), the pacing of its first contacts, and a
// margin.
func sweepDeadline(req *sockagentv1.SweepRequest, pr Probe) time.Duration {
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

// cleanup closes every socket the run opened, then the sessions, connections and in-process
// agents, at most par agents at once; it returns how many sockets were closed and how many
// could not be.
func cleanup(ctx context.Context, nodes []*node, par int) (closed, left int) {
	var mu sync.Mutex
	each(nodes, par, func(n *node) {
		for _, id := range n.sockets {
			cctx, cancel := context.WithTimeout(ctx, closeTimeout)
			_, err := n.c.Sockets.Close(client.ForSocket(cctx, id), &sockagentv1.CloseRequest{SocketId: id})
			cancel()
			mu.Lock()
			if err != nil {
				left++
			} else {
				closed++
			}
			mu.Unlock()
		}
		n.session.Close(ctx)
		if n.conn != nil {
			n.conn.Close()
		}
		if n.stop != nil {
			n.stop()
		}
	})
	return closed, left
}
