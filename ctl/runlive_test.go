package ctl

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The table of 'sockctl run' is live: a step's row is on standard output while the next
// step still waits. Here the accept step waits until the test, having read the listen row
// (and the address in it), connects.
func TestRunRowsAreLive(t *testing.T) {
	t.Parallel()
	path := writeScenario(t, "live.yaml", `agents: {a: local}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: a, accept: {socket: lis, timeout: 20s}, as: conn}
`)
	pr, pw := io.Pipe()
	defer pr.Close() // a test that stops early must not leave the run blocked on a write
	var stderr bytes.Buffer
	done := make(chan int, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		done <- run(ctx, []string{"run", path}, func(string) string { return "" }, nil, pw, &stderr)
		_ = pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	addr := regexp.MustCompile(`127\.0\.0\.1:\d+`)
	var dialed net.Conn
	for lines.Scan() {
		line := lines.Text()
		if dialed == nil && strings.HasPrefix(line, "1 ") {
			a := addr.FindString(line)
			if a == "" {
				t.Fatalf("listen row without the address: %q", line)
			}
			c, err := net.Dial("tcp", a) // ends step 2's wait
			if err != nil {
				t.Fatal(err)
			}
			dialed = c
		}
	}
	if dialed == nil {
		t.Fatal("no listen row before the run ended")
	}
	defer dialed.Close()
	if code := <-done; code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
