package matrix

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/sockagent/sockagent/ctl/client"
	"github.com/sockagent/sockagent/ctl/matrix/sweep"
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
	// closeTimeout bounds closing one agent's listeners.
	closeTimeout = 5 * time.Second
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

// node is one agent during a run: how it was reached, and what the matrix opened there.
type node struct {
	*sweep.Agent
	target Target
	conn   *grpc.ClientConn
	c      client.Clients
	stop   func()

	mu      sync.Mutex
	sockets []string // opened in the run, to close at the end
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
		n := &node{Agent: &sweep.Agent{Name: a.Name}, target: t}
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
		n.Err = n.connect(cctx, cfg.StartLocal, ttl, "sockctl matrix "+plan.Name)
	})
	for _, n := range order {
		if n.Err != nil {
			res.Unreachable[n.Name] = n.Err.Error()
		}
	}
	agents := make(map[string]*sweep.Agent, len(nodes))
	for name, n := range nodes {
		agents[name] = n.Agent
	}
	res.Cells = sweep.Run(ctx, plan, agents, cfg.Probe, par, func(agent, id string) {
		n := nodes[agent]
		n.mu.Lock()
		n.sockets = append(n.sockets, id)
		n.mu.Unlock()
	})
	return res
}

// each runs fn on every node, at most par at once.
func each(ns []*node, par int, fn func(*node)) { sweep.Each(ns, par, fn) }

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
		n.stop, addr, n.Local = stop, a, true
		n.target.Dial = client.Options{}
	}
	n.Host = hostOf(addr)
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
	n.Sockets, n.Measure = n.c.Sockets, n.c.Measure
	n.Session, err = client.OpenSession(ctx, n.c.Sessions, ttl, name)
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
		n.Session.Close(ctx)
		if n.conn != nil {
			n.conn.Close()
		}
		if n.stop != nil {
			n.stop()
		}
	})
	return closed, left
}
