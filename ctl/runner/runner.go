// Package runner runs sockctl scenarios: it connects to the agents a file names, runs its
// steps in order and in parallel, checks each step's expectations, closes every socket the
// run opened (pass or fail), and reports as a table, JSON or JUnit XML.
//
// Each action is defined once in the scenario package (how it is written and checked) and
// once here (how it runs and reports: see actions). The runner is a client only: agents
// written "local" are started by the Config.StartLocal hook, so that this package does not
// import the agent.
package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/tracing"
	"github.com/sockagent/sockagent/ctl/client"
	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Step statuses in reports.
const (
	StatusPassed  = "passed"
	StatusFailed  = "failed"
	StatusSkipped = "skipped"
)

// Defaults of Config that the command line also shows.
const (
	// DefaultStepTimeout bounds a step that gives no timeout of its own.
	DefaultStepTimeout = 10 * time.Second
	// DefaultSessionTTL is the lease of a run's session on each agent: a killed sockctl
	// leaves its sockets behind for at most this long.
	DefaultSessionTTL = 30 * time.Second
	// DefaultFanoutConcurrency bounds the agents a fanned-out step (on: {role: web}) runs on
	// at once: enough that a hundred agents take a few rounds of one step's time, few enough
	// that sockctl does not open a hundred calls at once on a small machine.
	DefaultFanoutConcurrency = 32
)

const (
	// cleanupTimeout bounds closing the sockets of one agent at the end of a run.
	cleanupTimeout = 5 * time.Second
	// localAddr is the address a scenario gives an agent the run starts in-process.
	localAddr = "local"
)

// Config is what a run is asked to do.
type Config struct {
	// File is the validated scenario.
	File *scenario.File
	// Agents says where each agent of the file is and how to connect to it; an agent it
	// does not name is at the file's address, reached without credentials.
	Agents map[string]Target
	// StepTimeout bounds a step that gives no timeout of its own.
	StepTimeout time.Duration
	// KeepGoing runs every step even after a failure.
	KeepGoing bool
	// SessionTTL is the lease of the run's session on each agent; 0 = no session.
	SessionTTL time.Duration
	// Getenv resolves ${env.NAME}; nil sees an empty environment.
	Getenv func(string) string
	// OnStep is called as each step ends (a live table); may be nil. Calls do not overlap.
	OnStep func(StepReport)
	// OnStart is called as a step's call begins, with its Index, Name, Agent and Action (a
	// live status line); may be nil. Calls do not overlap each other or OnStep's.
	OnStart func(StepReport)
	// StartLocal starts an in-process agent for an agent whose address is "local" and
	// returns its address and the function that stops it; nil makes such agents
	// unreachable.
	StartLocal func(ctx context.Context) (addr string, stop func(), err error)
	// FanoutConcurrency bounds the agents a fanned-out step runs on at once; 0 is
	// DefaultFanoutConcurrency.
	FanoutConcurrency int
}

// Target is where one agent of a run is and how to connect to it.
type Target struct {
	Addr string         // HOST:PORT, unix:PATH, or "local" for an in-process agent
	Dial client.Options // ignored for "local" (in-process agents serve plaintext on loopback)
	// Labels replace the file's labels of the agent (an inventory's); nil keeps the file's.
	Labels map[string]string
}

// remote is one agent of a run and the connection to it.
type remote struct {
	name, addr, host string
	dial             client.Options
	conn             *grpc.ClientConn
	sockets          sockagentv1.SocketServiceClient
	info             sockagentv1.AgentServiceClient
	measure          sockagentv1.MeasureServiceClient
	stopLocal        func()          // stops the in-process agent, when addr is "local"
	instance         string          // the agent's instance_id when the run connected
	session          *client.Session // the run's session there; nil when the agent has none

	mu  sync.Mutex
	now string // the instance that answered once the agent was seen to have restarted
}

