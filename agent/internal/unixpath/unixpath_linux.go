//go:build linux

package unixpath

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

const (
	// procFD names an open file to the kernel: "/proc/self/fd/N" is file N itself, with no
	// path to resolve again.
	procFD = "/proc/self/fd/"
	// sunPath is the size of sockaddr_un.sun_path: the longest address bind takes.
	sunPath = 108
	// pathFlags open one component without following it or opening it for I/O.
	pathFlags = unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
	// maxLinks is how many symlinks one path may go through, as the kernel allows.
	maxLinks = 40
)

// Target is a UNIX socket path opened for connect or sendto; Close it once the call is done.
type Target struct {
	// Path is the caller's path, cleaned; Real is the file opened, with the symlinks on the way
	// resolved: the path the policy must judge.
	Path, Real string
	// Addr is what connect or sendto must be given: the file opened, resolved by nothing else.
	Addr string
	fd   int
}

// OpenTarget opens the file a UNIX socket path names, following symlinks (at most 40) by
// reading them, never through the kernel.
func OpenTarget(p string) (*Target, error) {
	dir, name, err := Split(p)
	if err != nil {
		return nil, err
	}
	clean := join(dir, name)
	links := 0
	for {
		fd, real, err := walkDir(dir, &links)
		if err != nil {
			return nil, err
		}
		f, err := unix.Openat(fd, name, pathFlags, 0)
		if err != nil {
			_ = unix.Close(fd)
			return nil, &os.PathError{Op: "open", Path: join(real, name), Err: err}
		}
		target, isLink, err := linkTarget(f)
		_ = unix.Close(fd)
		if err != nil {
			_ = unix.Close(f)
			return nil, &os.PathError{Op: "readlink", Path: join(real, name), Err: err}
		}
		if !isLink {
			return &Target{Path: clean, Real: join(real, name), Addr: procFD + strconv.Itoa(f), fd: f}, nil
		}
		_ = unix.Close(f)
		if links++; links > maxLinks {
			return nil, &os.PathError{Op: "open", Path: clean, Err: unix.ELOOP}
		}
		if !strings.HasPrefix(target, "/") {
			target = join(real, target)
		}
		dir, name = rawSplit(target)
		if name == "" || name == "." || name == ".." {
			// A link to a directory: connect would refuse it too.
			return nil, &os.PathError{Op: "connect", Path: clean, Err: unix.ECONNREFUSED}
		}
	}
}

// Close closes the file opened; Addr means nothing after it.
func (t *Target) Close() error {
	if t == nil || t.fd < 0 {
		return nil
	}
	err := unix.Close(t.fd)
	t.fd = -1
	return err
}

// Bound is the directory a UNIX socket is bound in, held open for the socket's life: the bind
// goes through it, and so does the removal of the socket's file at close.
type Bound struct {
	// Path is the caller's path, cleaned; Real is the path of the directory opened plus the
	// name, symlinks resolved: the path the policy must judge.
	Path, Real string
	// Addr is what bind must be given: the name in the directory opened.
	Addr string

	mu        sync.Mutex
	dir       int // -1 once closed
	realDir   string
	name      string
	committed bool // bind succeeded and dev, ino are the socket file's
	dev, ino  uint64
}

// OpenBind opens the directory of a UNIX socket path for a bind, following symlinks (at most
// 40) by reading them, never through the kernel. The name must not exist (bind refuses it).
func OpenBind(p string) (*Bound, error) {
	dir, name, err := Split(p)
	if err != nil {
		return nil, err
	}
	links := 0
	fd, real, err := walkDir(dir, &links)
	if err != nil {
		return nil, err
	}
	addr := procFD + strconv.Itoa(fd) + "/" + name
	if len(addr) > sunPath {
		_ = unix.Close(fd)
		return nil, &os.PathError{Op: "bind", Path: join(dir, name), Err: &nameError{name: name, max: sunPath - len(addr) + len(name)}}
	}
	return &Bound{Path: join(dir, name), Real: join(real, name), Addr: addr, dir: fd, realDir: real, name: name}, nil
}

// nameError is a socket name too long for the address bind is given; it is an EINVAL, as the
// kernel would answer.
type nameError struct {
	name string
	max  int
}

func (e *nameError) Error() string {
	return fmt.Sprintf("socket name %q is %d bytes, at most %d fit in a UNIX address; use a shorter name (the directory's length does not count)", e.name, len(e.name), e.max)
}

func (e *nameError) Unwrap() error { return unix.EINVAL }

// Commit records the socket file a successful bind created (its device and inode), so Close
// removes that file and no other. A name that is not a socket right after the bind was
// replaced by someone else: Commit fails and Close will remove nothing.
func (b *Bound) Commit() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir < 0 {
		return &os.PathError{Op: "stat", Path: b.Real, Err: os.ErrClosed}
	}
	var st unix.Stat_t
	if err := unix.Fstatat(b.dir, b.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "stat", Path: b.Real, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return &os.PathError{Op: "stat", Path: b.Real, Err: errReplaced}
	}
	b.committed, b.dev, b.ino = true, uint64(st.Dev), st.Ino
	names.add(b.dir, b.realDir)
	return nil
}

