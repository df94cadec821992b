package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

// sysErr builds the error shape Go's net package returns for a failed system call.
func sysErr(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}
}

// TestReason: every kind of error the engine meets maps to its reason, through the wrapping
// the engine adds (OpError) and Go's net package adds (net.OpError, os.SyscallError); the
// metadata names the operation and the address; the message starts with them.
func TestReason(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		err    error
		reason string
	}{
		{"refused", sysErr("connect", syscall.ECONNREFUSED), contract.ReasonConnectionRefused},
		{"reset", sysErr("read", syscall.ECONNRESET), contract.ReasonConnectionReset},
		{"aborted", sysErr("read", syscall.ECONNABORTED), contract.ReasonConnectionReset},
		{"host unreachable", sysErr("connect", syscall.EHOSTUNREACH), contract.ReasonHostUnreachable},
		{"network unreachable", sysErr("connect", syscall.ENETUNREACH), contract.ReasonNetworkUnreachable},
		{"etimedout", sysErr("connect", syscall.ETIMEDOUT), contract.ReasonTimeout},
		{"deadline", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, contract.ReasonTimeout},
		{"context deadline", fmt.Errorf("dial: %w", context.DeadlineExceeded), contract.ReasonTimeout},
		{"in use", sysErr("bind", syscall.EADDRINUSE), contract.ReasonAddressInUse},
		{"not available", sysErr("bind", syscall.EADDRNOTAVAIL), contract.ReasonAddressNotAvailable},
		{"broken pipe", sysErr("write", syscall.EPIPE), contract.ReasonBrokenPipe},
		{"closed", &net.OpError{Op: "read", Err: net.ErrClosed}, contract.ReasonSocketClosed},
		{"unknown socket", &OpError{Op: "recv", SocketID: "s9", Err: ErrUnknownSocket}, contract.ReasonUnknownSocket},
		{"wrong kind", &OpError{Op: "accept", Err: &kindError{"not a listener"}}, contract.ReasonWrongSocketKind},
		{"busy", &OpError{Op: "recv", Err: &busyError{"attached"}}, contract.ReasonSocketBusy},
		{"bad arg", badArg(contract.ReasonInvalidArgument, "x"), contract.ReasonInvalidArgument},
		{"addr error", &net.AddrError{Err: "missing port in address", Addr: "x"}, contract.ReasonInvalidAddress},
		{"parse error", &net.ParseError{Type: "IP address", Text: "x"}, contract.ReasonInvalidAddress},
		{"unknown network", net.UnknownNetworkError("sctp"), contract.ReasonInvalidNetwork},
		{"dns not found", &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, contract.ReasonNameNotResolved},
		{"dns timeout", &net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}, contract.ReasonTimeout},
		{"access", sysErr("bind", syscall.EACCES), contract.ReasonAccessDenied},
		{"eperm", sysErr("sendto", syscall.EPERM), contract.ReasonAccessDenied},
		{"msgsize", sysErr("sendto", syscall.EMSGSIZE), contract.ReasonMessageTooLarge},
		{"emfile", sysErr("socket", syscall.EMFILE), contract.ReasonTooManyOpenFiles},
		{"enobufs", sysErr("sendto", syscall.ENOBUFS), contract.ReasonNoBufferSpace},
		{"enoent", sysErr("connect", syscall.ENOENT), contract.ReasonPathNotFound},
		{"enotconn", sysErr("shutdown", syscall.ENOTCONN), contract.ReasonNotConnected},
		{"edestaddrreq", sysErr("write", syscall.EDESTADDRREQ), contract.ReasonNotConnected},
		{"einval", sysErr("bind", syscall.EINVAL), contract.ReasonInvalidAddress},
		{"eafnosupport", sysErr("connect", syscall.EAFNOSUPPORT), contract.ReasonInvalidAddress},
		{"eprotonosupport", sysErr("socket", syscall.EPROTONOSUPPORT), contract.ReasonInvalidAddress},
		{"ehostdown", sysErr("connect", syscall.EHOSTDOWN), contract.ReasonHostUnreachable},
		{"enetdown", sysErr("connect", syscall.ENETDOWN), contract.ReasonNetworkUnreachable},
		{"enfile", sysErr("socket", syscall.ENFILE), contract.ReasonTooManyOpenFiles},
		{"enomem", sysErr("sendto", syscall.ENOMEM), contract.ReasonNoBufferSpace},
		{"stopping", fmt.Errorf("accept: %w", ErrAgentStopping), contract.ReasonAgentStopping},
		{"cancelled", fmt.Errorf("recv: %w", context.Canceled), contract.ReasonCancelled},
		{"other errno", sysErr("read", syscall.EIO), contract.ReasonOSError},
		{"plain", errors.New("mystery"), contract.ReasonOSError},
		{"policy", &policy.Denied{What: "network udp", Rule: "networks", RuleSet: "default"}, contract.ReasonPolicyDenied},
		{"policy in Control", &net.OpError{Op: "dial", Err: &policy.Denied{What: "destination 10.0.0.1:22", Rule: "ssh", RuleSet: "lab"}}, contract.ReasonPolicyDenied},
		{"limit", &limitError{Limit: "limits.sockets", Max: 3, RuleSet: "default"}, contract.ReasonLimitExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := &OpError{Op: "dial", Network: "tcp", Address: "127.0.0.1:1", Err: tc.err}
			if got := Reason(err); got != tc.reason {
				t.Errorf("Reason = %s, want %s", got, tc.reason)
			}
			if md := Metadata(err); md["op"] != "dial" || md["network"] != "tcp" || md["address"] != "127.0.0.1:1" {
				t.Errorf("metadata %v lacks op, network, address", md)
			}
			if want := "dial tcp 127.0.0.1:1: "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("message %q does not start with %q", err.Error(), want)
			}
		})
	}
}
