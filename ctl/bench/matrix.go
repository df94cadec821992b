package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/ctl/client"
	"github.com/sockagent/sockagent/ctl/localagent"
	"github.com/sockagent/sockagent/ctl/matrix/spec"
	"github.com/sockagent/sockagent/ctl/matrix/sweep"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// matrixPerSource bounds the cells one source measures at once, on both sides: the Sweep's
// concurrency and the Probe calls in flight per source.
const matrixPerSource = 32

// matrixBench is N in-process agents and a connection to each: the hosts of an N x N matrix.
type matrixBench struct {
	agents []*localagent.Agent
	conns  []*grpc.ClientConn
	sweep  map[string]*sweep.Agent
	plan   *spec.Plan
}

func newMatrixBench(n int) (_ *matrixBench, err error) {
	m := &matrixBench{sweep: map[string]*sweep.Agent{}}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	var all []spec.Agent
	for i := range n {
		a, err := localagent.Start(agent.Config{})
		if err != nil {
			return nil, fmt.Errorf("start agent %d of %d: %w", i+1, n, err)
		}
		m.agents = append(m.agents, a)
		conn, err := client.Dial(a.Addr(), client.Options{})
		if err != nil {
			return nil, err
		}
		m.conns = append(m.conns, conn)
		c := client.NewClients(conn)
		name := "h" + strconv.Itoa(i+1)
		m.sweep[name] = &sweep.Agent{Name: name, Sockets: c.Sockets, Measure: c.Measure, Host: "127.0.0.1", Local: true}
		all = append(all, spec.Agent{Name: name, Address: a.Addr()})
	}
	f := &spec.File{Services: []spec.Service{{Name: "web", Network: "tcp"}}, Default: spec.Open,
		Sources: []spec.Selector{{All: true}}, Targets: []spec.Selector{{All: true}}}
	m.plan, err = spec.Expand(f, all)
	return m, err
}

func (m *matrixBench) close() {
	for _, c := range m.conns {
		c.Close()
	}
	for _, a := range m.agents {
		_ = a.Close()
	}
}

// closeAll closes the sockets a round opened, outside its timing.
func (m *matrixBench) closeAll(opened map[string][]string) {
	for name, ids := range opened {
		for _, id := range ids {
			closeSocketOn(m.sweep[name].Sockets, id)
		}
	}
}

// recorder collects the sockets a round opens, by agent.
func recorder() (map[string][]string, func(agent, id string)) {
	var mu sync.Mutex
	opened := map[string][]string{}
	return opened, func(agent, id string) {
		mu.Lock()
		opened[agent] = append(opened[agent], id)
		mu.Unlock()
	}
}

// viaSweep is one round of the matrix as sockctl runs it: every target serves (not timed),
// then every source measures its targets in one Sweep (timed). Every cell must be open.
func (m *matrixBench) viaSweep(ctx context.Context) (time.Duration, error) {
	opened, add := recorder()
	defer m.closeAll(opened)
	targets := m.targets()
	sweep.Each(targets, len(targets), func(a *sweep.Agent) {
		a.Serve(ctx, m.plan.Services, func(id string) { add(a.Name, id) })
	})
	cells := make([]spec.Cell, len(m.plan.Cells))
	copy(cells, m.plan.Cells)
	bySource := map[string][]int{}
	for i, c := range cells {
		bySource[c.Source] = append(bySource[c.Source], i)
	}
	start := time.Now()
	sweep.Each(m.plan.Sources, len(m.plan.Sources), func(s spec.Agent) {
		m.sweep[s.Name].Sweep(ctx, cells, bySource[s.Name], m.sweep, m.plan.Services, spec.Probe{Concurrency: matrixPerSource})
	})
	d := time.Since(start)
	for _, c := range cells {
		if c.Verdict != spec.Open {
			return 0, fmt.Errorf("sweep: %s -> %s %s (%s %s)", c.Source, c.Target, c.Verdict, c.Reason, c.Message)
		}
	}
	return d, nil
}

func (m *matrixBench) targets() []*sweep.Agent {
	out := make([]*sweep.Agent, 0, len(m.plan.Targets))
	for _, t := range m.plan.Targets {
		out = append(out, m.sweep[t.Name])
	}
	return out
}

