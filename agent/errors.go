package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent/policy"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the google.rpc.ErrorInfo domain of every error the agent returns.
const Domain = "sockagent.v1"

// Reasons carried in google.rpc.ErrorInfo.reason. Scripts match on these strings.
const (
	ReasonConnectionRefused   = "CONNECTION_REFUSED"
	ReasonConnectionReset     = "CONNECTION_RESET"
	ReasonHostUnreachable     = "HOST_UNREACHABLE"
	ReasonNetworkUnreachable  = "NETWORK_UNREACHABLE"
	ReasonTimeout             = "TIMEOUT"
	ReasonAddressInUse        = "ADDRESS_IN_USE"
	ReasonAddressNotAvailable = "ADDRESS_NOT_AVAILABLE"
	ReasonBrokenPipe          = "BROKEN_PIPE"
	ReasonSocketClosed        = "SOCKET_CLOSED"
	ReasonUnknownSocket       = "UNKNOWN_SOCKET"
	ReasonWrongSocketKind     = "WRONG_SOCKET_KIND"
	ReasonNotConnected        = "NOT_CONNECTED"
	ReasonInvalidAddress      = "INVALID_ADDRESS"
	ReasonInvalidNetwork      = "INVALID_NETWORK"
	ReasonInvalidArgument     = "INVALID_ARGUMENT"
	ReasonNameNotResolved     = "NAME_NOT_RESOLVED"
	ReasonPathNotFound        = "PATH_NOT_FOUND"
	ReasonAccessDenied        = "ACCESS_DENIED"
	ReasonMessageTooLarge     = "MESSAGE_TOO_LARGE"
	ReasonTooManyOpenFiles    = "TOO_MANY_OPEN_FILES"
	ReasonNoBufferSpace       = "NO_BUFFER_SPACE"
	ReasonAgentStopping       = "AGENT_STOPPING"
	ReasonCancelled           = "CANCELLED"
	ReasonOSError             = "OS_ERROR"
	ReasonPolicyDenied        = "POLICY_DENIED"
	ReasonLimitExceeded       = "LIMIT_EXCEEDED"
	ReasonUnknownSession      = "UNKNOWN_SESSION"
	ReasonSocketBusy          = "SOCKET_BUSY"
)

// Sentinel errors of the socket table.
var (
	// ErrUnknownSocket: no socket has this id (never opened, or already closed).
	ErrUnknownSocket = errors.New("unknown socket (never opened, or already closed)")
	// ErrAgentStopping: the agent is shutting down and takes no new work.
	ErrAgentStopping = errors.New("agent is stopping")
)

// kindError says a socket cannot do what was asked of it.
type kindError struct{ msg string }

func (e *kindError) Error() string { return e.msg }

// busyError says a socket is taken by an Attach stream or a serving behaviour, so no other
// call may use it (FAILED_PRECONDITION, SOCKET_BUSY).
type busyError struct{ msg string }

func (e *busyError) Error() string { return e.msg }

// argError is a bad request field; reason is one of the INVALID_* or MESSAGE_TOO_LARGE reasons.
type argError struct {
	reason string
	msg    string
}

func (e *argError) Error() string { return e.msg }

