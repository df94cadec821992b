package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// TestSocketDirCreated: an agent without Config.SocketDir makes a private directory of its
// own, reports it, allows UNIX sockets there by default, and removes it when it stops.
func TestSocketDirCreated(t *testing.T) {
	t.Parallel()
	for _, stop := range []string{"Close", "Shutdown"} {
		t.Run(stop, func(t *testing.T) {
			t.Parallel()
			a, conn := serveBufconn(t, agent.Config{})
			dir := a.SocketDir()
			fi, err := os.Lstat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.IsDir() || fi.Mode().Perm() != 0o700 || !filepath.IsAbs(dir) || !strings.HasPrefix(dir, os.TempDir()) {
				t.Errorf("socket directory %s: mode %v, want a directory of mode 0700 under %s", dir, fi.Mode(), os.TempDir())
			}
			ctx := ctxT(t)
			info, err := sockagentv1.NewAgentServiceClient(conn).GetInfo(ctx, &sockagentv1.GetInfoRequest{})
			if err != nil || info.GetSocketDir() != dir {
				t.Fatalf("GetInfo socket_dir %q, %v; want %q", info.GetSocketDir(), err, dir)
			}
			sc := sockagentv1.NewSocketServiceClient(conn)
			if _, err := sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "unix", Address: filepath.Join(dir, "l.sock")}); err != nil {
				t.Fatal(err)
			}
			// A file the agent did not create is removed with the directory too: nobody but
			// the agent's user can put one there.
			if err := os.WriteFile(filepath.Join(dir, "left"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if stop == "Close" {
				_ = a.Close()
			} else if err := a.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after %s the socket directory %s is still there: %v", stop, dir, err)
			}
		})
	}
}

// TestSocketDirGiven: a given socket directory is used as it is (cleaned), expands "$SOCKETS"
// in every rule set of the agent's policy, and is left in place when the agent stops.
func TestSocketDirGiven(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pol, err := policy.Parse("p.yaml", []byte("rule_sets:\n  - {name: lab, callers: [anonymous], unix_paths: {allow: [$SOCKETS/lab]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "lab"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the agent's own cleanup closed it
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Errorf("a given socket directory was removed: %v", err)
		}
	})
	e := newEnvWith(t, agent.Config{SocketDir: dir + "/./", Policy: pol})
	ctx := ctxT(t)
	if got := e.a.SocketDir(); got != dir {
		t.Errorf("SocketDir() = %q, want %q", got, dir)
	}
	l := e.listen(t, "unix", filepath.Join(dir, "lab", "l.sock"))
	_, err = e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "unix", Address: filepath.Join(dir, "l.sock")})
	wantDenied(t, err, "unix_paths.allow", "lab")
	if l.GetLocalAddress() != filepath.Join(dir, "lab", "l.sock") {
		t.Errorf("listening on %q", l.GetLocalAddress())
	}
	if pol.RuleSets[0].UnixPaths.Allow[0] != "$SOCKETS/lab" {
		t.Errorf("the caller's policy changed: %v", pol.RuleSets[0].UnixPaths.Allow)
	}
}

func TestSocketDirRefused(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, want string }{
		{"sockets", `agent config: SocketDir "sockets" is not an absolute path`},
		{filepath.Join(t.TempDir(), "missing"), "create it (mode 0700) first"},
		{file, "agent config: SocketDir " + file + " is not a directory"},
	} {
		a, err := agent.New(agent.Config{SocketDir: tc.dir})
		if err == nil {
			_ = a.Close()
			t.Errorf("SocketDir %q accepted", tc.dir)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SocketDir %q: %v, want %q", tc.dir, err, tc.want)
		}
	}
}
