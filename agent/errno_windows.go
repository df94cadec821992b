//go:build windows

package agent

import (
	"syscall"

	"google.golang.org/grpc/codes"
)

// Winsock error numbers (winerror.h); syscall names only a few of them.
const (
	wsaeacces        = 10013
	wsaemfile        = 10024
	wsaemsgsize      = 10040
	wsaeafnosupport  = 10047
	wsaeaddrinuse    = 10048
	wsaeaddrnotavail = 10049
	wsaenetdown      = 10050
	wsaenetunreach   = 10051
	wsaeconnaborted  = 10053
	wsaeconnreset    = 10054
	wsaenobufs       = 10055
	wsaenotconn      = 10057
	wsaetimedout     = 10060
	wsaeconnrefused  = 10061
	wsaehostdown     = 10064
	wsaehostunreach  = 10065
)

// errnoReason maps a Windows socket error number to a code and reason.
func errnoReason(e syscall.Errno) (codes.Code, string, bool) {
	switch e {
	case wsaeconnrefused:
		return codes.Unavailable, ReasonConnectionRefused, true
	case wsaeconnreset, wsaeconnaborted:
		return codes.Aborted, ReasonConnectionReset, true
	case wsaehostunreach, wsaehostdown:
		return codes.Unavailable, ReasonHostUnreachable, true
	case wsaenetunreach, wsaenetdown:
		return codes.Unavailable, ReasonNetworkUnreachable, true
	case wsaetimedout:
		return codes.DeadlineExceeded, ReasonTimeout, true
	case wsaeaddrinuse:
		return codes.AlreadyExists, ReasonAddressInUse, true
	case wsaeaddrnotavail:
		return codes.FailedPrecondition, ReasonAddressNotAvailable, true
	case wsaeacces:
		return codes.PermissionDenied, ReasonAccessDenied, true
	case wsaemsgsize:
		return codes.InvalidArgument, ReasonMessageTooLarge, true
	case wsaemfile:
		return codes.ResourceExhausted, ReasonTooManyOpenFiles, true
	case wsaenobufs:
		return codes.ResourceExhausted, ReasonNoBufferSpace, true
	case wsaenotconn:
		return codes.FailedPrecondition, ReasonNotConnected, true
	case wsaeafnosupport:
		return codes.InvalidArgument, ReasonInvalidAddress, true
	case syscall.EPIPE, syscall.ERROR_BROKEN_PIPE:
		return codes.Aborted, ReasonBrokenPipe, true
	}
	return codes.Unknown, "", false
}
