//go:build windows

package engine

import (
	"syscall"

	"github.com/sockagent/sockagent/agent/contract"
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

// errnoReasons maps Windows socket error numbers to reasons; a number not listed is OS_ERROR.
var errnoReasons = map[syscall.Errno]string{
	wsaeconnrefused:           contract.ReasonConnectionRefused,
	wsaeconnreset:             contract.ReasonConnectionReset,
	wsaeconnaborted:           contract.ReasonConnectionReset,
	wsaehostunreach:           contract.ReasonHostUnreachable,
	wsaehostdown:              contract.ReasonHostUnreachable,
	wsaenetunreach:            contract.ReasonNetworkUnreachable,
	wsaenetdown:               contract.ReasonNetworkUnreachable,
	wsaetimedout:              contract.ReasonTimeout,
	wsaeaddrinuse:             contract.ReasonAddressInUse,
	wsaeaddrnotavail:          contract.ReasonAddressNotAvailable,
	wsaeacces:                 contract.ReasonAccessDenied,
	wsaemsgsize:               contract.ReasonMessageTooLarge,
	wsaemfile:                 contract.ReasonTooManyOpenFiles,
	wsaenobufs:                contract.ReasonNoBufferSpace,
	wsaenotconn:               contract.ReasonNotConnected,
	wsaeafnosupport:           contract.ReasonInvalidAddress,
	syscall.EPIPE:             contract.ReasonBrokenPipe,
	syscall.ERROR_BROKEN_PIPE: contract.ReasonBrokenPipe,
}

func errnoReason(e syscall.Errno) (string, bool) {
	r, ok := errnoReasons[e]
	return r, ok
}

// errnoName is "" on Windows: its error numbers have no portable symbolic names; the
// metadata's errno text says what happened.
func errnoName(syscall.Errno) string { return "" }
