//go:build !windows

package agent

import (
	"syscall"

	"google.golang.org/grpc/codes"
)

// errnoReason maps an OS error number to a code and reason.
func errnoReason(e syscall.Errno) (codes.Code, string, bool) {
	switch e {
	case syscall.ECONNREFUSED:
		return codes.Unavailable, ReasonConnectionRefused, true
	case syscall.ECONNRESET, syscall.ECONNABORTED:
		return codes.Aborted, ReasonConnectionReset, true
	case syscall.EHOSTUNREACH, syscall.EHOSTDOWN:
		return codes.Unavailable, ReasonHostUnreachable, true
	case syscall.ENETUNREACH, syscall.ENETDOWN:
		return codes.Unavailable, ReasonNetworkUnreachable, true
	case syscall.ETIMEDOUT:
		return codes.DeadlineExceeded, ReasonTimeout, true
	case syscall.EADDRINUSE:
		return codes.AlreadyExists, ReasonAddressInUse, true
	case syscall.EADDRNOTAVAIL:
		return codes.FailedPrecondition, ReasonAddressNotAvailable, true
	case syscall.EPIPE:
		return codes.Aborted, ReasonBrokenPipe, true
	case syscall.EACCES, syscall.EPERM:
		return codes.PermissionDenied, ReasonAccessDenied, true
	case syscall.EMSGSIZE:
		return codes.InvalidArgument, ReasonMessageTooLarge, true
	case syscall.EMFILE, syscall.ENFILE:
		return codes.ResourceExhausted, ReasonTooManyOpenFiles, true
	case syscall.ENOBUFS, syscall.ENOMEM:
		return codes.ResourceExhausted, ReasonNoBufferSpace, true
	case syscall.ENOENT:
		return codes.FailedPrecondition, ReasonPathNotFound, true
	case syscall.ENOTCONN, syscall.EDESTADDRREQ:
		return codes.FailedPrecondition, ReasonNotConnected, true
	case syscall.EAFNOSUPPORT, syscall.EPROTONOSUPPORT, syscall.EINVAL:
		return codes.InvalidArgument, ReasonInvalidAddress, true
	}
	return codes.Unknown, "", false
}
