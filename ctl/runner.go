package ctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Reasons the runner gives to failures that are not the target's: the agent itself could not
// be reached, or the step ran out of time on the client side.
const (
	reasonAgentUnavailable = "AGENT_UNAVAILABLE"
	reasonStepTimeout      = "STEP_TIMEOUT"
	reasonScenario         = "SCENARIO_ERROR"
	reasonExpectation      = "EXPECTATION_FAILED"
)

// Step statuses in reports.
const (
	statusPassed  = "passed"
	statusFailed  = "failed"
	statusSkipped = "skipped"
)

const (
	// rpcMargin is added to a blocking call's own timeout for the RPC deadline, so that the
	// agent's TIMEOUT, not the client's deadline, ends the call.
	rpcMargin = 2 * time.Second
	// cleanupTimeout bounds closing the sockets of one agent at the end of a run.
	cleanupTimeout = 5 * time.Second
	// connectTimeout bounds the check that every agent answers before the first step.
	connectTimeout = 5 * time.Second
)

// runConfig is what `sockctl run` was asked to do.
type runConfig struct {
	file        *scenario.File
	agents      map[string]agentTarget // agent name -> address and credentials
	stepTimeout time.Duration
	keepGoing   bool
	sessionTTL  time.Duration // lease of the run's session on each agent; 0 = no session
	getenv      func(string) string
	onStep      func(StepReport) // called as each step ends (live table output); may be nil
}

// agentTarget is where one agent of a run is and how to connect to it.
type agentTarget struct {
	addr string      // HOST:PORT, unix:PATH, or "local" for an in-process agent
	dial dialOptions // ignored for "local" (in-process agents serve plaintext on loopback)
}

// remote is one agent of a run and the connection to it.
type remote struct {
	name, addr, host string
	dial             dialOptions
	conn             *grpc.ClientConn
	sockets          sockagentv1.SocketServiceClient
	info             sockagentv1.AgentServiceClient
	local            *agent.Agent // in-process agent, when addr is "local"
	served           chan struct{}
	instance         string      // the agent's instance_id when the run connected
	session          *runSession // the run's session there; nil when the agent has none
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
	cfg     runConfig
	remotes map[string]*remote

	mu       sync.Mutex
	aliases  map[string]alias
	open     []opened
	steps    []StepReport
	stopped  bool   // a step failed and --keep-going is off
	failedAt string // index of the first failed step

	timeouts map[time.Duration]*durationpb.Duration // request timeouts, shared by steps (guarded by mu)
	plans    map[*scenario.Step]*stepPlan           // made before the first step, read only then
}

// protoTimeout is protoTimeout(d), one message per duration for the whole run: gRPC only
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

// runScenario runs a validated scenario and returns its report. ctx cancelled (Ctrl-C) stops
// the run; cleanup still happens, bounded, on a context of its own.
func runScenario(ctx context.Context, cfg runConfig) *Report {
	start := time.Now()
	r := &runner{cfg: cfg, remotes: map[string]*remote{}, aliases: map[string]alias{}}
	r.steps = make([]StepReport, 0, countSteps(cfg.file.Steps)) // one per step, in place
	rep := &Report{Name: cfg.file.Name, File: cfg.file.Path}
	defer r.closeRemotes()
	planned := make(chan struct{}) // steps are planned while the agents connect
	go func() {
		defer close(planned)
		r.plans = planSteps(cfg.file.Path, cfg.file.Steps)
	}()
	rep.Agents = r.connect(ctx)
	<-planned
	for _, a := range rep.Agents {
		if !a.Reachable {
			rep.Unreachable = append(rep.Unreachable, a.Name)
		}
	}
	if len(rep.Unreachable) == 0 {
		r.runSteps(ctx, cfg.file.Steps, "", nil)
	}
	rep.Cleanup = r.cleanup(context.WithoutCancel(ctx))
	rep.Steps = r.steps
	if ctx.Err() != nil {
		rep.Interrupted = true
	}
	rep.count()
	rep.DurationMS = ms(time.Since(start))
	return rep
}

