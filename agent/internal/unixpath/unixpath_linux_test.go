//go:build linux

package unixpath

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// tree builds, under a fresh directory: real/ (a directory with a socket s.sock in it),
// abs -> real (absolute link), rel -> real (relative), up -> real/.. , chain -> abs,
// loop -> loop, dangling -> missing, file (a regular file), real/link.sock -> s.sock.
func tree(t *testing.T) (root string, ln net.Listener) {
	t.Helper()
	root = t.TempDir()
	real := filepath.Join(root, "real")
	must(t, os.Mkdir(real, 0o755))
	ln, err := net.Listen("unix", filepath.Join(real, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	must(t, os.Symlink(real, filepath.Join(root, "abs")))
	must(t, os.Symlink("real", filepath.Join(root, "rel")))
	must(t, os.Symlink("real/..", filepath.Join(root, "up")))
	must(t, os.Symlink("abs", filepath.Join(root, "chain")))
	must(t, os.Symlink("loop", filepath.Join(root, "loop")))
	must(t, os.Symlink("missing", filepath.Join(root, "dangling")))
	must(t, os.WriteFile(filepath.Join(root, "file"), nil, 0o600))
	must(t, os.Symlink("s.sock", filepath.Join(real, "link.sock")))
	must(t, os.Symlink(filepath.Join(root, "abs", "s.sock"), filepath.Join(real, "abslink.sock")))
	return root, ln
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// openFDs counts this process's open files.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// The walk follows symlinks itself and reports the directories it opened: Real is the path
// with every link resolved, and the kernel's address reaches the socket through the handle.
func TestOpenTargetWalk(t *testing.T) {
	root, _ := tree(t)
	real := filepath.Join(root, "real")
	sock := filepath.Join(real, "s.sock")
	before := openFDs(t)
	for _, tc := range []struct {
		path, real string
		errno      syscall.Errno
	}{
		{sock, sock, 0},
		{filepath.Join(root, "abs", "s.sock"), sock, 0},
		{filepath.Join(root, "rel", "s.sock"), sock, 0},
		{filepath.Join(root, "up", "real", "s.sock"), sock, 0},
		{filepath.Join(root, "chain", "s.sock"), sock, 0},
		{filepath.Join(real, "link.sock"), sock, 0},
		{filepath.Join(real, "abslink.sock"), sock, 0},
		{filepath.Join(root, "//real/./s.sock"), sock, 0},
		{filepath.Join(root, "loop", "s.sock"), "", syscall.ELOOP},
		{filepath.Join(root, "dangling", "s.sock"), "", syscall.ENOENT},
		{filepath.Join(root, "file", "s.sock"), "", syscall.ENOTDIR},
		{filepath.Join(real, "none.sock"), "", syscall.ENOENT},
	} {
		tgt, err := OpenTarget(tc.path)
		if tc.errno != 0 {
			if !errors.Is(err, tc.errno) {
				t.Errorf("OpenTarget(%s) = %v, want %v", tc.path, err, tc.errno)
			}
			continue
		}
		if err != nil {
			t.Errorf("OpenTarget(%s): %v", tc.path, err)
			continue
		}
		if tgt.Real != tc.real || tgt.Path != filepath.Clean(tc.path) || !strings.HasPrefix(tgt.Addr, "/proc/self/fd/") || !Opened(tgt.Addr) {
			t.Errorf("OpenTarget(%s) = %+v, want real %s", tc.path, tgt, tc.real)
		}
		c, err := net.Dial("unix", tgt.Addr)
		if err != nil {
			t.Errorf("connect through %s (%s): %v", tgt.Addr, tc.path, err)
		} else {
			_ = c.Close()
		}
		must(t, tgt.Close())
		must(t, tgt.Close()) // twice is harmless
	}
	if after := openFDs(t); after != before {
		t.Errorf("open files %d -> %d: the walk leaks handles", before, after)
	}
}

func TestSplitRefuses(t *testing.T) {
	for _, p := range []string{"", "rel/x", "/", "/a/../b", "/a/..", "/a\x00b"} {
		if _, _, err := Split(p); err == nil {
			t.Errorf("Split(%q) accepted it", p)
		}
		if _, err := OpenTarget(p); err == nil {
			t.Errorf("OpenTarget(%q) accepted it", p)
		}
		if _, err := OpenBind(p); err == nil {
			t.Errorf("OpenBind(%q) accepted it", p)
		}
	}
	dir, name, err := Split("/a//b/./c.sock/")
	if err != nil || dir != "/a/b" || name != "c.sock" {
		t.Errorf("Split = %q, %q, %v", dir, name, err)
	}
}

// A bind goes through the directory handle; Display names the socket by its real path; Close
// removes the file and only that file.
func TestBoundLifecycle(t *testing.T) {
	root, _ := tree(t)
	real := filepath.Join(root, "real")
	before := openFDs(t)
	b, err := OpenBind(filepath.Join(root, "rel", "b.sock"))
	must(t, err)
	if b.Real != filepath.Join(real, "b.sock") || b.Path != filepath.Join(root, "rel", "b.sock") {
		t.Fatalf("bound %+v", b)
	}
	ln, err := net.Listen("unix", b.Addr)
	must(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	must(t, b.Commit())
	if got := Display(ln.Addr().String()); got != filepath.Join(real, "b.sock") {
		t.Errorf("Display(%s) = %s, want the real path", ln.Addr(), got)
	}
	if fi, err := os.Lstat(filepath.Join(real, "b.sock")); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket file: %v, %v", fi, err)
	}
	must(t, ln.Close())
	removed, err := b.Close()
	if !removed || err != nil {
		t.Errorf("Close = %v, %v; want the file removed", removed, err)
	}
	if _, err := os.Lstat(filepath.Join(real, "b.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file still there: %v", err)
	}
	if got := Display(ln.Addr().String()); got != ln.Addr().String() {
		t.Errorf("Display after Close = %s; a closed handle's number may name another directory", got)
	}
	if removed, err := b.Close(); removed || err != nil {
		t.Errorf("second Close = %v, %v", removed, err)
	}
	if after := openFDs(t); after != before {
		t.Errorf("open files %d -> %d", before, after)
	}
}

// A file that replaced the socket after the bind (same name, another inode, even another
// socket) is spared at close.
func TestCloseSparesReplacement(t *testing.T) {
	dir := t.TempDir()
	for _, replace := range []string{"file", "socket", "symlink"} {
		t.Run(replace, func(t *testing.T) {
			p := filepath.Join(dir, replace+".sock")
			b, err := OpenBind(p)
			must(t, err)
			pc, err := net.ListenPacket("unixgram", b.Addr)
			must(t, err)
			must(t, b.Commit())
			must(t, os.Remove(p))
			switch replace {
			case "file":
				must(t, os.WriteFile(p, []byte("keep"), 0o600))
			case "socket":
				other, err := net.ListenPacket("unixgram", p)
				must(t, err)
				defer other.Close()
			case "symlink":
				must(t, os.Symlink(filepath.Join(dir, "elsewhere"), p))
			}
			_ = pc.Close()
			if removed, err := b.Close(); removed || err != nil {
				t.Errorf("Close = %v, %v; want nothing removed", removed, err)
			}
			if _, err := os.Lstat(p); err != nil {
				t.Errorf("the replacement was removed: %v", err)
			}
		})
	}
}

// A name too long for a UNIX address through the handle is an EINVAL with a clear message;
// a long directory costs nothing.
func TestBindNameLength(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("d", 200))
	must(t, os.Mkdir(long, 0o755))
	b, err := OpenBind(filepath.Join(long, "ok.sock"))
	must(t, err)
	pc, err := net.ListenPacket("unixgram", b.Addr)
	must(t, err)
	must(t, b.Commit())
	_ = pc.Close()
	if removed, err := b.Close(); !removed || err != nil {
		t.Errorf("Close = %v, %v", removed, err)
	}
	_, err = OpenBind(filepath.Join(dir, strings.Repeat("n", 100)))
	if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "use a shorter name") {
		t.Errorf("long name: %v, want EINVAL saying to use a shorter name", err)
	}
}
