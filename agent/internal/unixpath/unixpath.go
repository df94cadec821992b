// Package unixpath resolves the UNIX socket paths callers give the agent exactly once, and
// hands the kernel what was resolved instead of the path.
//
// A path is resolved again by every system call that takes it, so a check on a path and a bind,
// connect or unlink on the same path may reach two different files when another user swaps a
// directory for a symlink in between; as root, that lets a local user create, reach or delete
// sockets and files anywhere. On Linux this package walks the path from "/" itself, opening
// each component with O_PATH|O_NOFOLLOW relative to the one before and following symlinks by
// reading them (so the real path it reports is the one it opened), then gives the kernel
// "/proc/self/fd/N/NAME" (bind: N is the directory opened) or "/proc/self/fd/N" (connect: N is
// the socket file opened), which the kernel resolves through the open file and nothing else.
// A bound socket's file is removed at close only through the same directory handle, and only
// while it is still the socket bound there (same device and inode).
//
// Elsewhere the path is used as written and the removal checks the file with os.SameFile; the
// race stays open there, and docs/security.md says so.
package unixpath

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// Split returns the directory and the name of a UNIX socket path: absolute, without NUL bytes
// or ".." elements (a ".." after a symlink would mean its target's parent, not what the text
// says). The name is the last element of the cleaned path and must not be empty.
func Split(p string) (dir, name string, err error) {
	switch {
	case !filepath.IsAbs(p):
		return "", "", fmt.Errorf("UNIX socket path %q is not absolute", p)
	case strings.ContainsRune(p, 0):
		return "", "", fmt.Errorf("UNIX socket path %q contains a NUL byte", p)
	case slices.Contains(strings.Split(filepath.ToSlash(p), "/"), ".."):
		return "", "", fmt.Errorf("UNIX socket path %q contains \"..\"", p)
	}
	clean := filepath.Clean(p)
	dir, name = filepath.Split(clean)
	if name == "" {
		return "", "", fmt.Errorf("UNIX socket path %q names no file (it is the root directory)", p)
	}
	return filepath.Clean(dir), name, nil
}

// errReplaced says the name bound is no longer a socket right after the bind.
var errReplaced = errorString("the socket file was replaced right after the bind; bind again")

type errorString string

func (e errorString) Error() string { return string(e) }
