package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// runSockctl runs the built sockctl binary and returns its stdout, stderr and exit code.
func runSockctl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runBin(t, sockctlBin, args...)
}

// runBin runs a binary with args, bounded to 30s, and returns its stdout, stderr and exit code.
func runBin(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	dieWithTest(cmd)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %s: %v", bin, strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// The two binaries against each other: sockctl drives a sockagent process.
func TestSockctlBinary(t *testing.T) {
	t.Parallel()
	p := startLocal(t)
	out, errOut, code := runSockctl(t, "--agent", p.addr, "demo")
	if code != 0 || !strings.Contains(out, "# demo passed: 21 sockctl commands") {
		t.Fatalf("sockctl demo: exit %d\n%s\n%s", code, out, errOut)
	}
	refused := closedPort(t)
	_, errOut, code = runSockctl(t, "--agent", p.addr, "dial", "tcp", refused)
	if code != 1 || !strings.Contains(errOut, "dial tcp "+refused+": CONNECTION_REFUSED (Unavailable)") {
		t.Errorf("refused dial: exit %d, stderr %q", code, errOut)
	}
	out, _, code = runSockctl(t, "--agent", p.addr, "info", "-o", "json")
	if code != 0 || !strings.Contains(out, `"version": "`+binBuild(t, sockagentBin).Version+`"`) || !strings.Contains(out, `"os": "`+runtime.GOOS+`"`) {
		t.Errorf("info: exit %d\n%s", code, out)
	}
	out, errOut, code = runSockctl(t, "--agent", p.addr, "version")
	host, _ := os.Hostname()
	wantVersion := "sockctl " + binBuild(t, sockctlBin).String() + "\n" +
		"agent " + binBuild(t, sockagentBin).Version + " (" + p.addr + ", host " + host + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if code != 0 || out != wantVersion || errOut != "" {
		t.Errorf("version: exit %d\nstdout %q\nwant   %q\nstderr %q", code, out, wantVersion, errOut)
	}
	out, _, code = runSockctl(t, "--agent", p.addr, "ls")
	if code != 0 || strings.Count(out, "\n") != 1 {
		t.Errorf("ls after the demo: exit %d, want only the header:\n%s", code, out)
	}
	_, errOut, code = runSockctl(t, "--agent", p.addr, "dial", "tcp")
	if code != 2 || !strings.Contains(errOut, "expected NETWORK ADDRESS") {
		t.Errorf("usage error: exit %d, stderr %q", code, errOut)
	}
	if c := p.stop(t); c != 0 {
		t.Errorf("sockagent exit code %d after SIGTERM", c)
	}
}
