package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

// Sentinel errors of the engine.
var (
	// ErrUnknownSocket: no socket has this id (never opened, or already closed).
	ErrUnknownSocket = errors.New("unknown socket (never opened, or already closed)")
	// ErrAgentStopping: the agent is shutting down and takes no new work.
	ErrAgentStopping = errors.New("agent is stopping")
	// ErrUnknownSession: no open session of the caller has this id (never opened, closed, or
	// its lease expired).
	ErrUnknownSession = errors.New("unknown session (never opened, closed, or its lease expired)")
)

// kindError says a socket cannot do what was asked of it.
type kindError struct{ msg string }

func (e *kindError) Error() string { return e.msg }

// busyError says a socket is taken by an Attach stream or a serving behaviour, so no other
// call may use it.
type busyError struct{ msg string }

func (e *busyError) Error() string { return e.msg }

// argError is a bad request field; reason is one of the INVALID_* or MESSAGE_TOO_LARGE reasons.
type argError struct {
	reason string
	msg    string
}

func (e *argError) Error() string { return e.msg }

// BadArg is an error for a bad request field with one of the contract's INVALID_* reasons;
// the adapter uses it for what it checks while converting a request.
func BadArg(reason, format string, args ...any) error {
	return &argError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

func badArg(reason, format string, args ...any) error { return BadArg(reason, format, args...) }

// limitError is a request over a limit of the agent or of the caller's policy rule set.
type limitError struct {
	Limit   string // the policy key: "limits.sockets", "agent_limits.blocking_calls", ...
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
	var te *tlsError
	if errors.As(err, &te) {
		return te // its own text says what failed; a net.OpError inside it is the detail
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// unknownSocketError is ErrUnknownSocket naming the agent instance, so that a client holding an
// id from before a restart can tell.
type unknownSocketError struct {
	instance string
	started  time.Time
	why      string // why the agent closed it on its own, when it did so recently
	// other is the instance the id carries, or the call expects (byHeader), when it is not
	// this one: the agent restarted.
	other    string
	byHeader bool
	ours     bool // the id has this instance's shape: it was closed, or never given out
}

func (e *unknownSocketError) Error() string {
	started := e.started.UTC().Format(time.RFC3339)
	switch {
	case e.other != "" && e.byHeader:
		return fmt.Sprintf("%s; this agent instance %s, started %s; the call expects instance %s (header %s): the agent restarted, and the sockets of that instance are gone",
			ErrUnknownSocket, e.instance, started, e.other, contract.InstanceHeader)
	case e.other != "":
		return fmt.Sprintf("%s; this agent instance %s, started %s; the id belongs to instance %s: the agent restarted, and the sockets of that instance are gone",
			ErrUnknownSocket, e.instance, started, e.other)
	case e.why != "":
		return fmt.Sprintf("unknown socket: the agent closed it: %s (agent instance %s, started %s)", e.why, e.instance, started)
	case e.ours:
		return fmt.Sprintf("%s; this agent instance %s, started %s, has no such socket: it was closed, or never opened; ListSockets shows the open ones",
			ErrUnknownSocket, e.instance, started)
	}
	return fmt.Sprintf("%s; this agent instance %s, started %s, has no such socket: if it was opened before, the agent restarted",
		ErrUnknownSocket, e.instance, started)
}

func (e *unknownSocketError) Is(target error) bool { return target == ErrUnknownSocket }

// closedError is net.ErrClosed for a socket the agent closed on its own (session ended,
// idle), saying why.
type closedError struct{ why string }

func (e *closedError) Error() string { return "socket closed by the agent: " + e.why }
func (e *closedError) Unwrap() error { return net.ErrClosed }

// Reason maps an error to its contract reason. It is the only place that decides reasons; it
// uses errors.Is/As, never the text.
func Reason(err error) string {
	var (
		ke    *kindError
		te    *tlsError
		be    *busyError
		ae    *argError
		oe    *optionError
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
		return contract.ReasonPolicyDenied
	case errors.As(err, &le):
		return contract.ReasonLimitExceeded
	case errors.As(err, &te) && te.cert:
		return contract.ReasonCertificateInvalid
	case errors.As(err, &te):
		return contract.ReasonTLSHandshakeFailed
	case errors.Is(err, ErrUnknownSocket):
		return contract.ReasonUnknownSocket
	case errors.Is(err, ErrUnknownSession):
		return contract.ReasonUnknownSession
	case errors.As(err, &ke):
		return contract.ReasonWrongSocketKind
	case errors.As(err, &be):
		return contract.ReasonSocketBusy
	case errors.As(err, &ae):
		return ae.reason
	case errors.As(err, &oe) && oe.reason != "":
		return oe.reason
	case errors.Is(err, ErrAgentStopping):
		return contract.ReasonAgentStopping
	case errors.Is(err, context.Canceled):
		return contract.ReasonCancelled
	case errors.Is(err, net.ErrClosed):
		return contract.ReasonSocketClosed
	case errors.As(err, &une):
		return contract.ReasonInvalidNetwork
	case errors.As(err, &dnse):
		if dnse.IsTimeout {
			return contract.ReasonTimeout
		}
		return contract.ReasonNameNotResolved
	case errors.As(err, &adde), errors.As(err, &pe):
		return contract.ReasonInvalidAddress
	case errors.As(err, &errno):
		if r, ok := errnoReason(errno); ok {
			return r
		}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return contract.ReasonTimeout
	}
	return contract.ReasonOSError
}

// Metadata is what an error says beyond its reason and message, for google.rpc.ErrorInfo's
// metadata: the operation, network, address and socket (OpError); the agent instance
// (UNKNOWN_SOCKET); the OS error as text ("errno": "connection refused") and, where the OS
// names it, by its symbolic name ("errno_name": "ECONNREFUSED", what scripts compare: the
// text differs between systems); the policy rule and rule set; the limit; the socket option.
func Metadata(err error) map[string]string {
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
		if use.other != "" {
			md["expected_instance"] = use.other
		}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		md["errno"] = errno.Error()
		if name := errnoName(errno); name != "" {
			md["errno_name"] = name
		}
	}
	var pde *policy.Denied
	if errors.As(err, &pde) {
		md["rule"], md["rule_set"] = pde.Rule, pde.RuleSet
	}
	var opt *optionError
	if errors.As(err, &opt) {
		md["option"] = opt.option
	}
	var le *limitError
	if errors.As(err, &le) {
		md["limit"] = le.Limit
		if le.RuleSet != "" {
			md["rule_set"] = le.RuleSet
		}
	}
	return md
}
