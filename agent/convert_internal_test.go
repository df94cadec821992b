package agent

import (
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// roundTrip checks an enum table: every proto value but the listed unconvertible ones converts
// to an engine value and back to itself, no two proto values share an engine value, and every
// engine value listed converts back.
func roundTrip[P interface {
	comparable
	~int32
}, E comparable](t *testing.T, name string, tab enumTable[P, E], names map[int32]string, unconvertible ...P) {
	t.Helper()
	seen := map[E]P{}
	for num, n := range names {
		p := P(num)
		e, ok := tab.engine(p)
		skip := false
		for _, u := range unconvertible {
			skip = skip || u == p
		}
		if skip {
			if ok {
				t.Errorf("%s: %s converts to %v; it must not", name, n, e)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: %s has no engine value", name, n)
			continue
		}
		if prev, dup := seen[e]; dup {
			t.Errorf("%s: %s and %v both convert to %v", name, n, prev, e)
		}
		seen[e] = p
		if back, ok := tab.proto(e); !ok || back != p {
			t.Errorf("%s: %s -> %v -> %v", name, n, e, back)
		}
	}
	if len(seen) != len(tab) {
		t.Errorf("%s: the table has %d pairs, %d proto values convert", name, len(tab), len(seen))
	}
}

func TestEnumTablesRoundTrip(t *testing.T) {
	t.Parallel()
	roundTrip(t, "SocketKind", kinds, sockagentv1.SocketKind_name, sockagentv1.SocketKind_SOCKET_KIND_UNSPECIFIED)
	roundTrip(t, "SocketState", states, sockagentv1.SocketState_name, sockagentv1.SocketState_SOCKET_STATE_UNSPECIFIED)
	roundTrip(t, "ShutdownDirection", shutdownDirections, sockagentv1.ShutdownDirection_name, sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_UNSPECIFIED)
	roundTrip(t, "Behaviour", behaviours, sockagentv1.Behaviour_name, sockagentv1.Behaviour_BEHAVIOUR_UNSPECIFIED)
	roundTrip(t, "ProbeMode", probeModes, sockagentv1.ProbeMode_name)
	roundTrip(t, "Direction", receives, sockagentv1.Direction_name, sockagentv1.Direction_DIRECTION_UNSPECIFIED)
	roundTrip(t, "EventKind", eventKinds, sockagentv1.EventKind_name, sockagentv1.EventKind_EVENT_KIND_UNSPECIFIED)
	// and every engine kind has a proto value: no event goes out as UNSPECIFIED
	for k := engine.EventOpened; k <= engine.EventLimitRefused; k++ {
		if _, ok := eventKinds.proto(k); !ok {
			t.Errorf("EventKind: engine kind %v has no proto value", k)
		}
	}
}

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
		if got := codeOf(r); got != want {
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
	st := toStatus(err)
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
	if s := toStatus(nil); s.Code() != codes.OK {
		t.Errorf("toStatus(nil) = %v", s)
	}
	if s := toStatus(status.Error(codes.Aborted, "as is")); s.Code() != codes.Aborted || s.Message() != "as is" {
		t.Errorf("a status passes through unchanged: %v", s)
	}
}
