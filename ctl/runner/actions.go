package runner

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent/tracing"
	"github.com/sockagent/sockagent/ctl/client"
	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// bound says what bounds an action's call.
type bound int

const (
	// stepBound: the call does not block; --step-timeout bounds it.
	stepBound bound = iota
	// timeoutBound: the call blocks; the step's timeout (or --step-timeout) plus
	// client.CallMargin bounds it.
	timeoutBound
	// ownBound: the action bounds itself (sleep, the measurements).
	ownBound
)

// action is how the runner runs one action of package scenario, and how the report says what
// a passing step did. Every action of scenario.Actions has one (TestActionsEveryLayer).
type action struct {
	run   func(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error)
	bound bound
	// session says the call carries the run's session header: it opens a socket in the
	// session, or measures for it. Calls on a socket by its id go without (the socket is in
	// its session already): the header is encoded and parsed on every call that has it.
	session bool
	// summary says what a passing step did.
	summary func(o scenario.Outcome, created *sockagentv1.Socket) string
}

// actions are the runner's side of every action, by name.
var actions = map[string]action{
	"listen":   {run: runListen, bound: stepBound, session: true, summary: socketSummary},
	"bind":     {run: runBind, bound: stepBound, session: true, summary: socketSummary},
	"dial":     {run: runDial, bound: timeoutBound, session: true, summary: socketSummary},
	"accept":   {run: runAccept, bound: timeoutBound, session: true, summary: socketSummary},
	"send":     {run: runSend, bound: timeoutBound, summary: sentSummary},
	"recv":     {run: runRecv, bound: timeoutBound, summary: recvSummary},
	"sendto":   {run: runSendTo, bound: timeoutBound, summary: sentSummary},
	"recvfrom": {run: runRecvFrom, bound: timeoutBound, summary: recvSummary},
	"shutdown": {run: runShutdown, bound: stepBound, summary: noSummary},
	"close":    {run: runClose, bound: stepBound, summary: noSummary},
	"setopt":   {run: runSetopt, bound: stepBound, summary: noSummary},
	"toxics":   {run: runToxics, bound: stepBound, summary: textSummary},
	"sleep":    {run: runSleep, bound: ownBound, summary: noSummary},

	"serve":      {run: runServe, bound: ownBound, session: true, summary: textSummary},
	"probe":      {run: runProbe, bound: ownBound, session: true, summary: textSummary},
	"throughput": {run: runThroughput, bound: ownBound, session: true, summary: textSummary},
	// matrix makes its calls on the agents its sources and targets pick, each in the run's
	// session there.
	"matrix": {run: runMatrix, bound: ownBound, summary: matrixSummary},
}

// call is one run of an action step: what its action's run needs. It is passed by value:
// one is made for every step.
type call struct {
	r       *runner
	rm      *remote // nil for a step without an agent (sleep)
	st      *scenario.Step
	pl      *stepPlan
	args    scenario.Resolved
	timeout *durationpb.Duration // the request's timeout, for timeoutBound actions
}

// act makes the step's RPC. It returns the outcome for the expectations and the socket the
// step created, if any; a *scenarioError means the scenario itself is wrong.
func (r *runner) act(ctx context.Context, clock *stepClock, st *scenario.Step, pl *stepPlan, args scenario.Resolved) (out scenario.Outcome, _ *sockagentv1.Socket, err error) {
	a, ok := actions[st.Action]
	if !ok {
		return out, nil, &scenarioError{fmt.Errorf("unknown action %q", st.Action)}
	}
	c := call{r: r, rm: r.remotes[st.On], st: st, pl: pl, args: args}
	if a.bound == ownBound {
		if a.session {
			ctx = c.rm.session.With(ctx)
		}
		return a.run(ctx, c)
	}
	timeout, deadline, err := r.deadlines(args)
	if err != nil {
		return out, nil, err
	}
	if a.bound == stepBound {
		deadline = r.cfg.StepTimeout
	}
	// The step's context derives from the clock's parent, which is this ctx (runIn).
	sctx := clock.start(deadline)
	defer clock.stop()
	defer func() {
		if err != nil && context.Cause(sctx) == errStepDeadline {
			err = status.Error(codes.DeadlineExceeded, "step deadline exceeded")
		}
	}()
	ctx = tracing.Carry(sctx, ctx) // the step's span, for the RPC's
	if a.session {
		ctx = c.rm.session.With(ctx)
	}
	c.timeout = r.protoTimeout(timeout)
	return a.run(ctx, c)
}

// socket is the id of the socket the step's `socket` names.
func (c call) socket() (string, error) {
	id, err := c.r.socketRef(c.st.On, c.args.String("socket"))
	if err != nil {
		return "", &scenarioError{err}
	}
	return id, nil
}

