package rpcstatus

import (
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestReasonCodes: every reason the agent gives has a code of its own choosing (none falls to
// Unknown but OS_ERROR), and the codes scripts rely on are the documented ones.
func TestReasonCodes(t *testing.T) {
	t.Parallel()
	for _, r := range contract.AgentReasons() {
		c, ok := reasonCodes[r]
		if !ok {
			t.Errorf("reason %s has no code", r)
		}
		if c == codes.Unknown && r != contract.ReasonOSError {
			t.Errorf("reason %s maps to Unknown", r)
		}
	}
	if len(reasonCodes) != len(contract.AgentReasons()) {
		t.Errorf("reasonCodes has %d entries, the contract %d agent reasons", len(reasonCodes), len(contract.AgentReasons()))
	}
	for r, want := range map[string]codes.Code{
		contract.ReasonConnectionRefused: codes.Unavailable, contract.ReasonConnectionReset: codes.Aborted,
		contract.ReasonHostUnreachable: codes.Unavailable, contract.ReasonNetworkUnreachable: codes.Unavailable,
		contract.ReasonTimeout: codes.DeadlineExceeded, contract.ReasonAddressInUse: codes.AlreadyExists,
		contract.ReasonAddressNotAvailable: codes.FailedPrecondition, contract.ReasonBrokenPipe: codes.Aborted,
		contract.ReasonSocketClosed: codes.Aborted, contract.ReasonUnknownSocket: codes.NotFound,
		contract.ReasonWrongSocketKind: codes.FailedPrecondition, contract.ReasonSocketBusy: codes.FailedPrecondition,
		contract.ReasonInvalidArgument: codes.InvalidArgument, contract.ReasonInvalidAddress: codes.InvalidArgument,
		contract.ReasonInvalidNetwork: codes.InvalidArgument, contract.ReasonNameNotResolved: codes.Unavailable,
		contract.ReasonAccessDenied: codes.PermissionDenied, contract.ReasonPolicyDenied: codes.PermissionDenied,
		contract.ReasonLimitExceeded: codes.ResourceExhausted, contract.ReasonTooManyOpenFiles: codes.ResourceExhausted,
		contract.ReasonUnknownSession: codes.NotFound, contract.ReasonAgentStopping: codes.Unavailable,
		contract.ReasonCancelled: codes.Canceled, contract.ReasonOSError: codes.Unknown,
		contract.ReasonUnauthenticated: codes.Unauthenticated,
	} {
		if got := CodeOf(r); got != want {
			t.Errorf("%s: code %s, want %s", r, got, want)
		}
	}
}

// TestToStatus: an engine error becomes a status with the reason's code, the engine's message,
// and an ErrorInfo in the contract's domain carrying the reason and the metadata.
func TestToStatus(t *testing.T) {
	t.Parallel()
	err := &engine.OpError{Op: "dial", Network: "tcp", Address: "127.0.0.1:1",
		Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	st := ToStatus(err)
	if st.Code() != codes.Unavailable || st.Message() != err.Error() {
		t.Errorf("status %v %q, want Unavailable %q", st.Code(), st.Message(), err.Error())
	}
	var ei *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if e, ok := d.(*errdetails.ErrorInfo); ok {
			ei = e
		}
	}
	md := ei.GetMetadata()
	if ei.GetReason() != contract.ReasonConnectionRefused || ei.GetDomain() != contract.Domain ||
		md["op"] != "dial" || md["network"] != "tcp" || md["address"] != "127.0.0.1:1" || md["errno"] == "" {
		t.Errorf("ErrorInfo %v", ei)
	}
	if runtime.GOOS != "windows" && (md["errno_name"] != "ECONNREFUSED" || md["errno"] != "connection refused") {
		t.Errorf("ErrorInfo metadata errno %q errno_name %q, want \"connection refused\" and ECONNREFUSED", md["errno"], md["errno_name"])
	}
	if s := ToStatus(nil); s.Code() != codes.OK {
		t.Errorf("ToStatus(nil) = %v", s)
	}
	if s := ToStatus(status.Error(codes.Aborted, "as is")); s.Code() != codes.Aborted || s.Message() != "as is" {
		t.Errorf("a status passes through unchanged: %v", s)
	}
}

// TestUnknownReason: a reason without a code (a bug elsewhere) is Unknown, never OK.
func TestUnknownReason(t *testing.T) {
	t.Parallel()
	if got := CodeOf("NOT_A_REASON"); got != codes.Unknown {
		t.Errorf("CodeOf(NOT_A_REASON) = %s, want Unknown", got)
	}
	if got := CodeOf(""); got != codes.Unknown {
		t.Errorf("CodeOf(\"\") = %s, want Unknown", got)
	}
}
