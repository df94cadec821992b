// Package rpcstatus is the one bridge from the engine's errors to gRPC statuses: the engine
// decides an error's reason and metadata (engine.Reason, engine.Metadata), this package the
// code, and attaches a google.rpc.ErrorInfo. It is apart from package agent so that its table
// is tested, and mutation-tested, in a fraction of a second.
package rpcstatus

import (
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// reasonCodes is the one mapping from the contract's reasons to gRPC codes: a script acts on
// the code, and tells "the target refused" from "the agent is down" by the reason.
var reasonCodes = map[string]codes.Code{
	contract.ReasonConnectionRefused:   codes.Unavailable,
	contract.ReasonConnectionReset:     codes.Aborted,
	contract.ReasonHostUnreachable:     codes.Unavailable,
	contract.ReasonNetworkUnreachable:  codes.Unavailable,
	contract.ReasonTimeout:             codes.DeadlineExceeded,
	contract.ReasonAddressInUse:        codes.AlreadyExists,
	contract.ReasonAddressNotAvailable: codes.FailedPrecondition,
	contract.ReasonBrokenPipe:          codes.Aborted,
	contract.ReasonSocketClosed:        codes.Aborted,
	contract.ReasonUnknownSocket:       codes.NotFound,
	contract.ReasonWrongSocketKind:     codes.FailedPrecondition,
	contract.ReasonNotConnected:        codes.FailedPrecondition,
	contract.ReasonInvalidAddress:      codes.InvalidArgument,
	contract.ReasonInvalidNetwork:      codes.InvalidArgument,
	contract.ReasonInvalidArgument:     codes.InvalidArgument,
	contract.ReasonNameNotResolved:     codes.Unavailable,
	contract.ReasonPathNotFound:        codes.FailedPrecondition,
	contract.ReasonAccessDenied:        codes.PermissionDenied,
	contract.ReasonMessageTooLarge:     codes.InvalidArgument,
	contract.ReasonTooManyOpenFiles:    codes.ResourceExhausted,
	contract.ReasonNoBufferSpace:       codes.ResourceExhausted,
	contract.ReasonAgentStopping:       codes.Unavailable,
	contract.ReasonCancelled:           codes.Canceled,
	contract.ReasonOSError:             codes.Unknown,
	contract.ReasonPolicyDenied:        codes.PermissionDenied,
	contract.ReasonLimitExceeded:       codes.ResourceExhausted,
	contract.ReasonUnsupportedOption:   codes.InvalidArgument,
	contract.ReasonUnknownSession:      codes.NotFound,
	contract.ReasonSocketBusy:          codes.FailedPrecondition,
	contract.ReasonUnauthenticated:     codes.Unauthenticated,
	// A failed handshake is the target's answer, like a refused connection.
	contract.ReasonTLSHandshakeFailed: codes.Unavailable,
	contract.ReasonCertificateInvalid: codes.Unavailable,
}

// CodeOf is the gRPC code of a reason; a reason without one (never expected) is Unknown.
func CodeOf(reason string) codes.Code {
	if c, ok := reasonCodes[reason]; ok {
		return c
	}
	return codes.Unknown
}

// ToStatus turns any error of the agent into a gRPC status with a google.rpc.ErrorInfo: the
// engine decides the reason and the metadata, this table the code.
func ToStatus(err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	if s, ok := status.FromError(err); ok {
		return s
	}
	reason := engine.Reason(err)
	st := status.New(CodeOf(reason), err.Error())
	if ds, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: contract.Domain, Metadata: engine.Metadata(err)}); derr == nil {
		return ds
	}
	return st
}