// restartedTo records that the agent answered as instance now; it returns the restart
// message when now is not the instance the run connected to, else "".
func (rm *remote) restartedTo(now string) string {
	if now == "" || now == rm.instance {
		return ""
	}
	rm.mu.Lock()
	rm.now = now
	rm.mu.Unlock()
	return fmt.Sprintf("agent %s restarted (instance %s when the run connected, now %s): the sockets the run opened there are gone", rm.name, rm.instance, now)
}

// current returns the instance the agent was last seen to have restarted as, or "".
func (rm *remote) current() string {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.now
}

// alias is a socket a step named with `as`.
type alias struct {
	agent   string
	socket  *sockagentv1.Socket
	figures map[string]float64 // the results of a probe or throughput step, instead of a socket
}

// opened is a socket the run created, closed at the end unless a step closed it.
type opened struct {
	agent, id, alias string
}

// runner executes one scenario.
type runner struct {
	cfg     Config
	remotes map[string]*remote
	start   time.Time // of the run, for StepReport.StartMS

	mu       sync.Mutex
	aliases  map[string]alias
	missing  map[string]string // aliases whose step created nothing: why ("step 4 failed")
	open     []opened
	steps    []StepReport
	stopped  bool   // a step failed and --keep-going is off
	failedAt string // index of the first failed step

	timeouts map[time.Duration]*durationpb.Duration // request timeouts, shared by steps (guarded by mu)
	plans    map[*scenario.Step]*stepPlan           // made before the first step, read only then
}

// protoTimeout is d as a request's timeout (nil for 0), one message per duration for the whole run: gRPC only
// reads a request to send it, so steps (parallel ones too) can share it.
func (r *runner) protoTimeout(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pd, ok := r.timeouts[d]
	if !ok {
		if r.timeouts == nil {
			r.timeouts = map[time.Duration]*durationpb.Duration{}
		}
		pd = protoTimeout(d)
		r.timeouts[d] = pd
	}
	return pd
}

// Run runs a validated scenario and returns its report. ctx cancelled (Ctrl-C) stops the
// run; cleanup still happens, bounded, on a context of its own.
func Run(ctx context.Context, cfg Config) *Report {
	start := time.Now()
	if cfg.Getenv == nil {
		cfg.Getenv = func(string) string { return "" }
	}
	ctx, span := tracing.Start(ctx, "scenario "+cfg.File.Name, attribute.String("sockagent.scenario.file", cfg.File.Path))
	r := newRunner(cfg)
	r.start = start
	r.steps = make([]StepReport, 0, CountReports(cfg.File)) // one per step, in place
	rep := &Report{Name: cfg.File.Name, File: cfg.File.Path}
	defer r.closeRemotes()
	planned := make(chan struct{}) // steps are planned while the agents connect
	go func() {
		defer close(planned)
		r.plans = planSteps(cfg.File.Path, cfg.File.Steps)
	}()
	rep.Agents = r.connect(ctx)
	<-planned
	for _, a := range rep.Agents {
		if !a.Reachable {
			rep.Unreachable = append(rep.Unreachable, a.Name)
		}
	}
	if len(rep.Unreachable) == 0 {
		r.runSteps(ctx, cfg.File.Steps, "", nil)
	}
	rep.Cleanup = r.cleanup(context.WithoutCancel(ctx))
	rep.Steps = r.steps
	if ctx.Err() != nil {
		rep.Interrupted = true
	}
	rep.count()
	rep.DurationMS = ms(time.Since(start))
	tracing.End(span, !rep.OK(), fmt.Sprintf("%d of %d steps failed", rep.Failed, len(rep.Steps)))
	return rep
}

func newRunner(cfg Config) *runner {
	return &runner{cfg: cfg, remotes: map[string]*remote{}, aliases: map[string]alias{}}
}