// payload is the socket and the data of send and sendto; the data is planned once for the
// run when it can be.
func (c call) payload() (string, []byte, error) {
	id, err := c.socket()
	if err != nil {
		return "", nil, err
	}
	if c.pl.dataSet {
		return id, c.pl.data, nil
	}
	data, _, err := c.args.Data()
	if err != nil {
		return "", nil, &scenarioError{err}
	}
	return id, data, nil
}

// readSize is max_bytes or exact_bytes of recv and recvfrom.
func (c call) readSize(key string) (uint32, error) {
	n, err := c.args.Uint(key)
	if err != nil {
		return 0, &scenarioError{err}
	}
	if n > 1<<31 {
		return 0, &scenarioError{errors.New("max_bytes and exact_bytes must be below 2^31")}
	}
	return uint32(n), nil
}

// Creation calls carry a request_id, so a retry after the agent was briefly unreachable
// returns the socket a first attempt may have opened instead of a second one.

func runListen(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error) {
	opts, err := c.options()
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	srv, err := tlsServer(c.args)
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	rid := client.NewRequestID()
	resp, err := client.Retry(ctx, func(ctx context.Context) (*sockagentv1.ListenResponse, error) {
		return c.rm.sockets.Listen(ctx, &sockagentv1.ListenRequest{Network: c.args.String("network"), Address: c.args.String("address"), RequestId: rid, Options: opts, Tls: srv})
	})
	return scenario.Outcome{}, resp.GetSocket(), err
}

func runBind(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error) {
	opts, err := c.options()
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	req := &sockagentv1.BindRequest{Network: c.args.String("network"), Address: c.args.String("address"), RequestId: client.NewRequestID(), Options: opts}
	if groups := c.args.Indexed(scenario.MulticastGroupsPrefix); len(groups) > 0 || c.args.Has(scenario.MulticastInterface) {
		req.Multicast = &sockagentv1.MulticastOptions{Groups: groups, Interface: c.args.String(scenario.MulticastInterface)}
	}
	resp, err := client.Retry(ctx, func(ctx context.Context) (*sockagentv1.BindResponse, error) {
		return c.rm.sockets.Bind(ctx, req)
	})
	return scenario.Outcome{}, resp.GetSocket(), err
}

func runDial(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error) {
	opts, err := c.options()
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	cl, err := tlsClient(c.args)
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	rid := client.NewRequestID()
	resp, err := client.Retry(ctx, func(ctx context.Context) (*sockagentv1.DialResponse, error) {
		return c.rm.sockets.Dial(ctx, &sockagentv1.DialRequest{Network: c.args.String("network"), Address: c.args.String("address"),
			LocalAddress: c.args.String("local_address"), Timeout: c.timeout, RequestId: rid, Options: opts, Tls: cl})
	})
	return scenario.Outcome{}, resp.GetSocket(), err
}

func runAccept(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error) {
	id, err := c.socket()
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	rid := client.NewRequestID()
	resp, err := client.Retry(ctx, func(ctx context.Context) (*sockagentv1.AcceptResponse, error) {
		return c.rm.sockets.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: id, Timeout: c.timeout, RequestId: rid})
	})
	return scenario.Outcome{}, resp.GetSocket(), err
}

func runSend(ctx context.Context, c call) (out scenario.Outcome, _ *sockagentv1.Socket, err error) {
	id, data, err := c.payload()
	if err != nil {
		return out, nil, err
	}
	resp, err := c.rm.sockets.Send(ctx, &sockagentv1.SendRequest{SocketId: id, Data: data, Timeout: c.timeout})
	out.Bytes = resp.GetBytesSent()
	return out, nil, err
}

func runSendTo(ctx context.Context, c call) (out scenario.Outcome, _ *sockagentv1.Socket, err error) {
	id, data, err := c.payload()
	if err != nil {
		return out, nil, err
	}
	resp, err := c.rm.sockets.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: id, Address: c.args.String("address"), Data: data, Timeout: c.timeout})
	out.Bytes = resp.GetBytesSent()
	return out, nil, err
}

func runRecv(ctx context.Context, c call) (out scenario.Outcome, _ *sockagentv1.Socket, err error) {
	id, err := c.socket()
	if err != nil {
		return out, nil, err
	}
	maxBytes, err := c.readSize("max_bytes")
	if err != nil {
		return out, nil, err
	}
	exact, err := c.readSize("exact_bytes")
	if err != nil {
		return out, nil, err
	}
	resp, err := c.rm.sockets.Recv(ctx, &sockagentv1.RecvRequest{SocketId: id, MaxBytes: maxBytes, ExactBytes: exact, Timeout: c.timeout})
	out.Data, out.EOF, out.Bytes = resp.GetData(), resp.GetEof(), uint64(len(resp.GetData()))
	return out, nil, err
}

