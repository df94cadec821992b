package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// lockedText is a child's stderr, collected while it runs.
type lockedText struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedText) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s)
}

func (l *lockedText) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// busyPeer plays the far end of a sockctl relay on conn: it writes until the connection
// breaks (bounded in count and time) and reports when its reads end, which is when the
// agent closed its side.
func busyPeer(conn net.Conn) (ended <-chan struct{}) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, _ = io.Copy(io.Discard, conn)
	}()
	go func() {
		chunk := make([]byte, 16<<10)
		deadline := time.Now().Add(60 * time.Second)
		_ = conn.SetWriteDeadline(deadline)
		for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
			if _, err := conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	return done
}

// Every sockctl command that opens sockets for as long as it runs (connect, listen --accept
// --attach) leaves nothing on the agent however it ends: its stdout closed by the reader
// (SIGPIPE, as with '| head -c 1000'), SIGHUP, SIGINT and SIGTERM close at once; SIGKILL
// leaves them to the lease of its session. The built sockctl drives the built
// sockagent; the test then asks the agent for sockets and sessions.
func TestSockctlLeavesNothing(t *testing.T) {
	t.Parallel()
	p := startLocal(t)
	for _, command := range []string{"connect", "listen"} {
		for _, how := range []syscall.Signal{syscall.SIGPIPE, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL} {
			t.Run(command+" "+how.String(), func(t *testing.T) {
				t.Parallel()
				testLeavesNothing(t, p, command, how)
			})
		}
	}
}

