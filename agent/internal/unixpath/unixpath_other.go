//go:build !linux

package unixpath

import (
	"os"
	"path/filepath"
	"sync"
)

// Target is a UNIX socket path for connect or sendto. Outside Linux it is used as written.
type Target struct {
	// Path is the caller's path, cleaned; Real is the same (the policy resolves it).
	Path, Real string
	// Addr is what connect or sendto must be given.
	Addr string
}

// OpenTarget checks a UNIX socket path for connect or sendto.
func OpenTarget(p string) (*Target, error) {
	dir, name, err := Split(p)
	if err != nil {
		return nil, err
	}
	clean := filepath.Join(dir, name)
	return &Target{Path: clean, Real: clean, Addr: clean}, nil
}

// Close does nothing outside Linux.
func (t *Target) Close() error { return nil }

// Bound is the path a UNIX socket is bound to. Outside Linux it is used as written.
type Bound struct {
	// Path is the caller's path, cleaned; Real is the same (the policy resolves it).
	Path, Real string
	// Addr is what bind must be given.
	Addr string

	mu        sync.Mutex
	done      bool
	committed os.FileInfo // the socket file a successful bind created
}

// OpenBind checks a UNIX socket path for a bind.
func OpenBind(p string) (*Bound, error) {
	dir, name, err := Split(p)
	if err != nil {
		return nil, err
	}
	clean := filepath.Join(dir, name)
	return &Bound{Path: clean, Real: clean, Addr: clean}, nil
}

// Commit records the socket file a successful bind created, so Close removes that file and
// no other.
func (b *Bound) Commit() error {
	fi, err := os.Lstat(b.Addr)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return &os.PathError{Op: "stat", Path: b.Addr, Err: errReplaced}
	}
	b.mu.Lock()
	b.committed = fi
	b.mu.Unlock()
	return nil
}

// Close removes the socket file Commit recorded if the path still names it. Later calls do
// nothing.
func (b *Bound) Close() (removed bool, err error) {
	if b == nil {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done || b.committed == nil {
		b.done = true
		return false, nil
	}
	b.done = true
	if fi, err := os.Lstat(b.Addr); err != nil || !os.SameFile(fi, b.committed) {
		return false, nil
	}
	if err := os.Remove(b.Addr); err != nil {
		return false, err
	}
	return true, nil
}

// Opened is false outside Linux: every path is judged as written.
func Opened(string) bool { return false }

// Display returns addr: outside Linux the kernel's names are the callers' paths.
func Display(addr string) string { return addr }
