package main

import (
	"context"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/policy"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Under .ci/cover the binaries this test starts are built with coverage (GOFLAGS); go test
	// points GOCOVERDIR at a directory it then ignores, so their counters go where the script
	// collects them.
	if d := os.Getenv("SOCKAGENT_GOCOVERDIR"); d != "" {
		_ = os.Setenv("GOCOVERDIR", d)
	}
	// The soak starts this binary again as its killed clients (see main).
	if addr := os.Getenv(clientEnv); addr != "" {
		os.Exit(soakClient(addr, os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// soakEnv, set to a duration (60s in .ci/run), runs TestSoak.
const soakEnv = "SOCKLOAD_SOAK"

// TestSoak runs the soak for $SOCKLOAD_SOAK against a sockagent process it builds: the mixed
// load with clients killed with SIGKILL, judged on the slopes and the return to baseline.
func TestSoak(t *testing.T) {
	v := os.Getenv(soakEnv)
	if v == "" {
		t.Skip("set " + soakEnv + "=60s to run the soak (.ci/run does)")
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", soakEnv, v, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+3*time.Minute)
	defer cancel()
	var stdout, stderr strings.Builder
	code := run(ctx, []string{"-soak", d.String(), "-soak-warmup", "10s", "-soak-interval", "2s", "-workers", "8"}, &stdout, &stderr)
	t.Logf("\n%s", stdout.String())
	if code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, stderr.String())
	}
	for _, re := range []string{
		`(?m)^  open/use/close cycles +[1-9]\d* `,
		`(?m)^  Attach streams +[1-9]\d* `,
		`(?m)^  scenario loops in sessions +[1-9]\d* `,
		`(?m)^  client processes killed with SIGKILL +[1-9]\d*$`,
		`(?m)^open sockets +baseline 0, peak [1-9]\d*, after 0 `,
	} {
		if !regexp.MustCompile(re).MatchString(stdout.String()) {
			t.Errorf("no line matching %s", re)
		}
	}
}

// TestShortSoak runs the whole soak briefly against a sockagent process it builds: every kind
// of load ran, client processes were killed, samples came at the interval, and the agent was
// back to no open sockets after the load. Ten seconds are too few for the slopes to mean
// anything, so a verdict against them is accepted; a failure of the load itself (wrong bytes,
// an RPC error) or sockets left open is not.
func TestShortSoak(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr strings.Builder
	start := time.Now()
	code := run(ctx, []string{"-soak", "10s", "-soak-warmup", "0s", "-soak-ramp", "2s", "-soak-interval", "500ms",
		"-soak-settle", "10s", "-workers", "2"}, &stdout, &stderr)
	elapsed := time.Since(start)
	t.Logf("\n%s", stdout.String())
	verdictOnly := code == 1 && strings.Contains(stderr.String(), "sockload: soak failed: ") &&
		!strings.Contains(stderr.String(), "sockload: soak: ")
	if code != 0 && !verdictOnly {
		t.Fatalf("exit %d\nstderr:\n%s", code, stderr.String())
	}
	if elapsed < 10*time.Second || elapsed > 90*time.Second {
		t.Errorf("the soak took %s, want the 10s load and at most the settle bound and a build more", elapsed)
	}
	for _, re := range []string{
		`(?m)^soak +10s of load after 0s of warm-up, a sample every 500ms \((1\d|20) after the 2s ramp judged\), 2 cycle workers$`,
		`(?m)^  open/use/close cycles +[1-9]\d* \(\d+/s\)$`,
		`(?m)^  Attach streams +[1-9]\d* \(\d+/s\)$`,
		`(?m)^  scenario loops in sessions +[1-9]\d* \(\d+/s\)$`,
		`(?m)^  client processes killed with SIGKILL +[1-9]\d*$`,
		`(?m)^  settled after the load in +\d+\.\ds$`,
		`(?m)^open sockets +baseline 0, peak [1-9]\d*, after 0 \(at most \+0\); slope `,
		`(?m)^rss +baseline [0-9.]+ MiB, peak [0-9.]+ MiB, after [0-9.]+ MiB \(at most \+24\.0 MiB\); slope [-+][0-9.]+MiB/min \(at most 4\.00\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(stdout.String()) {
			t.Errorf("no line matching %s", re)
		}
	}
	if n := strings.Count(stderr.String(), "soak: "); n < 10 {
		t.Errorf("%d progress lines, want a baseline and a sample every 500ms", n)
	}
}

// TestSmallRun runs every phase with small counts against a sockagent process it builds, and
// checks the figures it prints.
func TestSmallRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr strings.Builder
	code := run(ctx, []string{"-conns", "300", "-blocking", "100", "-cycles", "300", "-inproc-cycles", "300", "-workers", "8"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	for _, re := range []string{
		`(?m)^connections held at once +300$`,
		`(?m)^  agent RSS per connection +[0-9.]+ KiB$`,
		`(?m)^  agent fds idle -> holding +(\d+) -> \d+$`,
		`(?m)^concurrent blocking Recv +100 pending at once`,
		`(?m)^concurrent blocking Accept +100 pending at once`,
		`(?m)^open/use/close cycles \(agent process\) +300 in `,
		`(?m)^  agent open sockets after +0$`,
		`(?m)^  goroutines before -> after +(\d+) -> (\d+)$`,
	} {
		if !regexp.MustCompile(re).MatchString(stdout.String()) {
			t.Errorf("no line matching %s", re)
		}
	}
}

// TestSoakClientUnreachable: a soak client that cannot reach its agent exits 1 saying why, and
// never says ready.
func TestSoakClientUnreachable(t *testing.T) {
	var stdout, stderr strings.Builder
	start := time.Now()
	code := soakClient(closedAddr(t), &stdout, &stderr)
	if code != 1 || stdout.Len() != 0 || !strings.HasPrefix(stderr.String(), "sockload soak client: open session: ") ||
		!strings.Contains(stderr.String(), "Unavailable") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, and open session: ... Unavailable", code, stdout.String(), stderr.String())
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("took %s; an unreachable agent fails the first call at once", el)
	}
}

// TestAgentUnusable: an agent that cannot be started or reached ends the run with exit 1,
// saying what failed, and with no figure measured.
func TestAgentUnusable(t *testing.T) {
	noPhases := []string{"-conns", "1", "-blocking", "0", "-cycles", "0", "-inproc-cycles", "0", "-timeout", "20s"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"binary missing", []string{"-sockagent", "/nonexistent/sockagent"}, "sockload: fork/exec /nonexistent/sockagent: no such file or directory"},
		{"nothing at -agent", []string{"-agent", closedAddr(t)}, "sockload: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var stdout, stderr strings.Builder
			code := run(ctx, append(tc.args, noPhases...), &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tc.want) || strings.Contains(stdout.String(), "connections held") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", code, stdout.String(), stderr.String(), tc.want)
			}
		})
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"-conns", "-1"}, {"-workers", "0"}, {"extra"}, {"-nope"},
		{"-soak", "1s"}, {"-soak", "25h"}, {"-soak", "1m", "-soak-interval", "10s"}, {"-soak", "1m", "-soak-ramp", "31s"},
		{"-soak", "1m", "-soak-settle", "9s"}, {"-soak", "1m", "-soak-warmup", "-1s"}} {
		var stdout, stderr strings.Builder
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 || stdout.Len() != 0 {
			t.Errorf("sockload %v: exit %d, stdout %q; want 2 and nothing", args, code, stdout.String())
		}
	}
}

// TestPrintPolicy: the printed policy parses and allows the counts asked for.
func TestPrintPolicy(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run(context.Background(), []string{"-print-policy", "-conns", "12000"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, err := policy.Parse("printed", []byte(stdout.String())); err != nil {
		t.Fatalf("printed policy: %v\n%s", err, stdout.String())
	}
	if !strings.Contains(stdout.String(), "sockets: 12064\n") {
		t.Errorf("policy does not allow 12000 connections:\n%s", stdout.String())
	}
}