// connect starts in-process agents, dials the others, and checks that every agent answers.
func (r *runner) connect(ctx context.Context) []AgentReport {
	out := make([]AgentReport, len(r.cfg.file.Agents))
	var wg sync.WaitGroup
	for i, fa := range r.cfg.file.Agents {
		t := r.cfg.agents[fa.Name]
		addr := t.addr
		rm := &remote{name: fa.Name, addr: addr, host: hostOf(addr), dial: t.dial}
		r.remotes[fa.Name] = rm
		out[i] = AgentReport{Name: fa.Name, Address: addr}
		wg.Go(func() {
			err := rm.start(ctx, r.cfg.sessionTTL, "sockctl run "+r.cfg.file.Name)
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
	if addr == "local" || strings.HasPrefix(addr, "unix:") {
		return "127.0.0.1"
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func (rm *remote) start(ctx context.Context, sessionTTL time.Duration, sessionName string) error {
	target := rm.addr
	if rm.addr == "local" {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("start in-process agent: %w", err)
		}
		a, err := agent.New(agent.Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			lis.Close()
			return fmt.Errorf("start in-process agent: %w", err)
		}
		rm.local, rm.served = a, make(chan struct{})
		go func() {
			defer close(rm.served)
			_ = a.Serve(lis)
		}()
		target = lis.Addr().String()
		rm.addr = "local (" + target + ")"
		rm.dial = dialOptions{}
	}
	conn, err := dialAgent(target, rm.dial)
	if err != nil {
		return err
	}
	rm.conn = conn
	rm.sockets = sockagentv1.NewSocketServiceClient(conn)
	rm.info = sockagentv1.NewAgentServiceClient(conn)
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	info, err := rm.info.GetInfo(cctx, &sockagentv1.GetInfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		msg := status.Convert(err).Message()
		if status.Code(err) == codes.DeadlineExceeded {
			// Waiting for a connection, gRPC keeps the last reason it failed (a TLS
			// handshake, say) in the message: "... latest balancer error: REASON".
			if _, last, ok := strings.Cut(msg, "latest balancer error: "); ok {
				return fmt.Errorf("no answer within %s: %s%s", connectTimeout, last, transportHint(last, rm.dial))
			}
			return fmt.Errorf("no answer within %s", connectTimeout)
		}
		return errors.New(msg + transportHint(msg, rm.dial) + authHint(status.Convert(err), rm.dial))
	}
	rm.instance = info.GetInstanceId()
	if sessionTTL > 0 {
		if rm.session, err = openSession(ctx, sockagentv1.NewSessionServiceClient(conn), sessionTTL, sessionName); err != nil {
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
		wg.Go(func() { rm.session.close(ctx) })
	}
	wg.Wait()
}

func (r *runner) closeRemotes() {
	r.closeSessions(context.Background())
	for _, rm := range r.remotes {
		if rm.conn != nil {
			rm.conn.Close()
		}
		if rm.local != nil {
			_ = rm.local.Close()
			<-rm.served
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
	default:
		pl := r.plan(st)
		rep := StepReport{Index: f.prefix, Name: pl.label, Agent: st.On, Action: st.Action, Line: st.Pos.Line, named: st.Name != ""}
		switch {
		case r.isStopped():
			rep.Status, rep.Message = statusSkipped, "not run: an earlier step failed"
		case ctx.Err() != nil:
			rep.Status, rep.Message = statusSkipped, "not run: "+cause(ctx)
		default:
			r.execute(ctx, st, pl, f, &rep)
			if rep.Status == statusFailed { // (sf goes to the heap: only for failed steps)
				var sf *siblingFailed
				if errors.As(context.Cause(ctx), &sf) {
					rep.Status, rep.Reason, rep.Message = statusSkipped, "", "cancelled: "+sf.Error()
				}
			}
		}
		r.record(rep)
	}
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

func (r *runner) record(rep StepReport) {
	r.mu.Lock()
	r.steps = append(r.steps, rep)
	if rep.Status == statusFailed && !r.cfg.keepGoing && !r.stopped {
		r.stopped, r.failedAt = true, rep.Index
	}
	if r.cfg.onStep != nil { // under the lock: steps of a parallel block end concurrently
		r.cfg.onStep(rep)
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
			v, ok := r.cfg.file.Vars[field]
			if !ok {
				return "", fmt.Errorf("${%s}: no var %q", ref, field)
			}
			return v, nil
		case "env":
			v := r.cfg.getenv(field)
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
	r.mu.Unlock()
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
	path := r.cfg.file.Path
	fail := func(reason string, err error) {
		rep.Status, rep.Reason, rep.Message = statusFailed, reason, err.Error()
	}
	var args scenario.Resolved
	var err error
	if pl.argsSet {
		args, rep.Detail = pl.args, pl.detail
	} else {
		if args, err = scenario.Resolve(path, st.Args, r.lookup(f)); err != nil {
			fail(reasonScenario, err)
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
			fail(reasonScenario, err)
			return
		}
		expect = &e
	}
	start := time.Now()
	out, created, err := r.act(ctx, f.clock, st, pl, args)
	elapsed := time.Since(start)
	rep.DurationMS = ms(elapsed)
	if created != nil {
		name := ""
		if st.As != "" {
			if name, err = scenario.Expand(st.As, r.lookup(f)); err != nil {
				fail(reasonScenario, err)
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
			fail(reasonScenario, err)
			return
		}
	}
	if err != nil { // (se goes to the heap: only for failed steps)
		var se *scenarioError
		if errors.As(err, &se) {
			fail(reasonScenario, err)
			return
		}
	}
	out.Duration = elapsed
	rep.Figures = reportFigures(out.Figures)
	if err != nil {
		out.Reason, out.Err = failureReason(err)
		if m := r.restarted(ctx, st.On, err); m != "" {
			out.Err = m + "; " + out.Err
		}
	}
	rep.Reason = out.Reason
	if msgs := scenario.Check(expect, out); len(msgs) > 0 {
		rep.Status, rep.Message = statusFailed, strings.Join(msgs, "; ")
		if out.Figures != nil {
			rep.Message += " (measured: " + out.Text + ")"
		}
		if rep.Reason == "" {
			rep.Reason = reasonExpectation
		}
		return
	}
	rep.Status = statusPassed
	if err != nil {
		rep.Message = "failed as expected: " + out.Err
	} else {
		rep.Message = summary(st.Action, out, created)
	}
}

// restarted says "agent NAME restarted ..." when err (UNKNOWN_SOCKET or UNKNOWN_SESSION)
// comes from another agent instance than the one the run connected to; else "".
func (r *runner) restarted(ctx context.Context, name string, err error) string {
	rm := r.remotes[name]
	info := errorInfo(status.Convert(err))
	if rm == nil || rm.instance == "" || info == nil {
		return ""
	}
	now := ""
	switch info.GetReason() {
	case agent.ReasonUnknownSocket:
		now = info.GetMetadata()["instance_id"]
	case agent.ReasonUnknownSession:
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), connectTimeout)
		defer cancel()
		gi, err := rm.info.GetInfo(cctx, &sockagentv1.GetInfoRequest{})
		if err != nil {
			return ""
		}
		now = gi.GetInstanceId()
	}
	if now == "" || now == rm.instance {
		return ""
	}
	return fmt.Sprintf("agent %s restarted (instance %s when the run connected, now %s): the sockets the run opened there are gone", name, rm.instance, now)
}

// scenarioError is a problem of the scenario found at run time (not the network's).
type scenarioError struct{ err error }

func (e *scenarioError) Error() string { return e.err.Error() }
func (e *scenarioError) Unwrap() error { return e.err }

// failureReason turns an RPC error into a reason and message. Errors the agent explains
// carry its ErrorInfo reason; an agent that cannot be reached is AGENT_UNAVAILABLE and a
// step that outlived its deadline is STEP_TIMEOUT, so they never pass for a target's answer.
func failureReason(err error) (reason, msg string) {
	st := status.Convert(err)
	if info := errorInfo(st); info != nil {
		return info.GetReason(), st.Message()
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return reasonStepTimeout, "no answer from the agent within the step's deadline"
	case codes.Unavailable:
		return reasonAgentUnavailable, "agent unavailable: " + st.Message()
	case codes.Canceled:
		return "CANCELLED", "cancelled"
	}
	return st.Code().String(), st.Message()
}

// deadlines returns the request timeout and the RPC deadline of a blocking step.
func (r *runner) deadlines(args scenario.Resolved) (time.Duration, time.Duration, error) {
	d, err := args.Duration("timeout")
	if err != nil {
		return 0, 0, &scenarioError{err}
	}
	if d == 0 {
		d = r.cfg.stepTimeout
	}
	return d, d + rpcMargin, nil
}

// errStepDeadline is the cause a step's context ends with when the step outlives its deadline.
var errStepDeadline = errors.New("step deadline exceeded")

// stepClock bounds the RPCs of the steps one goroutine runs one after another, each by its
// step's deadline, as context.WithTimeout would, but as a cancellation the agent does not
// see. A deadline on the context makes grpc-go send it in a grpc-timeout header and the agent
// arm a timer of its own for the call: 2.5µs of every send or recv step (7%;
// BenchmarkStepDeadline). The agent enforces the request's own timeout already; the step's
// deadline only guards against an agent that never answers, so a client timer is enough, and
// one timer and one context serve all the steps of the goroutine until a deadline passes
// (a context and a timer per step cost 5 allocations and 1.2µs). act turns an error after
// errStepDeadline into DEADLINE_EXCEEDED.
type stepClock struct {
	parent context.Context
	timer  *time.Timer
	mu     sync.Mutex
	ctx    context.Context         // the steps' context, until a deadline cancels it
	cancel context.CancelCauseFunc // of ctx
	due    time.Time               // the running step's deadline; zero between steps
}

func newStepClock(parent context.Context) *stepClock {
	c := &stepClock{parent: parent}
	c.timer = time.AfterFunc(time.Hour, c.expire)
	c.timer.Stop()
	return c
}

// expire cancels the running step's context, unless the timer fired for a step that has
// ended since (its callback can run after stop, beside the next step's start).
func (c *stepClock) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.due.IsZero() && !time.Now().Before(c.due) {
		c.cancel(errStepDeadline)
	}
}

// start returns the context of a step that must end within d; stop ends the step.
func (c *stepClock) start(d time.Duration) context.Context {
	c.mu.Lock()
	if c.ctx == nil || c.ctx.Err() != nil {
		if c.cancel != nil {
			c.cancel(nil)
		}
		c.ctx, c.cancel = context.WithCancelCause(c.parent)
	}
	c.due = time.Now().Add(d)
	ctx := c.ctx
	c.mu.Unlock()
	c.timer.Reset(d)
	return ctx
}

func (c *stepClock) stop() {
	c.timer.Stop()
	c.mu.Lock()
	c.due = time.Time{}
	c.mu.Unlock()
}

// close releases the clock's context once its goroutine has run its steps.
func (c *stepClock) close() {
	c.timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		c.cancel(nil)
	}
}

// act makes the step's RPC. It returns the outcome for the expectations and the socket the
// step created, if any; a *scenarioError means the scenario itself is wrong.
func (r *runner) act(ctx context.Context, clock *stepClock, st *scenario.Step, pl *stepPlan, args scenario.Resolved) (out scenario.Outcome, _ *sockagentv1.Socket, err error) {
	rm := r.remotes[st.On]
	if st.Action == "sleep" {
		d, err := args.Duration("duration")
		if err != nil {
			return out, nil, &scenarioError{err}
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return out, nil, nil
		case <-ctx.Done():
			return out, nil, status.Error(codes.Canceled, cause(ctx))
		}
	}
	if isMeasure(st.Action) {
		out, err := r.measure(ctx, rm, st, args)
		return out, nil, err
	}
	timeout, deadline, err := r.deadlines(args)
	if err != nil {
		return out, nil, err
	}
	switch st.Action {
	case "listen", "bind", "shutdown", "close":
		deadline = r.cfg.stepTimeout
	}
	ctx = clock.start(deadline) // derived from the clock's parent, which is this ctx (runIn)
	defer clock.stop()
	sctx := ctx
	defer func() {
		if err != nil && context.Cause(sctx) == errStepDeadline {
			err = status.Error(codes.DeadlineExceeded, "step deadline exceeded")
		}
	}()
	id := ""
	if args.Has("socket") {
		if id, err = r.socketRef(st.On, args.String("socket")); err != nil {
			return out, nil, &scenarioError{err}
		}
	}
	data := pl.data
	if !pl.dataSet {
		if data, _, err = args.Data(); err != nil {
			return out, nil, &scenarioError{err}
		}
	}
	maxBytes, err := args.Uint("max_bytes")
	if err != nil {
		return out, nil, &scenarioError{err}
	}
	exact, err := args.Uint("exact_bytes")
	if err != nil {
		return out, nil, &scenarioError{err}
	}
	if maxBytes > 1<<31 || exact > 1<<31 {
		return out, nil, &scenarioError{errors.New("max_bytes and exact_bytes must be below 2^31")}
	}
	to := r.protoTimeout(timeout)
	sc := rm.sockets
	// The session header names the session a call opens its socket in. Calls on a socket by
	// its id go without it (the socket is in its session already): encoding and parsing it
	// on every send and recv cost a tenth of such a step.
	switch st.Action {
	case "send", "recv", "sendto", "recvfrom", "shutdown", "close":
	default:
		ctx = rm.session.with(ctx)
	}
	// Creation calls carry a request_id, so a retry after the agent was briefly unreachable
	// returns the socket a first attempt may have opened instead of a second one.
	var rid string
	switch st.Action {
	case "listen", "bind", "dial", "accept":
		rid = newRequestID()
	}
	switch st.Action {
	case "listen":
		resp, err := retry(ctx, func(ctx context.Context) (*sockagentv1.ListenResponse, error) {
			return sc.Listen(ctx, &sockagentv1.ListenRequest{Network: args.String("network"), Address: args.String("address"), RequestId: rid})
		})
		return out, resp.GetSocket(), err
	case "bind":
		resp, err := retry(ctx, func(ctx context.Context) (*sockagentv1.BindResponse, error) {
			return sc.Bind(ctx, &sockagentv1.BindRequest{Network: args.String("network"), Address: args.String("address"), RequestId: rid})
		})
		return out, resp.GetSocket(), err
	case "dial":
		resp, err := retry(ctx, func(ctx context.Context) (*sockagentv1.DialResponse, error) {
			return sc.Dial(ctx, &sockagentv1.DialRequest{Network: args.String("network"), Address: args.String("address"),
				LocalAddress: args.String("local_address"), Timeout: to, RequestId: rid})
		})
		return out, resp.GetSocket(), err
	case "accept":
		resp, err := retry(ctx, func(ctx context.Context) (*sockagentv1.AcceptResponse, error) {
			return sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: id, Timeout: to, RequestId: rid})
		})
		return out, resp.GetSocket(), err
	case "send":
		resp, err := sc.Send(ctx, &sockagentv1.SendRequest{SocketId: id, Data: data, Timeout: to})
		out.Bytes = resp.GetBytesSent()
		return out, nil, err
	case "sendto":
		resp, err := sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: id, Address: args.String("address"), Data: data, Timeout: to})
		out.Bytes = resp.GetBytesSent()
		return out, nil, err
	case "recv":
		resp, err := sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: id, MaxBytes: uint32(maxBytes), ExactBytes: uint32(exact), Timeout: to})
		out.Data, out.EOF, out.Bytes = resp.GetData(), resp.GetEof(), uint64(len(resp.GetData()))
		return out, nil, err
	case "recvfrom":
		resp, err := sc.RecvFrom(ctx, &sockagentv1.RecvFromRequest{SocketId: id, MaxBytes: uint32(maxBytes), Timeout: to})
		out.Data, out.From, out.Bytes = resp.GetData(), resp.GetAddress(), uint64(len(resp.GetData()))
		return out, nil, err
	case "shutdown":
		dir, ok := direction(args.String("direction"))
		if !ok {
			return out, nil, &scenarioError{fmt.Errorf("direction %q: use read, write or both", args.String("direction"))}
		}
		_, err := sc.Shutdown(ctx, &sockagentv1.ShutdownRequest{SocketId: id, Direction: dir})
		return out, nil, err
	case "close":
		_, err := sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id})
		if err == nil || status.Code(err) == codes.NotFound {
			r.forget(st.On, id)
		}
		return out, nil, err
	}
	return out, nil, &scenarioError{fmt.Errorf("unknown action %q", st.Action)}
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
				c := CleanupReport{Agent: name, Socket: o.id, Alias: o.alias, Status: "closed"}
				_, err := rm.sockets.Close(cctx, &sockagentv1.CloseRequest{SocketId: o.id})
				switch {
				case err == nil:
				case status.Code(err) == codes.NotFound:
					c.Status = "gone"
				case status.Code(err) == codes.DeadlineExceeded && errorInfo(status.Convert(err)) == nil:
					c.Status, c.Error = "failed", fmt.Sprintf("no answer from the agent within the %s cleanup bound", cleanupTimeout)
				default:
					c.Status = "failed"
					_, c.Error = failureReason(err)
				}
				results[i] = append(results[i], c)
			}
			rm.session.close(cctx)
		})
	}
	for name, rm := range r.remotes {
		if _, ok := byAgent[name]; !ok {
			wg.Go(func() { rm.session.close(ctx) })
		}
	}
	wg.Wait()
	var out []CleanupReport
	for _, rs := range results {
		out = append(out, rs...)
	}
	return out
}
