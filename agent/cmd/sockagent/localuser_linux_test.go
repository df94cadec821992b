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
	src, err := os.Open(sockctlBin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sockctl = filepath.Join(dir, "sockctl")
	dst, err := os.OpenFile(sockctl, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, sockctl
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
