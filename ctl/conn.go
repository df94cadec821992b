package ctl

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/sockagent/sockagent/ctl/client"
)

// envTokenFile names the environment variable that sets --token-file when it is not given.
// There is deliberately no variable holding the token itself: environments leak into child
// processes, crash reports and CI logs.
const envTokenFile = "SOCKCTL_TOKEN_FILE"

// dialAgent is client.Dial with its errors classified for Main: a *usageError (exit 2) for an
// address or a combination of settings that cannot work, a *failure (exit 1) for a file that
// cannot be read or parsed.
func dialAgent(target string, o client.Options) (*grpc.ClientConn, error) {
	cc, err := client.Dial(target, o)
	switch {
	case err == nil:
		return cc, nil
	case client.IsConfigError(err):
		return nil, &usageError{err: err}
	}
	return nil, failed(err)
}

// call connects to the agent, runs fn under the RPC deadline and turns an error into a
// failure that says what was being done (op) and why.
func (a *app) call(ctx context.Context, op string, wait time.Duration, fn func(ctx context.Context, c client.Clients) error) error {
	return a.withAgent(ctx, func(ag *agentConn) error {
		return ag.unary(ctx, op, wait, func(ctx context.Context) error { return fn(ctx, ag.c) })
	})
}

// agentConn is one connection to the agent for a command that makes several calls.
type agentConn struct {
	a      *app
	target string
	dial   client.Options
	cc     *grpc.ClientConn
	c      client.Clients
}

// withAgent connects to the agent for fn; fn's errors are already classified.
func (a *app) withAgent(ctx context.Context, fn func(*agentConn) error) error {
	target, dial := a.agentAddr(), a.dialOptions()
	cc, err := dialAgent(target, dial)
	if err != nil {
		return err
	}
	defer cc.Close()
	return fn(&agentConn{a: a, target: target, dial: dial, cc: cc, c: client.NewClients(cc)})
}

// fail classifies the error of a call, with what sockctl knows of the connection.
func (ag *agentConn) fail(op string, deadline time.Duration, err error) error {
	if _, ok := status.FromError(err); !ok { // not the RPC: printing its result failed
		return failed(fmt.Errorf("%s: %w", op, err))
	}
	return failed(&client.RPCError{Op: op, Agent: ag.target, Dial: ag.dial, Deadline: deadline, State: ag.cc.GetState(), Err: err})
}

// unary runs one call under the RPC deadline (--timeout, raised for wait) and classifies its
// error.
func (ag *agentConn) unary(ctx context.Context, op string, wait time.Duration, fn func(ctx context.Context) error) error {
	deadline := client.RPCDeadline(ag.a.timeout, wait)
	if deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, deadline)
		defer cancel()
	}
	if err := fn(ctx); err != nil {
		return ag.fail(op, deadline, err)
	}
	return nil
}
