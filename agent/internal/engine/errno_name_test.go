//go:build !windows

package engine

import (
	"syscall"
	"testing"
)

// TestMetadataErrnoName: the metadata carries an OS error both as its text (which differs
// between systems) and as its symbolic name, which scripts compare.
func TestMetadataErrnoName(t *testing.T) {
	t.Parallel()
	for errno, want := range map[syscall.Errno][2]string{
		syscall.ECONNREFUSED: {"ECONNREFUSED", "connection refused"},
		syscall.EHOSTUNREACH: {"EHOSTUNREACH", "no route to host"},
		syscall.EACCES:       {"EACCES", "permission denied"},
		syscall.EIO:          {"EIO", "input/output error"},
	} {
		md := Metadata(&OpError{Op: "dial", Network: "tcp", Address: "127.0.0.1:1", Err: sysErr("connect", errno)})
		if md["errno_name"] != want[0] || md["errno"] != want[1] {
			t.Errorf("errno %d: metadata errno_name %q errno %q, want %q %q", int(errno), md["errno_name"], md["errno"], want[0], want[1])
		}
	}
	if md := Metadata(&OpError{Op: "dial", Err: ErrUnknownSocket}); md["errno_name"] != "" || md["errno"] != "" {
		t.Errorf("no OS error, yet metadata %v", md)
	}
	if md := Metadata(&OpError{Op: "read", Err: sysErr("read", syscall.Errno(4000))}); md["errno_name"] != "" || md["errno"] == "" {
		t.Errorf("an unnamed errno: metadata %v, want errno without errno_name", md)
	}
}