// connect starts in-process agents, dials the others, and checks that every agent answers.
func (r *runner) connect(ctx context.Context) []AgentReport {
	out := make([]AgentReport, len(r.cfg.File.Agents))
	var wg sync.WaitGroup
	for i, fa := range r.cfg.File.Agents {
		t, ok := r.cfg.Agents[fa.Name]
		if !ok {
			t = Target{Addr: fa.Address}
		}
		rm := &remote{name: fa.Name, addr: t.Addr, host: hostOf(t.Addr), dial: t.Dial}
		r.remotes[fa.Name] = rm
		out[i] = AgentReport{Name: fa.Name, Address: t.Addr}
		wg.Go(func() {
			err := rm.start(ctx, r.cfg.StartLocal, r.cfg.SessionTTL, "sockctl run "+r.cfg.File.Name)
			out[i].Reachable = err == nil
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Address = rm.addr
		})
	}
	wg.Wait()
	return out
}

// hostOf is the host an address names, as `${AGENT.host}` gives it: "127.0.0.1" for local
// and unix: agents.
func hostOf(addr string) string {
	if addr == localAddr || strings.HasPrefix(addr, "unix:") {
		return "127.0.0.1"
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// start connects to the agent (started in-process first with startLocal, when its address
// is "local"), waits for it to answer, and opens the run's session there.
func (rm *remote) start(ctx context.Context, startLocal func(context.Context) (string, func(), error), sessionTTL time.Duration, sessionName string) error {
	target := rm.addr
	if rm.addr == localAddr {
		if startLocal == nil {
			return errors.New("this runner cannot start in-process agents")
		}
		addr, stop, err := startLocal(ctx)
		if err != nil {
			return err
		}
		rm.stopLocal, target = stop, addr
		rm.addr = "local (" + target + ")"
		rm.dial = client.Options{}
	}
	conn, err := client.Dial(target, rm.dial)
	if err != nil {
		return err
	}
	rm.conn = conn
	c := client.NewClients(conn)
	rm.sockets, rm.info, rm.measure = c.Sockets, c.Agent, c.Measure
	info, err := client.WaitReady(ctx, rm.info, rm.dial)
	if err != nil {
		return err
	}
	rm.instance = info.GetInstanceId()
	// From now on every call expects this instance: after a restart, an id the run holds
	// answers UNKNOWN_SOCKET rather than reach another client's socket of the new instance.
	c = client.NewClients(client.ExpectInstance(conn, rm.instance))
	rm.sockets, rm.info, rm.measure = c.Sockets, c.Agent, c.Measure
	if sessionTTL > 0 {
		if rm.session, err = client.OpenSession(ctx, c.Sessions, sessionTTL, sessionName); err != nil {
			return err
		}
	}
	return nil
}

// closeSessions closes the run's sessions on all agents at once (cleanup closed those of the
// agents it had sockets on already).
func (r *runner) closeSessions(ctx context.Context) {
	var wg sync.WaitGroup
	for _, rm := range r.remotes {
		wg.Go(func() { rm.session.Close(ctx) })
	}
	wg.Wait()
}

// closeRemotes closes the sessions and connections of the run, and stops its in-process
// agents.
func (r *runner) closeRemotes() {
	r.closeSessions(context.Background())
	for _, rm := range r.remotes {
		if rm.conn != nil {
			rm.conn.Close()
		}
		if rm.stopLocal != nil {
			rm.stopLocal()
		}
	}
}

// frame is where a step runs: its index prefix and the repeat indexes around it.
type frame struct {
	prefix string
	iters  []int
	clock  *stepClock // bounds the steps of the goroutine running this one
}

// runSteps runs steps in order; after a failure (without --keep-going) the rest are skipped.
func (r *runner) runSteps(ctx context.Context, steps []*scenario.Step, prefix string, iters []int) {
	c := newStepClock(ctx)
	defer c.close()
	r.runIn(ctx, steps, frame{prefix: prefix, iters: iters, clock: c})
}

// runIn runs steps in order in the goroutine (and with the clock) of f, their numbers
// prefixed by f.prefix.
func (r *runner) runIn(ctx context.Context, steps []*scenario.Step, f frame) {
	for i, st := range steps {
		r.runStep(ctx, st, frame{prefix: f.prefix + strconv.Itoa(i+1), iters: f.iters, clock: f.clock})
	}
}

func (r *runner) isStopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped
}

func (r *runner) runStep(ctx context.Context, st *scenario.Step, f frame) {
	switch {
	case st.Parallel != nil:
		r.runParallel(ctx, st, f)
	case st.Repeat != nil:
		for i := range st.Repeat.Count {
			iters := append(append([]int(nil), f.iters...), i)
			r.runIn(ctx, st.Repeat.Steps, frame{prefix: fmt.Sprintf("%s[%d].", f.prefix, i), iters: iters, clock: f.clock})
		}
	case st.OnAll != nil:
		r.runFanout(ctx, st, f)
	default:
		r.runAction(ctx, st, r.plan(st), f, true)
	}
}

// runAction runs an action step on its agent and records its report; a step is skipped
// when the run was interrupted, or (with stoppable) when an earlier step failed.
func (r *runner) runAction(ctx context.Context, st *scenario.Step, pl *stepPlan, f frame, stoppable bool) {
	rep := StepReport{Index: f.prefix, Name: pl.label, Agent: st.On, Action: st.Action, Line: st.Pos.Line, named: st.Name != ""}
	switch {
	case stoppable && r.isStopped():
		rep.Status, rep.Message = StatusSkipped, "not run: an earlier step failed"
	case ctx.Err() != nil:
		rep.Status, rep.Message = StatusSkipped, "not run: "+cause(ctx)
	default:
		sctx, span := tracing.Start(ctx, "step "+f.prefix+" "+st.Action, attribute.String("sockagent.agent", st.On),
			attribute.Int("sockagent.scenario.line", st.Pos.Line))
		r.execute(sctx, st, pl, f, &rep)
		tracing.End(span, rep.Status == StatusFailed, rep.Message)
		if rep.Status == StatusFailed { // (sf goes to the heap: only for failed steps)
			var sf *siblingFailed
			if errors.As(context.Cause(ctx), &sf) {
				rep.Status, rep.Reason, rep.Message = StatusSkipped, "", "cancelled: "+sf.Error()
			}
		}
	}
	r.noteMissing(st, f, rep)
	r.record(rep)
}

// noteMissing remembers an alias its step did not create (the step failed, was skipped, or
// expected an error), so that a later step naming it fails as a scenario error saying so,
// instead of sending the alias itself as a socket id.
func (r *runner) noteMissing(st *scenario.Step, f frame, rep StepReport) {
	if st.As == "" || rep.Alias != "" {
		return
	}
	name, err := scenario.Expand(st.As, r.lookup(f))
	if err != nil {
		return
	}
	why := "step " + rep.Index + " " + rep.Status
	if rep.Status == StatusPassed {
		why = "step " + rep.Index + " expected an error"
	}
	r.mu.Lock()
	if r.missing == nil {
		r.missing = map[string]string{}
	}
	r.missing[name] = why
	r.mu.Unlock()
}

// siblingFailed cancels the rest of a parallel block when one of its steps failed.
type siblingFailed struct{ index string }

func (s *siblingFailed) Error() string {
	return "step " + s.index + " of the same parallel block failed"
}

// cause says why ctx ended: interrupted, or a sibling in a parallel block failed.
func cause(ctx context.Context) string {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c.Error()
	}
	return "interrupted"
}

