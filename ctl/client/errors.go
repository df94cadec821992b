package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// DeadlineMargin is added to a blocking call's own timeout (--wait, --connect-timeout) when
// that timeout would otherwise run into the RPC deadline (--timeout), so that the agent's
// TIMEOUT answer, not the client's deadline, ends the call.
const DeadlineMargin = 5 * time.Second

// ConnectTimeout bounds waiting for an agent to answer a first call, and opening a session.
const ConnectTimeout = 5 * time.Second

// RPCDeadline returns the deadline for one RPC: timeout (--timeout, 0 = none), raised to
// wait+DeadlineMargin when the call has its own longer wait.
func RPCDeadline(timeout, wait time.Duration) time.Duration {
	if timeout <= 0 {
		return 0
	}
	if wait > 0 && wait+DeadlineMargin > timeout {
		return wait + DeadlineMargin
	}
	return timeout
}

// RPCError is a failed RPC with what the caller knows about it.
type RPCError struct {
	Op       string             // what was being done: "dial tcp 127.0.0.1:1"
	Agent    string             // the agent's address
	Dial     Options            // the credentials presented
	Deadline time.Duration      // the RPC deadline, 0 = none
	State    connectivity.State // the connection's state after the failure
	Err      error              // the gRPC error
}

// Unwrap returns the gRPC error.
func (e *RPCError) Unwrap() error { return e.Err }

// Error reads "OP: REASON (Code): message" when the agent explained the failure, and
// "cannot reach agent ADDR: ..." when the RPC never reached the agent.
func (e *RPCError) Error() string {
	st := status.Convert(e.Err)
	if info := ErrorInfo(st); info != nil {
		// The agent's message often starts with the same "op args: " as ours; say it once.
		msg := strings.TrimPrefix(st.Message(), e.Op+": ")
		return withNextStep(fmt.Sprintf("%s: %s (%s): %s%s", e.Op, info.GetReason(), st.Code(), msg, authHint(st, e.Dial)), info.GetReason())
	}
	switch st.Code() {
	case codes.Unavailable:
		hint := transportHint(st.Message(), e.Dial)
		if hint == "" {
			hint = unreachableHint(st.Message())
		}
		return fmt.Sprintf("cannot reach agent %s: %s%s", e.Agent, st.Message(), hint)
	case codes.ResourceExhausted:
		return fmt.Sprintf("%s: %s: %s%s", e.Op, st.Code(), st.Message(), tooLargeHint(st.Message()))
	case codes.Unauthenticated:
		return fmt.Sprintf("%s: %s: %s%s", e.Op, st.Code(), st.Message(), authHint(st, e.Dial))
	case codes.DeadlineExceeded:
		if e.State != connectivity.Ready {
			return fmt.Sprintf("cannot reach agent %s: no connection within %s (--timeout)", e.Agent, e.Deadline)
		}
		return fmt.Sprintf("%s: RPC deadline of %s exceeded (raise --timeout)", e.Op, e.Deadline)
	case codes.Canceled:
		return fmt.Sprintf("%s: cancelled", e.Op)
	case codes.Unimplemented:
		return fmt.Sprintf("%s: %s: %s (is %s a sockagent that knows this call?)", e.Op, st.Code(), st.Message(), e.Agent)
	}
	return fmt.Sprintf("%s: %s: %s", e.Op, st.Code(), st.Message())
}

// ErrorInfo returns the status's ErrorInfo detail in the agent's domain, or nil.
func ErrorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == contract.Domain {
			return info
		}
	}
	return nil
}

// Reason turns an RPC error into a reason and a message. Errors the agent explains carry its
// ErrorInfo reason; an agent that cannot be reached is AGENT_UNAVAILABLE and a call that
// outlived its deadline is STEP_TIMEOUT, so they never pass for a target's answer.
func Reason(err error) (reason, msg string) {
	st := status.Convert(err)
	if info := ErrorInfo(st); info != nil {
		return info.GetReason(), st.Message()
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return contract.ReasonStepTimeout, "no answer from the agent within the step's deadline"
	case codes.Unavailable:
		return contract.ReasonAgentUnavailable, "agent unavailable: " + st.Message()
	case codes.Canceled:
		return contract.ReasonCancelled, "cancelled"
	}
	return st.Code().String(), st.Message()
}

// Transient says err is a control-channel failure: UNAVAILABLE without the agent's ErrorInfo,
// so the agent was not reached (a target's CONNECTION_REFUSED carries an ErrorInfo).
func Transient(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unavailable && ErrorInfo(st) == nil
}

// WaitReady waits, within ConnectTimeout, for the agent on cc to answer GetInfo, and returns
// its answer. Its error says why the agent could not be reached, with a hint at the
// credentials of o when they are the likely cause. An agent whose address refuses the
// connection (or whose handshake fails) is unreachable at once: the call does not wait for
// the connection to become ready, so only an agent that does not answer at all takes
// ConnectTimeout.
func WaitReady(ctx context.Context, ac sockagentv1.AgentServiceClient, o Options) (*sockagentv1.GetInfoResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	info, err := ac.GetInfo(cctx, &sockagentv1.GetInfoRequest{})
	if err == nil {
		return info, nil
	}
	msg := status.Convert(err).Message()
	if status.Code(err) == codes.DeadlineExceeded {
		// Waiting for a connection, gRPC keeps the last reason it failed (a TLS handshake,
		// say) in the message: "... latest balancer error: REASON".
		if _, last, ok := strings.Cut(msg, "latest balancer error: "); ok {
			return nil, fmt.Errorf("no answer within %s: %s%s", ConnectTimeout, last, transportHint(last, o))
		}
		return nil, fmt.Errorf("no answer within %s", ConnectTimeout)
	}
	return nil, errors.New(msg + transportHint(msg, o) + authHint(status.Convert(err), o))
}