// perCell is the same round with one Probe RPC (a TCP connect) per cell: every target serves
// the same way (not timed), then every source probes its targets, matrixPerSource at once
// (timed).
func (m *matrixBench) perCell(ctx context.Context) (time.Duration, error) {
	opened, add := recorder()
	defer m.closeAll(opened)
	targets := m.targets()
	addrs := map[string]string{}
	var mu sync.Mutex
	var errs []error
	sweep.Each(targets, len(targets), func(a *sweep.Agent) {
		addr, err := serveEcho(ctx, a.Sockets, func(id string) { add(a.Name, id) })
		mu.Lock()
		addrs[a.Name] = addr
		errs = append(errs, err)
		mu.Unlock()
	})
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	bySource := map[string][]spec.Cell{}
	for _, c := range m.plan.Cells {
		bySource[c.Source] = append(bySource[c.Source], c)
	}
	start := time.Now()
	sweep.Each(m.plan.Sources, len(m.plan.Sources), func(s spec.Agent) {
		mc := m.sweep[s.Name].Measure
		sweep.Each(bySource[s.Name], matrixPerSource, func(c spec.Cell) {
			p, err := mc.Probe(ctx, &sockagentv1.ProbeRequest{Network: "tcp", Address: addrs[c.Target], Mode: sockagentv1.ProbeMode_PROBE_MODE_CONNECT,
				Count: 1, Timeout: durationpb.New(time.Second)})
			if err == nil && p.GetReceived() != 1 {
				err = fmt.Errorf("probe %s -> %s: no connection (%v)", c.Source, c.Target, p.GetErrors())
			}
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	})
	d := time.Since(start)
	return d, errors.Join(errs...)
}

// serveEcho opens a TCP listener on 127.0.0.1:0 of an agent and serves an echo on it, as a
// matrix's target does.
func serveEcho(ctx context.Context, sc sockagentv1.SocketServiceClient, opened func(string)) (string, error) {
	l, err := sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		return "", rpcErr("Listen", err)
	}
	opened(l.GetSocket().GetSocketId())
	if _, err := sc.Serve(ctx, &sockagentv1.ServeRequest{SocketId: l.GetSocket().GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO}); err != nil {
		return "", rpcErr("Serve", err)
	}
	return l.GetSocket().GetLocalAddress(), nil
}

// matrixRow: an N x N TCP matrix over N in-process agents on loopback, one Sweep per source,
// vs the same matrix with one Probe RPC per cell. Rounds alternate; the medians are compared.
func matrixRow(ctx context.Context, e *env) result {
	// At 10 x 10 on loopback a connect costs about what an RPC does and the two paths tie;
	// the per-cell RPCs' cost shows from 20 x 20 on (0.4x to 0.7x measured). The quick run
	// only checks that the row works.
	n, rounds := e.iterations(20, 10), e.iterations(7, 2)
	m, err := newMatrixBench(n)
	if err != nil {
		return result{err: err, baseErr: err}
	}
	defer m.close()
	var ours, base []time.Duration
	var r result
	for range rounds {
		d, err := m.viaSweep(ctx)
		if err != nil {
			r.err = err
			break
		}
		ours = append(ours, d)
		if d, err = m.perCell(ctx); err != nil {
			r.baseErr = err
			break
		}
		base = append(base, d)
	}
	if r.err != nil || r.baseErr != nil {
		return r
	}
	cells := float64(len(m.plan.Cells))
	ms := &runtime.MemStats{}
	runtime.ReadMemStats(ms)
	fig, bl := median(ours), median(base)
	r.value, r.base = fig.Seconds(), bl.Seconds()
	r.note = fmt.Sprintf("%d x %d = %d cells: sweep %s (%.0f cells/s), per-cell Probe %s (%.0f cells/s); heap %.1f MiB, peak RSS %s (agents included)",
		n, n, len(m.plan.Cells), fig.Round(time.Microsecond), cells/fig.Seconds(), bl.Round(time.Microsecond), cells/bl.Seconds(),
		float64(ms.HeapAlloc)/(1<<20), peakRSS())
	return r
}

// peakRSS is this process's peak resident set (VmHWM), or "?" where /proc does not say.
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