// runParallel runs a block's steps concurrently and waits for all. Without --keep-going the
// first failure cancels the siblings still running.
func (r *runner) runParallel(ctx context.Context, st *scenario.Step, f frame) {
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for i, child := range st.Parallel {
		cf := frame{prefix: f.prefix + "." + strconv.Itoa(i+1), iters: f.iters}
		wg.Go(func() {
			cf.clock = newStepClock(bctx)
			defer cf.clock.close()
			r.runStep(bctx, child, cf)
			r.mu.Lock()
			stopped, at := r.stopped, r.failedAt
			r.mu.Unlock()
			if stopped {
				cancel(&siblingFailed{index: at})
			}
		})
	}
	wg.Wait()
}

// started tells Config.OnStart that a step's call begins.
func (r *runner) started(rep *StepReport) {
	if r.cfg.OnStart == nil {
		return
	}
	r.mu.Lock()
	r.cfg.OnStart(*rep)
	r.mu.Unlock()
}

// addresses records the addresses of the socket a step created or acted on (its `socket`
// alias), else the address it was sent to (dial, sendto, probe, throughput: the arguments
// other than listen's and bind's, which are local).
func (r *runner) addresses(rep *StepReport, created *sockagentv1.Socket, args scenario.Resolved) {
	s := created
	if s == nil && args.Has("socket") {
		r.mu.Lock()
		s = r.aliases[args.String("socket")].socket
		r.mu.Unlock()
	}
	rep.LocalAddress, rep.RemoteAddress = s.GetLocalAddress(), s.GetRemoteAddress()
	if rep.RemoteAddress == "" && rep.Action != "listen" && rep.Action != "bind" {
		rep.RemoteAddress = args.String("address")
	}
}

