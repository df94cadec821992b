package ctl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// errorDomain is the google.rpc.ErrorInfo domain of the agent's errors.
const errorDomain = "sockagent.v1"

// deadlineMargin is added to a blocking call's own timeout (--wait, --connect-timeout) when
// that timeout would otherwise run into the RPC deadline (--timeout), so that the agent's
// TIMEOUT answer, not the client's deadline, ends the call.
const deadlineMargin = 5 * time.Second

// clients are the agent's services on one connection.
type clients struct {
	sockets sockagentv1.SocketServiceClient
	agent   sockagentv1.AgentServiceClient
	measure sockagentv1.MeasureServiceClient
}

// dialAgent opens a client connection to the agent at target, presenting the credentials
// of o. It is the one place that chooses transport and per-RPC credentials: TLS when o asks
// for it (o.usesTLS), else plaintext; a bearer token when o has a token file, refused over
// plaintext unless the target is on this host (loopback or unix:). grpc.NewClient does not
// connect; the first RPC does.
//
// Its errors are classified for Main: a *usageError (exit 2) for an address or a combination
// of settings that cannot work, a *failure (exit 1) for a file that cannot be read or parsed.
func dialAgent(target string, o dialOptions) (*grpc.ClientConn, error) {
	if err := o.check(); err != nil {
		return nil, &usageError{err: err}
	}
	var opts []grpc.DialOption
	if o.usesTLS() {
		cfg, err := o.tlsConfig()
		if err != nil {
			return nil, failed(err)
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if o.TokenFile != "" {
		local := isLocalTarget(target)
		if !o.usesTLS() && !local {
			return nil, usagef("token file %s: refusing to send a bearer token in clear text to %s; use TLS (--ca FILE or --tls), or an agent on this host (loopback or unix:)", o.TokenFile, target)
		}
		token, err := readToken(o.TokenFile)
		if err != nil {
			return nil, failed(err)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: token, local: local}))
	}
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, usagef("invalid agent address %q: %v", target, err)
	}
	return cc, nil
}

// rpcDeadline returns the deadline for one RPC: timeout (--timeout, 0 = none), raised to
// wait+deadlineMargin when the call has its own longer wait.
func rpcDeadline(timeout, wait time.Duration) time.Duration {
	if timeout <= 0 {
		return 0
	}
	if wait > 0 && wait+deadlineMargin > timeout {
		return wait + deadlineMargin
	}
	return timeout
}

// call connects to the agent, runs fn under the RPC deadline and turns an error into a
// failure that says what was being done (op) and why.
func (a *app) call(ctx context.Context, op string, wait time.Duration, fn func(ctx context.Context, c clients) error) error {
	target := a.agentAddr()
	dial := a.dialOptions()
	cc, err := dialAgent(target, dial)
	if err != nil {
		return err
	}
	defer cc.Close()
	deadline := rpcDeadline(a.timeout, wait)
	if deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, deadline)
		defer cancel()
	}
	err = fn(ctx, clients{
		sockets: sockagentv1.NewSocketServiceClient(cc),
		agent:   sockagentv1.NewAgentServiceClient(cc),
		measure: sockagentv1.NewMeasureServiceClient(cc),
	})
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); !ok { // not the RPC: printing its result failed
		return failed(fmt.Errorf("%s: %w", op, err))
	}
	return failed(&rpcError{op: op, agent: target, dial: dial, deadline: deadline, state: cc.GetState(), err: err})
}

// rpcError is a failed RPC with what sockctl knows about it.
type rpcError struct {
	op       string             // what was being done: "dial tcp 127.0.0.1:1"
	agent    string             // the agent's address
	dial     dialOptions        // the credentials sockctl presented
	deadline time.Duration      // the RPC deadline, 0 = none
	state    connectivity.State // the connection's state after the failure
	err      error              // the gRPC error
}

func (e *rpcError) Unwrap() error { return e.err }

// Error reads "OP: REASON (Code): message" when the agent explained the failure, and
// "cannot reach agent ADDR: ..." when the RPC never reached the agent.
func (e *rpcError) Error() string {
	st := status.Convert(e.err)
	if info := errorInfo(st); info != nil {
		// The agent's message often starts with the same "op args: " as ours; say it once.
		msg := strings.TrimPrefix(st.Message(), e.op+": ")
		return fmt.Sprintf("%s: %s (%s): %s%s", e.op, info.GetReason(), st.Code(), msg, authHint(st, e.dial))
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Sprintf("cannot reach agent %s: %s%s", e.agent, st.Message(), transportHint(st.Message(), e.dial))
	case codes.Unauthenticated:
		return fmt.Sprintf("%s: %s: %s%s", e.op, st.Code(), st.Message(), authHint(st, e.dial))
	case codes.DeadlineExceeded:
		if e.state != connectivity.Ready {
			return fmt.Sprintf("cannot reach agent %s: no connection within %s (--timeout)", e.agent, e.deadline)
		}
		return fmt.Sprintf("%s: RPC deadline of %s exceeded (raise --timeout)", e.op, e.deadline)
	case codes.Canceled:
		return fmt.Sprintf("%s: cancelled", e.op)
	case codes.Unimplemented:
		return fmt.Sprintf("%s: %s: %s (is %s a sockagent that knows this call?)", e.op, st.Code(), st.Message(), e.agent)
	}
	return fmt.Sprintf("%s: %s: %s", e.op, st.Code(), st.Message())
}

// errorInfo returns the status's ErrorInfo detail in the agent's domain, or nil.
func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return info
		}
	}
	return nil
}
