package ctl

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// listen --accept --attach is nc -l: one connection, both directions, and nothing left on
// the agent afterwards.
func TestListenAcceptAttach(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	target := closedPort(t)
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), []string{"--agent", addr, "listen", "tcp", target, "--accept", "--attach", "--wait", "10s"},
			nil, strings.NewReader("hello from nc -l\n"), &stdout, &stderr)
	}()
	var c net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for { // until sockctl listens
		var err error
		if c, err = net.Dial("tcp", target); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", target, err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c) // until sockctl's stdin ended and it shut its side
	if err != nil || string(got) != "hello from nc -l\n" {
		t.Errorf("peer read %q, %v", got, err)
	}
	select {
	case code := <-done:
		if code != ExitOK || stdout.String() != "ping" {
			t.Errorf("exit %d, stdout %q, want 0 and ping; stderr:\n%s", code, stdout.String(), stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listen --accept --attach did not end when both sides had")
	}
	if !strings.HasPrefix(stderr.String(), "listening on "+target+" (s") || !strings.Contains(stderr.String(), "\nconnection from "+c.LocalAddr().String()+" (s") {
		t.Errorf("stderr does not say where it listened and who connected:\n%s", stderr.String())
	}
	if r := ok(t, addr, "ls", "-o", "id"); r.stdout != "" {
		t.Errorf("sockets left on the agent: %q", r.stdout)
	}
	if r := ok(t, addr, "sessions", "ls", "-o", "id"); r.stdout != "" {
		t.Errorf("sessions left on the agent: %q", r.stdout)
	}
}

func TestListenAttachUsage(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"listen", "tcp", "127.0.0.1:0", "--accept"}, "--accept and --attach go together (nc -l)"},
		{[]string{"listen", "tcp", "127.0.0.1:0", "--attach"}, "--accept and --attach go together (nc -l)"},
		{[]string{"listen", "tcp", "127.0.0.1:0", "--accept", "--attach", "--lease", "100ms"}, "--lease 100ms: give 1s up to 24h0m0s"},
		{[]string{"listen", "tcp", "127.0.0.1:0", "--accept", "--attach", "--wait", "-1s"}, "--wait must not be negative"},
		{[]string{"listen", "udp", "127.0.0.1:0", "--accept", "--attach"}, `unknown network "udp"`},
		{[]string{"connect", "tcp", "127.0.0.1:1", "--lease", "25h"}, "--lease 25h0m0s: give 1s up to 24h0m0s"},
	} {
		sockctl(t, addr, tc.args...).want(t, ExitUsage, nil, []string{tc.want})
	}
}

// A listener nobody connects to within --wait: TIMEOUT, and the listener is closed.
func TestListenAcceptTimeout(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	r := sockctl(t, addr, "listen", "tcp", "127.0.0.1:0", "--accept", "--attach", "--wait", "100ms")
	r.want(t, ExitFailure, nil, []string{"listening on 127.0.0.1:", ": TIMEOUT (DeadlineExceeded)"})
	if r := ok(t, addr, "ls", "-o", "id"); r.stdout != "" {
		t.Errorf("sockets left on the agent: %q", r.stdout)
	}
}
