package ctl

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

var socketIDRE = regexp.MustCompile(`^s[0-9a-f]{6}-[0-9]+$`)

// lines splits output into its lines, failing on output that does not end with a newline.
func lines(t *testing.T, out string) []string {
	t.Helper()
	if out == "" {
		return nil
	}
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("output does not end with a newline: %q", out)
	}
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

// -o id prints just the ids, one a line, of the sockets a command prints.
func TestOutputID(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	one := func(args ...string) string {
		t.Helper()
		r := ok(t, addr, append([]string{"-o", "id"}, args...)...)
		l := lines(t, r.stdout)
		if len(l) != 1 || !socketIDRE.MatchString(l[0]) || r.stderr != "" {
			t.Fatalf("sockctl -o id %s: stdout %q stderr %q, want one socket id", strings.Join(args, " "), r.stdout, r.stderr)
		}
		return l[0]
	}
	var l sockagentv1.ListenResponse
	okJSON(t, addr, &l, "listen", "tcp", "127.0.0.1:0")
	lis := l.GetSocket().GetSocketId()
	cli := one("dial", "tcp", l.GetSocket().GetLocalAddress())
	srv := one("accept", lis, "--wait", "5s")
	if got := lines(t, ok(t, addr, "ls", "-o", "id").stdout); strings.Join(got, " ") != strings.Join([]string{lis, cli, srv}, " ") {
		t.Errorf("ls -o id: %q, want %s %s %s", got, lis, cli, srv)
	}
	if got := one("get", cli); got != cli {
		t.Errorf("get -o id: %s, want %s", got, cli)
	}
	if got := one("shutdown", cli, "write"); got != cli {
		t.Errorf("shutdown -o id: %s, want %s", got, cli)
	}
	for _, id := range []string{srv, cli, lis} {
		if got := one("close", id); got != id {
			t.Errorf("close -o id: %s, want %s", got, id)
		}
	}
	b := one("bind", "udp", "127.0.0.1:0")
	ok(t, addr, "close", b)
	if r := ok(t, addr, "ls", "-o", "id"); r.stdout != "" {
		t.Errorf("ls -o id of no sockets: %q, want nothing", r.stdout)
	}
}

// sockctl sessions open, keepalive, ls and close; --session (or $SOCKCTL_SESSION) puts the
// sockets a command opens in the session, and closing it closes them.
func TestSessionsCommands(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	r := ok(t, addr, "-o", "id", "sessions", "open", "--ttl", "1m", "--name", "my test")
	ids := lines(t, r.stdout)
	if len(ids) != 1 || !regexp.MustCompile(`^[0-9a-f-]{8,}$`).MatchString(ids[0]) {
		t.Fatalf("sessions open -o id: %q, want one session id", r.stdout)
	}
	sid := ids[0]
	r = ok(t, addr, "sessions", "ls")
	want := regexp.MustCompile(`^SESSION +NAME +TTL +EXPIRES IN +SOCKETS\n` + regexp.QuoteMeta(sid) + ` +my test +1m0s +(59s|1m0s) +0\n$`)
	if !want.MatchString(r.stdout) {
		t.Errorf("sessions ls:\n%s\nwant %s", r.stdout, want)
	}
	// Sockets opened with --session, or with $SOCKCTL_SESSION, are in the session.
	lis := strings.TrimSpace(ok(t, addr, "-o", "id", "--session", sid, "listen", "tcp", "127.0.0.1:0").stdout)
	env := invocation{env: map[string]string{envSession: sid}, args: []string{"--agent", addr, "-o", "id", "bind", "udp", "127.0.0.1:0"}}.exec(t)
	if env.code != ExitOK {
		t.Fatalf("bind with $SOCKCTL_SESSION: %+v", env)
	}
	var g sockagentv1.GetSocketResponse
	for _, id := range []string{lis, strings.TrimSpace(env.stdout)} {
		okJSON(t, addr, &g, "get", id)
		if g.GetSocket().GetSessionId() != sid {
			t.Errorf("socket %s in session %q, want %s", id, g.GetSocket().GetSessionId(), sid)
		}
	}
	var ka sockagentv1.KeepAliveResponse
	okJSON(t, addr, &ka, "sessions", "keepalive", sid)
	if ka.GetSession().GetSockets() != 2 || ka.GetSession().GetName() != "my test" {
		t.Errorf("keepalive: %v, want the session with 2 sockets", ka.GetSession())
	}
	r = ok(t, addr, "sessions", "close", sid)
	if r.stdout != "closed session "+sid+": 2 sockets closed\n" {
		t.Errorf("sessions close: %q", r.stdout)
	}
	if r := ok(t, addr, "ls", "-o", "id"); r.stdout != "" {
		t.Errorf("sockets left after the session closed: %q", r.stdout)
	}
	if r := ok(t, addr, "sessions", "ls", "-o", "id"); r.stdout != "" {
		t.Errorf("sessions left: %q", r.stdout)
	}
	sockctl(t, addr, "sessions", "keepalive", sid).want(t, ExitFailure, nil, []string{"sockctl: keep session " + sid + " alive: UNKNOWN_SESSION (NotFound)"})
	sockctl(t, addr, "sessions", "close", sid).want(t, ExitFailure, nil, []string{"sockctl: close session " + sid + ": UNKNOWN_SESSION (NotFound)"})
	sockctl(t, addr, "sessions", "open", "--ttl", "500ms").want(t, ExitUsage, nil, []string{"--ttl 500ms: give 1s up to 24h0m0s"})
	sockctl(t, addr, "sessions").want(t, ExitUsage, nil, []string{"sessions needs a command: open, keepalive, close or ls"})
}

// keepalive --every keeps a session of 4s alive past its TTL until interrupted, then exits 0.
// (4s: the first keepalive must land within one TTL, and the test's own close after the
// interrupt too, on a loaded CI machine; 2s once let the lease run out before that close.)
func TestSessionsKeepAliveEvery(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	sid := strings.TrimSpace(ok(t, addr, "-o", "id", "sessions", "open", "--ttl", "4s").stdout)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--agent", addr, "-o", "id", "sessions", "keepalive", sid, "--every", "200ms"}, nil, nil, &strings.Builder{}, &strings.Builder{})
	}()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ss := sockagentv1.NewSessionServiceClient(cc)
	start := time.Now()
	for time.Since(start) < 10*time.Second { // 2.5 TTLs: gone without the keepalives
		l, err := ss.ListSessions(ctx, &sockagentv1.ListSessionsRequest{})
		if err != nil || len(l.GetSessions()) != 1 {
			t.Fatalf("after %s: sessions %v, %v; want the kept one", time.Since(start), l, err)
		}
		time.Sleep(100 * time.Millisecond) // sampling, not synchronisation
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("keepalive --every: exit %d after interrupt, want 0", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("keepalive --every did not end when interrupted")
	}
	ok(t, addr, "sessions", "close", sid)
}
