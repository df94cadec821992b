package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
)

// sysErr builds the error shape Go's net package returns for a failed system call.
func sysErr(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}
}

func TestToStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
	}{
		{"refused", sysErr("connect", syscall.ECONNREFUSED), codes.Unavailable, contract.ReasonConnectionRefused},
		{"reset", sysErr("read", syscall.ECONNRESET), codes.Aborted, contract.ReasonConnectionReset},
		{"aborted", sysErr("read", syscall.ECONNABORTED), codes.Aborted, contract.ReasonConnectionReset},
		{"host unreachable", sysErr("connect", syscall.EHOSTUNREACH), codes.Unavailable, contract.ReasonHostUnreachable},
		{"network unreachable", sysErr("connect", syscall.ENETUNREACH), codes.Unavailable, contract.ReasonNetworkUnreachable},
		{"etimedout", sysErr("connect", syscall.ETIMEDOUT), codes.DeadlineExceeded, contract.ReasonTimeout},
		{"deadline", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, codes.DeadlineExceeded, contract.ReasonTimeout},
		{"context deadline", fmt.Errorf("dial: %w", context.DeadlineExceeded), codes.DeadlineExceeded, contract.ReasonTimeout},
		{"in use", sysErr("bind", syscall.EADDRINUSE), codes.AlreadyExists, contract.ReasonAddressInUse},
		{"not available", sysErr("bind", syscall.EADDRNOTAVAIL), codes.FailedPrecondition, contract.ReasonAddressNotAvailable},
		{"broken pipe", sysErr("write", syscall.EPIPE), codes.Aborted, contract.ReasonBrokenPipe},
		{"closed", &net.OpError{Op: "read", Err: net.ErrClosed}, codes.Aborted, contract.ReasonSocketClosed},
		{"unknown socket", &OpError{Op: "recv", SocketID: "s9", Err: ErrUnknownSocket}, codes.NotFound, contract.ReasonUnknownSocket},
		{"wrong kind", &OpError{Op: "accept", Err: &kindError{"not a listener"}}, codes.FailedPrecondition, contract.ReasonWrongSocketKind},
		{"busy", &OpError{Op: "recv", Err: &busyError{"attached"}}, codes.FailedPrecondition, contract.ReasonSocketBusy},
		{"bad arg", badArg(contract.ReasonInvalidArgument, "x"), codes.InvalidArgument, contract.ReasonInvalidArgument},
		{"addr error", &net.AddrError{Err: "missing port in address", Addr: "x"}, codes.InvalidArgument, contract.ReasonInvalidAddress},
		{"parse error", &net.ParseError{Type: "IP address", Text: "x"}, codes.InvalidArgument, contract.ReasonInvalidAddress},
		{"unknown network", net.UnknownNetworkError("sctp"), codes.InvalidArgument, contract.ReasonInvalidNetwork},
		{"dns not found", &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, codes.Unavailable, contract.ReasonNameNotResolved},
		{"dns timeout", &net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}, codes.DeadlineExceeded, contract.ReasonTimeout},
		{"access", sysErr("bind", syscall.EACCES), codes.PermissionDenied, contract.ReasonAccessDenied},
		{"eperm", sysErr("sendto", syscall.EPERM), codes.PermissionDenied, contract.ReasonAccessDenied},
		{"msgsize", sysErr("sendto", syscall.EMSGSIZE), codes.InvalidArgument, contract.ReasonMessageTooLarge},
		{"emfile", sysErr("socket", syscall.EMFILE), codes.ResourceExhausted, contract.ReasonTooManyOpenFiles},
		{"enobufs", sysErr("sendto", syscall.ENOBUFS), codes.ResourceExhausted, contract.ReasonNoBufferSpace},
		{"enoent", sysErr("connect", syscall.ENOENT), codes.FailedPrecondition, contract.ReasonPathNotFound},
		{"enotconn", sysErr("shutdown", syscall.ENOTCONN), codes.FailedPrecondition, contract.ReasonNotConnected},
		{"stopping", fmt.Errorf("accept: %w", ErrAgentStopping), codes.Unavailable, contract.ReasonAgentStopping},
		{"cancelled", fmt.Errorf("recv: %w", context.Canceled), codes.Canceled, contract.ReasonCancelled},
		{"other errno", sysErr("read", syscall.EIO), codes.Unknown, contract.ReasonOSError},
		{"plain", errors.New("mystery"), codes.Unknown, contract.ReasonOSError},
		{"policy", &policy.Denied{What: "network udp", Rule: "networks", RuleSet: "default"}, codes.PermissionDenied, contract.ReasonPolicyDenied},
		{"policy in Control", &net.OpError{Op: "dial", Err: &policy.Denied{What: "destination 10.0.0.1:22", Rule: "ssh", RuleSet: "lab"}}, codes.PermissionDenied, contract.ReasonPolicyDenied},
		{"limit", &limitError{Limit: "limits.sockets", Max: 3, RuleSet: "default"}, codes.ResourceExhausted, contract.ReasonLimitExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := toStatus(&OpError{Op: "dial", Network: "tcp", Address: "127.0.0.1:1", Err: tc.err})
			if st.Code() != tc.code {
				t.Errorf("code %s, want %s", st.Code(), tc.code)
			}
			var ei *errdetails.ErrorInfo
			for _, d := range st.Details() {
				if e, ok := d.(*errdetails.ErrorInfo); ok {
					ei = e
				}
			}
			if ei == nil || ei.GetReason() != tc.reason || ei.GetDomain() != Domain {
				t.Fatalf("ErrorInfo %v, want reason %s domain %s", ei, tc.reason, Domain)
			}
			if md := ei.GetMetadata(); md["op"] != "dial" || md["network"] != "tcp" || md["address"] != "127.0.0.1:1" {
				t.Errorf("metadata %v lacks op, network, address", md)
			}
			if want := "dial tcp 127.0.0.1:1: "; len(st.Message()) < len(want) || st.Message()[:len(want)] != want {
				t.Errorf("message %q does not start with %q", st.Message(), want)
			}
		})
	}
}