func runRecvFrom(ctx context.Context, c call) (out scenario.Outcome, _ *sockagentv1.Socket, err error) {
	id, err := c.socket()
	if err != nil {
		return out, nil, err
	}
	maxBytes, err := c.readSize("max_bytes")
	if err != nil {
		return out, nil, err
	}
	resp, err := c.rm.sockets.RecvFrom(ctx, &sockagentv1.RecvFromRequest{SocketId: id, MaxBytes: maxBytes, Timeout: c.timeout})
	out.Data, out.From, out.Bytes = resp.GetData(), resp.GetAddress(), uint64(len(resp.GetData()))
	return out, nil, err
}

func runShutdown(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error) {
	id, err := c.socket()
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	dir, ok := client.ShutdownDirection(c.args.String("direction"))
	if !ok {
		return scenario.Outcome{}, nil, &scenarioError{fmt.Errorf("direction %q: use read, write or both", c.args.String("direction"))}
	}
	_, err = c.rm.sockets.Shutdown(ctx, &sockagentv1.ShutdownRequest{SocketId: id, Direction: dir})
	return scenario.Outcome{}, nil, err
}

func runClose(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error) {
	id, err := c.socket()
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	_, err = c.rm.sockets.Close(ctx, &sockagentv1.CloseRequest{SocketId: id})
	if err == nil || status.Code(err) == codes.NotFound {
		c.r.forget(c.st.On, id)
	}
	return scenario.Outcome{}, nil, err
}

func runSleep(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error) {
	d, err := c.args.Duration("duration")
	if err != nil {
		return scenario.Outcome{}, nil, &scenarioError{err}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return scenario.Outcome{}, nil, nil
	case <-ctx.Done():
		return scenario.Outcome{}, nil, status.Error(codes.Canceled, cause(ctx))
	}
}

// socketSummary is what a step that created a socket did: "s1 127.0.0.1:4242 -> 127.0.0.1:80".
func socketSummary(_ scenario.Outcome, created *sockagentv1.Socket) string {
	if created.GetRemoteAddress() != "" {
		return created.GetSocketId() + " " + created.GetLocalAddress() + " -> " + created.GetRemoteAddress()
	}
	return created.GetSocketId() + " " + created.GetLocalAddress()
}

// sentSummary is what send and sendto did: "sent 13 bytes".
func sentSummary(o scenario.Outcome, _ *sockagentv1.Socket) string {
	return "sent " + strconv.FormatUint(o.Bytes, 10) + " bytes"
}

// recvSummary is what recv and recvfrom did: `got 13 bytes "Hello, World!" from ADDR, eof`,
// or "eof" for an end of stream without data.
func recvSummary(o scenario.Outcome, _ *sockagentv1.Socket) string {
	if o.EOF && len(o.Data) == 0 {
		return "eof"
	}
	b := make([]byte, 0, 96)
	b = strconv.AppendInt(append(b, "got "...), int64(len(o.Data)), 10)
	b = append(b, " bytes "...)
	if len(o.Data) <= 32 { // (string of at most 32 bytes: converted without allocating)
		b = strconv.AppendQuote(b, string(o.Data))
	} else {
		b = strconv.AppendQuote(b, string(o.Data[:32]))
		b = append(strconv.AppendInt(append(b, "...("...), int64(len(o.Data)), 10), " bytes)"...)
	}
	if o.From != "" {
		b = append(append(b, " from "...), o.From...)
	}
	if o.EOF {
		b = append(b, ", eof"...)
	}
	return string(b)
}

// textSummary is what a measurement said it did (serve, probe, throughput).
func textSummary(o scenario.Outcome, _ *sockagentv1.Socket) string { return o.Text }

// noSummary is for the actions that say nothing when they pass.
func noSummary(scenario.Outcome, *sockagentv1.Socket) string { return "" }

// options are the step's socket options (scenario.OptionsPrefix); none gives nil. A value
// that ${...} made wrong is the scenario's error.
func (c call) options() (*sockagentv1.SocketOptions, error) {
	opts, err := client.ParseOptions(c.args.Options())
	if err != nil {
		return nil, &scenarioError{err}
	}
	return opts, nil
}

func runSetopt(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error) {
	id, err := c.socket()
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	opts, err := c.options()
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	// The socket changed is not one the step created: the runner closes it once, at the end,
	// for the step that opened it.
	_, err = c.rm.sockets.SetOptions(ctx, &sockagentv1.SetOptionsRequest{SocketId: id, Options: opts,
		Join: c.args.Indexed(scenario.JoinPrefix), Leave: c.args.Indexed(scenario.LeavePrefix)})
	return scenario.Outcome{}, nil, err
}
