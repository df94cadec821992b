package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// nobody is the unprivileged local user of the attacks.
const nobody = 65534

// needRoot skips a test that must change users, or fails it under CI.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test runs commands as another user: run it as root (CI is set, so it may not skip)")
	}
	t.Skip("needs root to run commands as another user")
}

// runAs runs bin as uid (and gid) with args, bounded to 30s, and returns its stdout, stderr
// and exit code.
func runAs(t *testing.T, uid uint32, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	dieWithTest(cmd)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %s as uid %d: %v", bin, strings.Join(args, " "), uid, err)
	}
	return out.String(), errOut.String(), code
}

// sharedDir is a directory every user may enter and read, holding a copy of sockctl that
// every user may run.
func sharedDir(t *testing.T) (dir, sockctl string) {
	t.Helper()
	dir = shortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sockctl = filepath.Join(dir, "sockctl")
	copyExecutable(t, sockctlBin, sockctl)
	return dir, sockctl
}

// copyExecutable copies the program src to dst, which every user may run.
func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLocalUserCannotBorrowTheAgent: an agent run as root on its default kind of endpoint (a
// UNIX socket, created mode 0600) cannot be used by another local user to reach what that user
// cannot reach: through it, uid 65534 gets no further than the agent's socket, and a root-only
// socket under /tmp accepts nothing. The agent's own user is the caller uid:0.
func TestLocalUserCannotBorrowTheAgent(t *testing.T) {
	t.Parallel()
	needRoot(t)
	dir, sockctl := sharedDir(t)
	agentSock := filepath.Join(dir, "agent.sock")
	start(t, sockagentBin, "--listen", "unix:"+agentSock)
	if fi, err := os.Lstat(agentSock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent socket %v (%v), want mode 0600", fi.Mode(), err)
	}

	private := shortTempDir(t) // 0700, root's
	rootOnly := filepath.Join(private, "secret.sock")
	ln, err := net.Listen("unix", rootOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	_, stderr, code := runAs(t, nobody, sockctl, "--agent", "unix:"+agentSock, "dial", "unix", rootOnly)
	if code != 1 || !strings.Contains(stderr, "permission denied") {
		t.Errorf("sockctl as uid %d through the agent: exit %d, stderr %q; want 1 and permission denied on the agent's socket", nobody, code, stderr)
	}
	if err := ln.(*net.UnixListener).SetDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Errorf("the root-only socket accepted a connection made for uid %d", nobody)
	}

	stdout, stderr, code := runSockctl(t, "--agent", "unix:"+agentSock, "-o", "json", "listen", "tcp", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("sockctl as root: exit %d: %s", code, stderr)
	}
	var r sockagentv1.ListenResponse
	if err := protojson.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("listen output %q: %v", stdout, err)
	}
	if got := r.GetSocket().GetOwner(); got != "uid:0" {
		t.Errorf("owner %q, want uid:0: a UNIX socket's caller is its peer's user", got)
	}
}

// TestDefaultPolicyKeepsOthersSocketsOut: a root agent with the default policy, reached by an
// authenticated caller (uid 65534 with a token, over loopback TCP), refuses POLICY_DENIED to
// dial a root-only socket under /tmp or to create a socket in a root-only directory there,
// and touches neither; a socket in the agent's socket directory, which the caller could not
// reach itself, it dials.
func TestDefaultPolicyKeepsOthersSocketsOut(t *testing.T) {
	t.Parallel()
	needRoot(t)
	dir, sockctl := sharedDir(t)
	tokens := filepath.Join(t.TempDir(), "tokens") // the agent's: root's alone
	if err := os.WriteFile(tokens, []byte("local:local-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clientToken := filepath.Join(dir, "token") // the caller's: uid 65534's alone
	if err := os.WriteFile(clientToken, []byte("local-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(clientToken, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	p := startLocal(t, "--token-file", tokens)
	if fi, err := os.Lstat(p.socketDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory %s: %v (%v), want mode 0700", p.socketDir, fi, err)
	}

	private := shortTempDir(t) // 0700, root's, like /tmp/tmux-0
	rootOnly := filepath.Join(private, "default")
	victim := listenCountingAt(t, rootOnly)
	inDir := filepath.Join(p.socketDir, "peer.sock")
	peer := listenCountingAt(t, inDir)

	caller := []string{"--agent", p.addr, "--token-file", clientToken}
	sockctlAs := func(args ...string) (string, string, int) {
		return runAs(t, nobody, sockctl, append(caller, args...)...)
	}
	for _, args := range [][]string{
		{"dial", "unix", rootOnly},
		{"listen", "unix", filepath.Join(private, "new.sock")},
		{"bind", "unixgram", filepath.Join(private, "new.dg")},
		{"dial", "unix", "/tmp/.X11-unix/X0"},
	} {
		_, stderr, code := sockctlAs(args...)
		if code != 1 || !strings.Contains(stderr, "POLICY_DENIED") || !strings.Contains(stderr, `"unix_paths.allow"`) {
			t.Errorf("sockctl %s as uid %d: exit %d, stderr %q; want 1 and POLICY_DENIED by unix_paths.allow", strings.Join(args, " "), nobody, code, stderr)
		}
	}
	if ents, err := os.ReadDir(private); err != nil || len(ents) != 1 {
		t.Errorf("the root-only directory holds %v (%v), want only its socket", ents, err)
	}
	stdout, stderr, code := sockctlAs("dial", "unix", inDir)
	if code != 0 {
		t.Fatalf("sockctl dial unix %s as uid %d: exit %d: %s", inDir, nobody, code, stderr)
	}
	if !strings.Contains(stdout, inDir) {
		t.Errorf("dial output %q does not name %s", stdout, inDir)
	}
	stdout, _, code = sockctlAs("info")
	if code != 0 || !strings.Contains(stdout, "\nsocket dir:") || !strings.Contains(stdout, " "+p.socketDir+"\n") {
		t.Errorf("sockctl info as uid %d: exit %d, output lacks \"socket dir: %s\":\n%s", nobody, code, p.socketDir, stdout)
	}
	if n := peer.settle(1); n != 1 {
		t.Errorf("the socket in the socket directory got %d connections, want 1", n)
	}
	if n := victim.settle(0); n != 0 {
		t.Errorf("the root-only socket got %d connections made for uid %d", n, nobody)
	}
}

// countingListener accepts on a UNIX stream socket and counts the connections.
type countingListener struct {
	ln    net.Listener
	n     atomic.Int64
	owner sync.WaitGroup
}

// listenCountingAt listens on path until the test ends or settle is called.
func listenCountingAt(t *testing.T, path string) *countingListener {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := &countingListener{ln: ln}
	c.owner.Add(1)
	go func() {
		defer c.owner.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.n.Add(1)
			conn.Close()
		}
	}()
	t.Cleanup(func() { c.settle(0) })
	return c
}

// settle waits (at most 2s) for want connections, stops listening and returns the count.
func (c *countingListener) settle(want int64) int64 {
	for end := time.Now().Add(2 * time.Second); c.n.Load() < want && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	_ = c.ln.Close()
	c.owner.Wait()
	return c.n.Load()
}