var listeningRE = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+) \((s[0-9a-f]+-\d+)\)`)

// child is a sockctl process with its standard streams on pipes.
type child struct {
	cmd        *exec.Cmd
	stdin      *os.File // kept open: the relay's upstream never ends on its own
	stdout     *os.File
	stderr     lockedText
	stderrDone chan struct{}
	listening  chan []string // listen's "listening on ADDR (ID)"
	exited     chan struct{}
}

// startChild starts the built sockctl with args; it dies with the test.
func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(sockctlBin, args...), stderrDone: make(chan struct{}), listening: make(chan []string, 1), exited: make(chan struct{})}
	dieWithTest(c.cmd)
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = stdinR, stdoutW, stderrW
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*os.File{stdinR, stdoutW, stderrW} {
		f.Close()
	}
	c.stdin, c.stdout = stdinW, stdoutR
	go func() {
		_ = c.cmd.Wait() // the status is read from ProcessState
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.exited
		c.stdin.Close()
		c.stdout.Close()
	})
	go func() {
		defer close(c.stderrDone)
		sc := bufio.NewScanner(stderrR)
		for sc.Scan() {
			c.stderr.add(sc.Text() + "\n")
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				c.listening <- m
			}
		}
	}()
	return c
}

// relayPeer starts sockctl's command and connects the far end of its relay, which writes to
// it without pause. It returns the child, the connection's end (closed when the agent closed
// its side), and which of the agent's sockets are the child's.
func relayPeer(t *testing.T, p *proc, command, lease string) (*child, <-chan struct{}, func(*sockagentv1.Socket) bool) {
	t.Helper()
	if command == "connect" {
		peerLis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { peerLis.Close() })
		c := startChild(t, "--agent", p.addr, "connect", "tcp", peerLis.Addr().String(), "--lease", lease)
		conn, err := peerLis.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return c, busyPeer(conn), func(s *sockagentv1.Socket) bool { return s.GetRemoteAddress() == peerLis.Addr().String() }
	}
	c := startChild(t, "--agent", p.addr, "listen", "tcp", "127.0.0.1:0", "--accept", "--attach", "--wait", "30s", "--lease", lease)
	var m []string
	select {
	case m = <-c.listening:
	case <-time.After(20 * time.Second):
		t.Fatalf("sockctl did not say where it listens:\n%s", c.stderr.String())
	}
	conn, err := net.Dial("tcp", m[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return c, busyPeer(conn), func(s *sockagentv1.Socket) bool { return s.GetSocketId() == m[2] || s.GetParentId() == m[2] }
}

// ownedBy counts the agent's sockets that where picks and the sessions they are in, and
// checks they are all in one session.
type ownedBy struct {
	t       *testing.T
	p       *proc
	command string
	where   func(*sockagentv1.Socket) bool
	session string // sockctl's session, found on its sockets
}

func (o *ownedBy) count() (socks, sessions int) {
	ctx := ctxT(o.t)
	l, err := o.p.sockets().ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
	if err != nil {
		o.t.Fatal(err)
	}
	for _, s := range l.GetSockets() {
		if !o.where(s) {
			continue
		}
		socks++
		if o.session == "" {
			o.session = s.GetSessionId()
		}
		if s.GetSessionId() == "" || s.GetSessionId() != o.session {
			o.t.Errorf("socket %s is in session %q, want sockctl's own", s.GetSocketId(), s.GetSessionId())
		}
	}
	ls, err := sockagentv1.NewSessionServiceClient(o.p.conn).ListSessions(ctx, &sockagentv1.ListSessionsRequest{})
	if err != nil {
		o.t.Fatal(err)
	}
	for _, s := range ls.GetSessions() {
		if s.GetSessionId() == o.session {
			sessions++
			if !strings.HasPrefix(s.GetName(), "sockctl "+o.command+" tcp ") {
				o.t.Errorf("sockctl's session is named %q", s.GetName())
			}
		}
	}
	return socks, sessions
}

// end ends the child the way how says: SIGPIPE by closing the reader of its stdout, as head
// does after its bytes; the others as signals.
func (c *child) end(t *testing.T, how syscall.Signal) {
	t.Helper()
	if how == syscall.SIGPIPE {
		c.stdout.Close()
	} else {
		go func() { _, _ = io.Copy(io.Discard, c.stdout) }()
		if err := c.cmd.Process.Signal(how); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("sockctl still running 10s after %s; stderr:\n%s", how, c.stderr.String())
	}
	<-c.stderrDone // all of it read: the pipe's last writer is gone
}

// checkEnd checks how the child ended: by the signal for SIGPIPE (as a shell pipeline
// expects) and SIGKILL, else exit status 1 saying it was cancelled.
func (c *child) checkEnd(t *testing.T, how syscall.Signal) {
	t.Helper()
	ws := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	stderr := c.stderr.String()
	switch how {
	case syscall.SIGPIPE, syscall.SIGKILL:
		if !ws.Signaled() || ws.Signal() != how {
			t.Errorf("sockctl ended with %v, want killed by %s; stderr:\n%s", c.cmd.ProcessState, how, stderr)
		}
		if how == syscall.SIGPIPE && strings.Contains(stderr, "sockctl:") {
			t.Errorf("a closed stdout is not an error to report; stderr:\n%s", stderr)
		}
	default:
		if ws.ExitStatus() != 1 || !strings.Contains(stderr, ": cancelled") {
			t.Errorf("sockctl ended with %v, want exit status 1 saying cancelled; stderr:\n%s", c.cmd.ProcessState, stderr)
		}
	}
}

func testLeavesNothing(t *testing.T, p *proc, command string, how syscall.Signal) {
	// A lease of 5s when sockctl can clean up, so that the lease (expiring 3.3s to 5s after
	// the last keepalive) cannot pass for its cleanup; 1s when it is killed.
	lease := "5s"
	lo, hi := time.Duration(0), 2*time.Second
	if how == syscall.SIGKILL {
		lease = "1s"
		lo, hi = 500*time.Millisecond, 4*time.Second
	}
	c, peerEnded, where := relayPeer(t, p, command, lease)
	// The relay runs: its first 1000 bytes arrive on stdout (head -c 1000).
	if _, err := io.ReadFull(c.stdout, make([]byte, 1000)); err != nil {
		t.Fatalf("read sockctl's stdout: %v; stderr:\n%s", err, c.stderr.String())
	}
	owned := &ownedBy{t: t, p: p, command: command, where: where}
	wantSocks := map[string]int{"connect": 1, "listen": 2}[command]
	if n, m := owned.count(); n != wantSocks || m != 1 {
		t.Fatalf("%d sockets of sockctl's in %d sessions on the agent while it runs, want %d in 1", n, m, wantSocks)
	}
	t0 := time.Now()
	c.end(t, how)
	c.checkEnd(t, how)
	// Nothing of it left on the agent: at once when sockctl could clean up, after the lease
	// (1s, kept alive every 1/3 s) when it was killed.
	for {
		socks, sessions := owned.count()
		if socks == 0 && sessions == 0 {
			break
		}
		if time.Since(t0) > 2*hi {
			t.Fatalf("%s: %d sockets and %d sessions of sockctl's still on the agent after %s; stderr:\n%s", how, socks, sessions, time.Since(t0), c.stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	if el := time.Since(t0); el < lo || el > hi {
		t.Errorf("%s: the agent's sockets closed %s after, want %s..%s", how, el, lo, hi)
	}
	select { // and the peer saw its connection end
	case <-peerEnded:
	case <-time.After(5 * time.Second):
		t.Errorf("%s: the peer's connection still open", how)
	}
}