func (r *runner) record(rep StepReport) {
	r.mu.Lock()
	r.steps = append(r.steps, rep)
	if rep.Status == StatusFailed && !r.cfg.KeepGoing && !r.stopped {
		r.stopped, r.failedAt = true, rep.Index
	}
	if r.cfg.OnStep != nil { // under the lock: steps of a parallel block end concurrently
		r.cfg.OnStep(rep)
	}
	r.mu.Unlock()
}

// lookup resolves ${...} references for a step in frame f.
func (r *runner) lookup(f frame) scenario.Lookup {
	return func(ref string) (string, error) {
		if ref == "i" {
			if len(f.iters) == 0 {
				return "", errors.New("${i} is only defined inside a repeat")
			}
			return strconv.Itoa(f.iters[len(f.iters)-1]), nil
		}
		name, field, ok := strings.Cut(ref, ".")
		if !ok {
			return "", fmt.Errorf("${%s}: write ${ALIAS.field}, ${AGENT.host}, ${vars.NAME} or ${env.NAME}", ref)
		}
		switch name {
		case "vars":
			v, ok := r.cfg.File.Vars[field]
			if !ok {
				return "", fmt.Errorf("${%s}: no var %q", ref, field)
			}
			return v, nil
		case "env":
			v := r.cfg.Getenv(field)
			if v == "" {
				return "", fmt.Errorf("${%s}: environment variable %s is not set", ref, field)
			}
			return v, nil
		}
		if rm, ok := r.remotes[name]; ok {
			switch field {
			case "host":
				return rm.host, nil
			case "address":
				return rm.addr, nil
			}
			return "", fmt.Errorf("${%s}: an agent has host and address", ref)
		}
		r.mu.Lock()
		al, ok := r.aliases[name]
		r.mu.Unlock()
		if !ok {
			return "", fmt.Errorf("${%s}: no socket is named %q (yet)", ref, name)
		}
		if al.figures != nil {
			return figureField(al.figures, field, ref)
		}
		return aliasField(al.socket, field, ref)
	}
}

func aliasField(s *sockagentv1.Socket, field, ref string) (string, error) {
	port := func(addr string) (string, error) {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("${%s}: %q has no port", ref, addr)
		}
		return p, nil
	}
	switch field {
	case "socket_id":
		return s.GetSocketId(), nil
	case "local_address":
		return s.GetLocalAddress(), nil
	case "remote_address":
		return s.GetRemoteAddress(), nil
	case "local_port":
		return port(s.GetLocalAddress())
	case "remote_port":
		return port(s.GetRemoteAddress())
	case "network":
		return s.GetNetwork(), nil
	}
	return "", fmt.Errorf("${%s}: a socket has socket_id, local_address, local_port, remote_address, remote_port and network", ref)
}

// socketRef finds the socket a step's `socket` names: an alias (which must live on the step's
// agent) or a literal socket id.
func (r *runner) socketRef(on, ref string) (string, error) {
	r.mu.Lock()
	al, ok := r.aliases[ref]
	why, missing := r.missing[ref]
	r.mu.Unlock()
	if !ok && missing {
		return "", fmt.Errorf("alias %s was not created: %s", ref, why)
	}
	if !ok {
		return ref, nil
	}
	if al.socket == nil {
		return "", fmt.Errorf("socket %s: %s names the results of a step, not a socket", ref, ref)
	}
	if al.agent != on {
		return "", fmt.Errorf("socket %s lives on agent %s, not on %s", ref, al.agent, on)
	}
	return al.socket.GetSocketId(), nil
}

