//go:build !windows

package engine

import (
	"syscall"

	"github.com/sockagent/sockagent/agent/contract"
	"golang.org/x/sys/unix"
)

// errnoReasons maps OS error numbers to reasons; a number not listed is OS_ERROR.
var errnoReasons = map[syscall.Errno]string{
	syscall.ECONNREFUSED:    contract.ReasonConnectionRefused,
	syscall.ECONNRESET:      contract.ReasonConnectionReset,
	syscall.ECONNABORTED:    contract.ReasonConnectionReset,
	syscall.EHOSTUNREACH:    contract.ReasonHostUnreachable,
	syscall.EHOSTDOWN:       contract.ReasonHostUnreachable,
	syscall.ENETUNREACH:     contract.ReasonNetworkUnreachable,
	syscall.ENETDOWN:        contract.ReasonNetworkUnreachable,
	syscall.ETIMEDOUT:       contract.ReasonTimeout,
	syscall.EADDRINUSE:      contract.ReasonAddressInUse,
	syscall.EADDRNOTAVAIL:   contract.ReasonAddressNotAvailable,
	syscall.EPIPE:           contract.ReasonBrokenPipe,
	syscall.EACCES:          contract.ReasonAccessDenied,
	syscall.EPERM:           contract.ReasonAccessDenied,
	syscall.EMSGSIZE:        contract.ReasonMessageTooLarge,
	syscall.EMFILE:          contract.ReasonTooManyOpenFiles,
	syscall.ENFILE:          contract.ReasonTooManyOpenFiles,
	syscall.ENOBUFS:         contract.ReasonNoBufferSpace,
	syscall.ENOMEM:          contract.ReasonNoBufferSpace,
	syscall.ENOENT:          contract.ReasonPathNotFound,
	syscall.ENOTCONN:        contract.ReasonNotConnected,
	syscall.EDESTADDRREQ:    contract.ReasonNotConnected,
	syscall.EAFNOSUPPORT:    contract.ReasonInvalidAddress,
	syscall.EPROTONOSUPPORT: contract.ReasonInvalidAddress,
	syscall.EINVAL:          contract.ReasonInvalidAddress,
}

func errnoReason(e syscall.Errno) (string, bool) {
	r, ok := errnoReasons[e]
	return r, ok
}

// errnoName is the symbolic name of an OS error number ("ECONNREFUSED"), or "" for a number
// the OS does not name.
func errnoName(e syscall.Errno) string { return unix.ErrnoName(e) }
