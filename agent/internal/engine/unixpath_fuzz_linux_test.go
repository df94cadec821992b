//go:build linux

package engine

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/sockagent/sockagent/agent/internal/unixpath"
)

// FuzzUnixPath feeds random paths to the UNIX path handling: checkUnixPath, then the walk of
// unixpath (OpenTarget for connect, OpenBind for bind), on the path as given and under a tree
// of directories and symlinks (absolute, relative, "..", chains, a loop, a dangling link, a
// file where a directory should be). The walk must agree with checkUnixPath on what a path
// is, open what the kernel would reach by the path (when the kernel reaches anything), report
// a real path that holds no symlink (a link to a directory is refused, as connect would), hand the kernel only a handle, create nothing and leak no
// file descriptor. Seeds live in testdata/fuzz/FuzzUnixPath and run as a plain test.
func FuzzUnixPath(f *testing.F) {
	for _, s := range []string{"real/s.sock", "abs/s.sock", "up/real/x", "loop/x", "/tmp/../etc/x", "@abstract", "/"} {
		f.Add(s)
	}
	root := f.TempDir()
	real := filepath.Join(root, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		f.Fatal(err)
	}
	for _, l := range [][2]string{
		{real, "abs"}, {"real", "rel"}, {"real/..", "up"}, {"abs", "chain"}, {"loop", "loop"},
		{"missing", "dangling"}, {"/", "toroot"}, {"real/s.sock", "sock"}, {"../rel/s.sock", "real/back.sock"},
	} {
		if err := os.Symlink(l[0], filepath.Join(root, l[1])); err != nil {
			f.Fatal(err)
		}
	}
	for _, file := range []string{"file", "real/s.sock"} {
		if err := os.WriteFile(filepath.Join(root, file), nil, 0o600); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, p string) {
		before := countFDs(t)
		checkUnixPathAgrees(t, p)
		if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "@") {
			checkUnixPathAgrees(t, root+"/"+p)
			walkAgrees(t, root+"/"+p)
		}
		walkAgrees(t, p)
		if after := countFDs(t); after != before {
			t.Fatalf("open files %d -> %d after %q: the walk leaks", before, after, p)
		}
		if ents, _ := os.ReadDir(real); len(ents) != 2 {
			t.Fatalf("the tree changed under %q: %v", p, ents)
		}
	})
}

// checkUnixPathAgrees: checkUnixPath and unixpath.Split accept the same non-abstract paths,
// and what they accept is absolute, without NUL or "..", and names a file.
func checkUnixPathAgrees(t *testing.T, p string) {
	err := checkUnixPath("fuzz", p)
	if strings.HasPrefix(p, "@") {
		if err != nil {
			t.Fatalf("checkUnixPath(%q) refused an abstract name: %v", p, err)
		}
		return
	}
	dir, name, serr := unixpath.Split(p)
	if (err == nil) != (serr == nil) {
		t.Fatalf("checkUnixPath(%q) = %v but Split = %v", p, err, serr)
	}
	if err != nil {
		return
	}
	if !strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || slices.Contains(strings.Split(p, "/"), "..") ||
		name == "" || strings.Contains(name, "/") || filepath.Join(dir, name) != filepath.Clean(p) {
		t.Fatalf("accepted %q as %q + %q", p, dir, name)
	}
}

// walkAgrees opens p both ways, checks what was opened against the kernel's own lookup, and
// closes it.
func walkAgrees(t *testing.T, p string) {
	if checkUnixPath("fuzz", p) != nil || strings.HasPrefix(p, "@") {
		return
	}
	kernel, kerr := os.Stat(p)
	tgt, err := unixpath.OpenTarget(p)
	switch {
	case err == nil:
		defer tgt.Close()
		noLinks(t, p, tgt.Real)
		viaHandle, herr := os.Stat(tgt.Addr)
		if herr != nil || !unixpath.Opened(tgt.Addr) || tgt.Path != filepath.Clean(p) {
			t.Fatalf("OpenTarget(%q) = %+v: handle %v", p, tgt, herr)
		}
		if kerr == nil && !os.SameFile(kernel, viaHandle) {
			t.Fatalf("OpenTarget(%q) opened %s, the kernel reaches another file", p, tgt.Real)
		}
	case kerr == nil && !kernel.IsDir() && !errors.Is(err, syscall.ELOOP) && !strings.HasSuffix(p, "/"):
		t.Fatalf("OpenTarget(%q): %v, but the kernel reaches a file there", p, err)
	}
	b, err := unixpath.OpenBind(p)
	if err != nil {
		return
	}
	defer func() {
		if removed, err := b.Close(); removed || err != nil {
			t.Fatalf("Close of an uncommitted bind removed %v, %v", removed, err)
		}
	}()
	noLinks(t, p, filepath.Dir(b.Real))
	dirKernel, derr := os.Stat(filepath.Dir(filepath.Clean(p)))
	dirHandle, herr := os.Stat(filepath.Dir(b.Addr))
	if herr != nil || len(b.Addr) > 108 || filepath.Base(b.Addr) != filepath.Base(filepath.Clean(p)) || unixpath.Display(b.Addr) != b.Addr {
		t.Fatalf("OpenBind(%q) = %+v: handle %v", p, b, herr)
	}
	if derr == nil && !os.SameFile(dirKernel, dirHandle) {
		t.Fatalf("OpenBind(%q) opened %s, the kernel reaches another directory", p, filepath.Dir(b.Real))
	}
}

// noLinks: a real path is absolute, clean and goes through no symlink.
func noLinks(t *testing.T, p, real string) {
	if !filepath.IsAbs(real) || filepath.Clean(real) != real {
		t.Fatalf("%q: real path %q is not absolute and clean", p, real)
	}
	if dir := filepath.Dir(real); dir != "/" {
		if r, err := filepath.EvalSymlinks(dir); err != nil || r != dir {
			t.Fatalf("%q: real path %q goes through a symlink (%s)", p, real, r)
		}
	}
}

// countFDs counts the open files and directories of the process: what the walk opens. Sockets,
// pipes and anonymous inodes are left out, since an earlier test's connection closing late (a
// finalizer, a server's goroutine) would make the count move under the walk.
func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "/") {
			n++
		}
	}
	return n
}