// execute runs one action step and fills rep.
func (r *runner) execute(ctx context.Context, st *scenario.Step, pl *stepPlan, f frame, rep *StepReport) {
	path := r.cfg.File.Path
	fail := func(reason string, err error) {
		rep.Status, rep.Reason, rep.Message = StatusFailed, reason, err.Error()
	}
	var args scenario.Resolved
	var err error
	if pl.argsSet {
		args, rep.Detail = pl.args, pl.detail
	} else {
		if args, err = scenario.Resolve(path, st.Args, r.lookup(f)); err != nil {
			fail(contract.ReasonScenarioError, err)
			return
		}
		rep.Detail = describe(st.Action, args)
	}
	var expect *scenario.Resolved
	if pl.expectSet {
		expect = &pl.expect
	} else if !pl.expectStatic {
		e, err := scenario.Resolve(path, st.Expect, r.lookup(f))
		if err != nil {
			rep.Detail = "" // as when args are resolved first: the step did not get that far
			fail(contract.ReasonScenarioError, err)
			return
		}
		expect = &e
	}
	start := time.Now()
	rep.StartMS = ms(start.Sub(r.start))
	r.started(rep)
	out, created, err := r.act(ctx, f.clock, st, pl, args)
	elapsed := time.Since(start)
	rep.DurationMS = ms(elapsed)
	r.addresses(rep, created, args)
	if created != nil {
		name := ""
		if st.As != "" {
			if name, err = scenario.Expand(st.As, r.lookup(f)); err != nil {
				fail(contract.ReasonScenarioError, err)
				return
			}
		}
		r.mu.Lock()
		r.open = append(r.open, opened{agent: st.On, id: created.GetSocketId(), alias: name})
		if name != "" {
			r.aliases[name] = alias{agent: st.On, socket: created}
		}
		r.mu.Unlock()
		rep.Socket = created.GetSocketId()
		rep.Alias = name
	}
	if created == nil && out.Figures != nil && st.As != "" {
		if rep.Alias, err = r.results(st, r.lookup(f), out.Figures); err != nil {
			fail(contract.ReasonScenarioError, err)
			return
		}
	}
	if err != nil { // (se goes to the heap: only for failed steps)
		var se *scenarioError
		if errors.As(err, &se) {
			fail(contract.ReasonScenarioError, err)
			return
		}
	}
	out.Duration = elapsed
	rep.Figures = reportFigures(out.Figures)
	rep.Mismatches = matrixCells(out.Mismatches)
	if err != nil {
		out.Reason, out.Err = client.Reason(err)
		if m := r.restarted(ctx, st.On, err); m != "" {
			out.Err = m + "; " + out.Err
		}
	}
	rep.Reason = out.Reason
	if msgs := scenario.Check(expect, out); len(msgs) > 0 {
		rep.Status, rep.Message = StatusFailed, strings.Join(msgs, "; ")
		if out.Figures != nil {
			rep.Message += " (measured: " + out.Text + ")"
		}
		if rep.Reason == "" {
			rep.Reason = contract.ReasonExpectationFailed
		}
		return
	}
	rep.Status = StatusPassed
	if err != nil {
		rep.Message = "failed as expected: " + out.Err
	} else {
		rep.Message = actions[st.Action].summary(out, created)
	}
}

// restarted says "agent NAME restarted ..." when err (UNKNOWN_SOCKET or UNKNOWN_SESSION)
// comes from another agent instance than the one the run connected to; else "".
func (r *runner) restarted(ctx context.Context, name string, err error) string {
	rm := r.remotes[name]
	info := client.ErrorInfo(status.Convert(err))
	if rm == nil || rm.instance == "" || info == nil {
		return ""
	}
	now := ""
	switch info.GetReason() {
	case contract.ReasonUnknownSocket:
		now = info.GetMetadata()["instance_id"]
	case contract.ReasonUnknownSession:
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), client.ConnectTimeout)
		defer cancel()
		gi, err := rm.info.GetInfo(cctx, &sockagentv1.GetInfoRequest{})
		if err != nil {
			return ""
		}
		now = gi.GetInstanceId()
	}
	return rm.restartedTo(now)
}

