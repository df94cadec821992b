package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/policy"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"-conns", "-1"}, {"-workers", "0"}, {"extra"}, {"-nope"}} {
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