func badArg(reason, format string, args ...any) error {
	return &argError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// limitError is a request over a limit of the agent or of the caller's policy rule set.
type limitError struct {
	Limit   string // the policy key: "limits.sockets", "limits.bytes_per_call", "limits.blocking_calls", "agent_limits.sockets", "session_limits.sockets"
	Max     int
	RuleSet string // the rule set the limit comes from; empty for agent_limits
	Detail  string // what was over it, and what to do
}

func (e *limitError) Error() string {
	s := fmt.Sprintf("limit %s (%d) exceeded", e.Limit, e.Max)
	if e.RuleSet != "" {
		s += fmt.Sprintf(" (rule set %q)", e.RuleSet)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// OpError wraps an error with the operation, network, address and socket it concerns.
type OpError struct {
	Op       string
	Network  string
	Address  string
	SocketID string
	Err      error
}

func (e *OpError) Error() string {
	s := e.Op
	if e.SocketID != "" {
		s += " " + e.SocketID
	}
	if e.Network != "" {
		s += " " + e.Network
	}
	if e.Address != "" {
		s += " " + e.Address
	}
	return s + ": " + innermost(e.Err).Error()
}

func (e *OpError) Unwrap() error { return e.Err }

// innermost drops the net.OpError layer, whose text repeats op and address.
func innermost(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// classify maps an error to a gRPC code and an ErrorInfo reason. It is the only place that
// decides codes; it uses errors.Is/As, never the text.
func classify(err error) (codes.Code, string) {
	var (
		ke    *kindError
		be    *busyError
		ae    *argError
		pde   *policy.Denied
		le    *limitError
		dnse  *net.DNSError
		adde  *net.AddrError
		pe    *net.ParseError
		une   net.UnknownNetworkError
		errno syscall.Errno
		ne    net.Error
	)
	switch {
	case errors.As(err, &pde):
		return codes.PermissionDenied, ReasonPolicyDenied
	case errors.As(err, &le):
		return codes.ResourceExhausted, ReasonLimitExceeded
	case errors.Is(err, ErrUnknownSocket):
		return codes.NotFound, ReasonUnknownSocket
	case errors.Is(err, ErrUnknownSession):
		return codes.NotFound, ReasonUnknownSession
	case errors.As(err, &ke):
		return codes.FailedPrecondition, ReasonWrongSocketKind
	case errors.As(err, &be):
		return codes.FailedPrecondition, ReasonSocketBusy
	case errors.As(err, &ae):
		return codes.InvalidArgument, ae.reason
	case errors.Is(err, ErrAgentStopping):
		return codes.Unavailable, ReasonAgentStopping
	case errors.Is(err, context.Canceled):
		return codes.Canceled, ReasonCancelled
	case errors.Is(err, net.ErrClosed):
		return codes.Aborted, ReasonSocketClosed
	case errors.As(err, &une):
		return codes.InvalidArgument, ReasonInvalidNetwork
	case errors.As(err, &dnse):
		if dnse.IsTimeout {
			return codes.DeadlineExceeded, ReasonTimeout
		}
		return codes.Unavailable, ReasonNameNotResolved
	case errors.As(err, &adde), errors.As(err, &pe):
		return codes.InvalidArgument, ReasonInvalidAddress
	case errors.As(err, &errno):
		if c, r, ok := errnoReason(errno); ok {
			return c, r
		}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return codes.DeadlineExceeded, ReasonTimeout
	}
	return codes.Unknown, ReasonOSError
}

// toStatus turns any error of the agent into a gRPC status with a google.rpc.ErrorInfo.
func toStatus(err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	if s, ok := status.FromError(err); ok {
		return s
	}
	code, reason := classify(err)
	md := map[string]string{}
	var oe *OpError
	if errors.As(err, &oe) {
		for k, v := range map[string]string{"op": oe.Op, "network": oe.Network, "address": oe.Address, "socket_id": oe.SocketID} {
			if v != "" {
				md[k] = v
			}
		}
	}
	var use *unknownSocketError
	if errors.As(err, &use) {
		md["instance_id"], md["started_at"] = use.instance, use.started.UTC().Format(time.RFC3339Nano)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		md["errno"] = errno.Error()
	}
	var pde *policy.Denied
	if errors.As(err, &pde) {
		md["rule"], md["rule_set"] = pde.Rule, pde.RuleSet
	}
	var le *limitError
	if errors.As(err, &le) {
		md["limit"] = le.Limit
		if le.RuleSet != "" {
			md["rule_set"] = le.RuleSet
		}
	}
	st := status.New(code, err.Error())
	if ds, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: md}); derr == nil {
		return ds
	}
	return st
}