// Close removes the socket file Commit recorded, through the directory handle and only while
// that name is still the same socket file, and closes the handle. It reports whether the file
// was removed. Later calls do nothing.
func (b *Bound) Close() (removed bool, err error) {
	if b == nil {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir < 0 {
		return false, nil
	}
	if b.committed {
		names.remove(b.dir)
		var st unix.Stat_t
		if unix.Fstatat(b.dir, b.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			st.Mode&unix.S_IFMT == unix.S_IFSOCK && uint64(st.Dev) == b.dev && st.Ino == b.ino {
			if err = unix.Unlinkat(b.dir, b.name, 0); err == nil {
				removed = true
			} else {
				err = &os.PathError{Op: "unlink", Path: b.Real, Err: err}
			}
		}
	}
	_ = unix.Close(b.dir)
	b.dir = -1
	return removed, err
}

// Opened reports whether a kernel address came from OpenTarget or OpenBind (a control hook
// uses it to refuse any path that did not).
func Opened(addr string) bool { return strings.HasPrefix(addr, procFD) }

// Display turns the kernel's name of a socket this process bound ("/proc/self/fd/N/NAME", as
// getsockname, getpeername and recvfrom report it) into its real path while the socket is
// bound; any other address is returned as it is.
func Display(addr string) string {
	rest, ok := strings.CutPrefix(addr, procFD)
	if !ok {
		return addr
	}
	num, name, ok := strings.Cut(rest, "/")
	if !ok {
		return addr
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return addr
	}
	if dir, ok := names.get(n); ok {
		return join(dir, name)
	}
	return addr
}

// names maps the directory handles of bound sockets to their real paths, for Display.
var names = dirNames{m: map[int]string{}}

type dirNames struct {
	mu sync.RWMutex
	m  map[int]string
}

func (d *dirNames) add(fd int, dir string) {
	d.mu.Lock()
	d.m[fd] = dir
	d.mu.Unlock()
}

func (d *dirNames) remove(fd int) {
	d.mu.Lock()
	delete(d.m, fd)
	d.mu.Unlock()
}

func (d *dirNames) get(fd int) (string, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	s, ok := d.m[fd]
	return s, ok
}

// walkDir opens the directory p names, from "/", one component at a time, each relative to
// the one before with O_PATH|O_NOFOLLOW. A symlink is read and its target walked in its
// place; ".." goes to the parent of the directory reached so far. It returns the directory's
// handle and its real path: the names of the directories actually opened.
func walkDir(p string, links *int) (int, string, error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", &os.PathError{Op: "open", Path: "/", Err: err}
	}
	real := "/"
	rest := components(p)
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if c == ".." {
			// real holds no symlink, so its lexical parent is the physical one: walk it again.
			rest = append(components(parent(real)), rest...)
			if fd, real, err = reroot(fd); err != nil {
				return -1, "", err
			}
			continue
		}
		next, err := unix.Openat(fd, c, pathFlags, 0)
		if err != nil {
			_ = unix.Close(fd)
			return -1, "", &os.PathError{Op: "open", Path: join(real, c), Err: err}
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			_ = unix.Close(next)
			_ = unix.Close(fd)
			return -1, "", &os.PathError{Op: "stat", Path: join(real, c), Err: err}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			_ = unix.Close(fd)
			fd, real = next, join(real, c)
			continue
		case unix.S_IFLNK:
		default:
			_ = unix.Close(next)
			_ = unix.Close(fd)
			return -1, "", &os.PathError{Op: "open", Path: join(real, c), Err: unix.ENOTDIR}
		}
		target, _, err := linkTarget(next)
		_ = unix.Close(next)
		if err == nil && target == "" {
			err = unix.ENOENT
		}
		if *links++; err == nil && *links > maxLinks {
			err = unix.ELOOP
		}
		if err != nil {
			_ = unix.Close(fd)
			return -1, "", &os.PathError{Op: "open", Path: join(real, c), Err: err}
		}
		rest = append(components(target), rest...)
		if strings.HasPrefix(target, "/") {
			if fd, real, err = reroot(fd); err != nil {
				return -1, "", err
			}
		}
	}
	return fd, real, nil
}

// reroot closes fd and opens "/" in its place.
func reroot(fd int) (int, string, error) {
	_ = unix.Close(fd)
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", &os.PathError{Op: "open", Path: "/", Err: err}
	}
	return root, "/", nil
}

// linkTarget reads the symlink f was opened on (O_PATH|O_NOFOLLOW); isLink is false when f is
// not a symlink.
func linkTarget(f int) (target string, isLink bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(f, &st); err != nil {
		return "", false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", false, nil
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(f, "", buf)
	if err != nil {
		return "", true, err
	}
	if n >= len(buf) {
		return "", true, unix.ENAMETOOLONG
	}
	return string(buf[:n]), true, nil
}

// parent is the parent of an absolute real path ("/" for "/").
func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// rawSplit splits a path built from a symlink's target into its directory and last element,
// leaving ".." for walkDir to follow physically.
func rawSplit(p string) (dir, name string) {
	p = strings.TrimRight(p, "/")
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "/", p
	}
	if i == 0 {
		return "/", p[1:]
	}
	return p[:i], p[i+1:]
}

// join appends name to an absolute directory path.
func join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// components splits a path into its non-empty elements.
func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}