// scenarioError is a problem of the scenario found at run time (not the network's).
type scenarioError struct{ err error }

func (e *scenarioError) Error() string { return e.err.Error() }
func (e *scenarioError) Unwrap() error { return e.err }

// deadlines returns the request timeout and the RPC deadline of a blocking step.
func (r *runner) deadlines(args scenario.Resolved) (time.Duration, time.Duration, error) {
	d, err := args.Duration("timeout")
	if err != nil {
		return 0, 0, &scenarioError{err}
	}
	if d == 0 {
		d = r.cfg.StepTimeout
	}
	return d, d + client.CallMargin, nil
}

// forget drops a closed socket from the cleanup list and its alias.
func (r *runner) forget(agentName, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, o := range r.open {
		if o.agent == agentName && o.id == id {
			r.open = append(r.open[:i], r.open[i+1:]...)
			break
		}
	}
}

// cleanup closes every socket the run opened and did not close, newest first, then the run's
// session (and whatever is left in it), on all agents at once, each agent within
// cleanupTimeout.
func (r *runner) cleanup(ctx context.Context) []CleanupReport {
	r.mu.Lock()
	byAgent := map[string][]opened{}
	var order []string
	for i := len(r.open) - 1; i >= 0; i-- {
		o := r.open[i]
		if _, ok := byAgent[o.agent]; !ok {
			order = append(order, o.agent)
		}
		byAgent[o.agent] = append(byAgent[o.agent], o)
	}
	r.open = nil
	r.mu.Unlock()
	results := make([][]CleanupReport, len(order))
	var wg sync.WaitGroup
	for i, name := range order {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
			defer cancel()
			rm := r.remotes[name]
			for _, o := range byAgent[name] {
				results[i] = append(results[i], r.closeOpened(cctx, rm, o))
			}
			rm.session.Close(cctx)
		})
	}
	for name, rm := range r.remotes {
		if _, ok := byAgent[name]; !ok {
			wg.Go(func() { rm.session.Close(ctx) })
		}
	}
	wg.Wait()
	var out []CleanupReport
	for _, rs := range results {
		out = append(out, rs...)
	}
	return out
}

// closeOpened closes one socket the run opened, for cleanup. A socket of an instance the
// agent no longer is (it restarted) is gone: not asked for, so that nothing of the new
// instance's can be closed in its place.
func (r *runner) closeOpened(ctx context.Context, rm *remote, o opened) CleanupReport {
	c := CleanupReport{Agent: rm.name, Socket: o.id, Alias: o.alias, Status: "closed"}
	now := rm.current()
	inst, _, shaped := contract.ParseSocketID(o.id)
	switch {
	case now != "" && shaped && inst != contract.ShortInstance(now):
		c.Status, c.Error = "gone", fmt.Sprintf("not closed: agent %s restarted (instance %s when the run connected, now %s) and the socket went with the old instance", rm.name, rm.instance, now)
		return c
	case now != "" && shaped:
		ctx = metadata.AppendToOutgoingContext(ctx, contract.InstanceHeader, now) // opened after the restart
	}
	_, err := rm.sockets.Close(ctx, &sockagentv1.CloseRequest{SocketId: o.id})
	switch {
	case err == nil:
	case status.Code(err) == codes.NotFound:
		c.Status = "gone"
		if m := r.restarted(ctx, rm.name, err); m != "" {
			c.Error = m
		}
	case status.Code(err) == codes.DeadlineExceeded && client.ErrorInfo(status.Convert(err)) == nil:
		c.Status, c.Error = "failed", fmt.Sprintf("no answer from the agent within the %s cleanup bound", cleanupTimeout)
	default:
		c.Status = "failed"
		_, c.Error = client.Reason(err)
	}
	return c
}
