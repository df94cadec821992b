//go:build !windows

package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sockagent/sockagent/agent/contract"
)

// TestDefaultListen: sockagent with no flags serves on the default UNIX socket, the one sockctl
// calls with no flags, not on a TCP port every local user can reach.
func TestDefaultListen(t *testing.T) {
	if got, want := DefaultConfig().Listen, contract.DefaultAgent(); got != want || !strings.HasPrefix(got, "unix:") {
		t.Errorf("default --listen %q, want %q", got, want)
	}
}

// TestPrivateDir: the default socket's directory is created private, and an existing one that
// others could enter, that is a link, or that belongs to another user is refused with what to do.
func TestPrivateDir(t *testing.T) {
	base := t.TempDir()
	fresh := filepath.Join(base, "fresh")
	if err := privateDir(fresh); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(fresh); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created %v (%v), want a directory of mode 0700", fi.Mode(), err)
	}
	if err := privateDir(fresh); err != nil {
		t.Errorf("an existing private directory: %v", err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	wantErr(t, privateDir(open), "has mode 0755", "chmod 700")
	link := filepath.Join(base, "link")
	if err := os.Symlink(fresh, link); err != nil {
		t.Fatal(err)
	}
	wantErr(t, privateDir(link), "is not a directory (a link or a file)")
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		if err := os.Mkdir(other, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		wantErr(t, privateDir(other), "belongs to uid 65534, not to the agent's uid 0")
	}
}

// TestSocketDir: --socket-dir defaults to "sockets" beside the default control socket, is
// created private, and one that others may enter or that is a link is refused, naming the
// flag; the agent is given the directory checked.
func TestSocketDir(t *testing.T) {
	if got, want := DefaultConfig().SocketDir, filepath.Join(filepath.Dir(contract.DefaultAgentSocket()), "sockets"); got != want {
		t.Errorf("default --socket-dir %q, want %q", got, want)
	}
	if os.Geteuid() == 0 && DefaultSocketDir() != "/run/sockagent/sockets" {
		t.Errorf("root's default --socket-dir %q, want /run/sockagent/sockets", DefaultSocketDir())
	}
	base := t.TempDir()
	setup := func(dir string) *Setup { return &Setup{Config: Config{SocketDir: dir}} }
	s := setup(filepath.Join(base, "sockets") + "/")
	if err := s.MakeSocketDir(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(base, "sockets")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created %v (%v), want a directory of mode 0700", fi, err)
	}
	if s.Agent.SocketDir != filepath.Join(base, "sockets") {
		t.Errorf("agent SocketDir %q", s.Agent.SocketDir)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o1777); err != nil {
		t.Fatal(err)
	}
	s = setup(open)
	wantErr(t, s.MakeSocketDir(), "--socket-dir: agent directory "+open+" has mode", "chmod 700")
	if s.Agent.SocketDir != "" {
		t.Errorf("a refused directory reached the agent: %q", s.Agent.SocketDir)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(filepath.Join(base, "sockets"), link); err != nil {
		t.Fatal(err)
	}
	wantErr(t, setup(link).MakeSocketDir(), "--socket-dir: agent directory "+link+" is not a directory (a link or a file)")
	wantErr(t, setup(filepath.Join(base, "missing", "sockets")).MakeSocketDir(), "--socket-dir: create the agent's directory")
}

// TestListenOwnerOnly: the control socket is created mode 0600 whatever the umask (here 0,
// which would make it 0777), so only the agent's user may connect.
func TestListenOwnerOnly(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0))
	dir, err := os.MkdirTemp("", "sa")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "a.sock")
	ln, err := listenOwnerOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket of mode 0600", fi.Mode())
	}
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one saying %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}
