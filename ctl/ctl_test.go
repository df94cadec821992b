package ctl

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sockagent/sockagent/agent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// tcpPair opens a listener on 127.0.0.1, accepts (in a goroutine) while dialing it, and
// returns the listener, the accepted (server) socket and the dialed (client) socket.
func tcpPair(t *testing.T, addr string) (lis, server, client *sockagentv1.Socket) {
	t.Helper()
	return streamPair(t, addr, "tcp", "127.0.0.1:0")
}

// streamPair is tcpPair for any stream network and listen address.
func streamPair(t *testing.T, addr, network, address string) (lis, server, client *sockagentv1.Socket) {
	t.Helper()
	var l sockagentv1.ListenResponse
	okJSON(t, addr, &l, "listen", network, address)
	if l.GetSocket().GetSocketId() == "" || l.GetSocket().GetKind() != sockagentv1.SocketKind_SOCKET_KIND_LISTENER {
		t.Fatalf("listen: unexpected socket %v", l.GetSocket())
	}

	acc := make(chan result, 1)
	go func() {
		acc <- sockctl(t, addr, "accept", l.GetSocket().GetSocketId(), "--wait", "10s", "-o", "json")
	}()

	var d sockagentv1.DialResponse
	okJSON(t, addr, &d, "dial", network, l.GetSocket().GetLocalAddress())

	r := <-acc
	if r.code != ExitOK {
		t.Fatalf("accept: exit %d\n%s", r.code, r.stderr)
	}
	var a sockagentv1.AcceptResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &a); err != nil {
		t.Fatalf("accept -o json: %v\n%s", err, r.stdout)
	}
	if got, want := a.GetSocket().GetRemoteAddress(), d.GetSocket().GetLocalAddress(); network != "unix" && got != want {
		t.Fatalf("accepted a connection from %s, want the dialed socket %s", got, want)
	}
	if got, want := a.GetSocket().GetParentId(), l.GetSocket().GetSocketId(); got != want {
		t.Errorf("accepted socket's parent is %q, want %q", got, want)
	}
	return l.GetSocket(), a.GetSocket(), d.GetSocket()
}

// TestTCPExchange re-enacts the textbook TCP client and server entirely through sockctl.
func TestTCPExchange(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	lis, server, client := tcpPair(t, addr)
	lid, sid, cid := lis.GetSocketId(), server.GetSocketId(), client.GetSocketId()

	r := ok(t, addr, "send", cid, "Hello, World!")
	if r.stdout != "sent 13 bytes\n" {
		t.Errorf("send: stdout %q, want %q", r.stdout, "sent 13 bytes\n")
	}
	r = ok(t, addr, "recv", sid, "--exact", "13", "--wait", "5s")
	if r.stdout != "Hello, World!" || r.stderr != "" {
		t.Errorf("recv: stdout %q stderr %q, want exactly the bytes sent and nothing on stderr", r.stdout, r.stderr)
	}

	ok(t, addr, "send", sid, "Hello, client!")
	r = ok(t, addr, "recv", cid, "--exact", "14", "--hex")
	if want := "48656c6c6f2c20636c69656e7421\n"; r.stdout != want {
		t.Errorf("recv --hex: stdout %q, want %q", r.stdout, want)
	}

	// The table shows all three sockets with their counters.
	r = ok(t, addr, "ls")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 4 || !regexp.MustCompile(`^ID +NETWORK +KIND +STATE +LOCAL +REMOTE +SENT +RECV +SESSION +AGE +IDLE$`).MatchString(lines[0]) {
		t.Fatalf("ls: want a header and 3 rows, got:\n%s", r.stdout)
	}
	row := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(cid) + ` +tcp +stream +open +` +
		regexp.QuoteMeta(client.GetLocalAddress()) + ` +` + regexp.QuoteMeta(lis.GetLocalAddress()) + ` +13 +14 +- +[0-9hms]+ +[0-9hms]+$`)
	if !row.MatchString(r.stdout) {
		t.Errorf("ls: no row for the client %s with 13 bytes sent and 14 received:\n%s", cid, r.stdout)
	}
	var g sockagentv1.GetSocketResponse
	okJSON(t, addr, &g, "get", sid)
	if g.GetSocket().GetBytesReceived() != 13 || g.GetSocket().GetBytesSent() != 14 {
		t.Errorf("get %s: counters %v, want 13 received, 14 sent", sid, g.GetSocket())
	}

	// The client half-closes; the server reads end of stream, which is not an error.
	r = ok(t, addr, "shutdown", cid, "write")
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(cid) + ` +tcp +stream +write-shut `).MatchString(r.stdout) {
		t.Errorf("shutdown: want the client row in state write-shut:\n%s", r.stdout)
	}
	r = ok(t, addr, "recv", sid)
	if r.stdout != "" || r.stderr != "EOF\n" {
		t.Errorf("recv after peer shutdown: stdout %q stderr %q, want nothing and EOF", r.stdout, r.stderr)
	}
	var rj sockagentv1.RecvResponse
	okJSON(t, addr, &rj, "recv", sid)
	if !rj.GetEof() || len(rj.GetData()) != 0 {
		t.Errorf("recv -o json after EOF: %v, want eof and no data", &rj)
	}

	for _, id := range []string{cid, sid, lid} {
		var c sockagentv1.CloseResponse
		okJSON(t, addr, &c, "close", id)
		if c.GetSocket().GetState() != sockagentv1.SocketState_SOCKET_STATE_CLOSED || c.GetSocket().GetSocketId() != id {
			t.Errorf("close %s: got %v, want it closed", id, c.GetSocket())
		}
	}
	r = ok(t, addr, "ls")
	if strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("ls after closing everything: want only the header, got:\n%s", r.stdout)
	}
}

// TestUDPExchange re-enacts the textbook UDP client and server.
func TestUDPExchange(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	var a, b sockagentv1.BindResponse
	okJSON(t, addr, &a, "bind", "udp", "127.0.0.1:0")
	okJSON(t, addr, &b, "bind", "udp", "127.0.0.1:0")
	aid, bid := a.GetSocket().GetSocketId(), b.GetSocket().GetSocketId()
	if a.GetSocket().GetKind() != sockagentv1.SocketKind_SOCKET_KIND_DATAGRAM {
		t.Errorf("bind: kind %v, want datagram", a.GetSocket().GetKind())
	}

	r := ok(t, addr, "sendto", aid, b.GetSocket().GetLocalAddress(), "ping")
	if want := "sent 4 bytes to " + b.GetSocket().GetLocalAddress() + "\n"; r.stdout != want {
		t.Errorf("sendto: stdout %q, want %q", r.stdout, want)
	}
	r = ok(t, addr, "recvfrom", bid, "--wait", "5s")
	if r.stdout != "ping" {
		t.Errorf("recvfrom: stdout %q, want %q", r.stdout, "ping")
	}
	if want := "from " + a.GetSocket().GetLocalAddress() + " (4 bytes)\n"; r.stderr != want {
		t.Errorf("recvfrom: stderr %q, want %q", r.stderr, want)
	}

	ok(t, addr, "sendto", bid, a.GetSocket().GetLocalAddress(), "pong")
	var rf sockagentv1.RecvFromResponse
	okJSON(t, addr, &rf, "recvfrom", aid)
	if string(rf.GetData()) != "pong" || rf.GetAddress() != b.GetSocket().GetLocalAddress() {
		t.Errorf("recvfrom -o json: %v, want pong from %s", &rf, b.GetSocket().GetLocalAddress())
	}

	// Nothing more was sent: the wait ends with the agent's TIMEOUT, exit 1.
	sockctl(t, addr, "recvfrom", aid, "--wait", "50ms").want(t, ExitFailure, nil,
		[]string{"sockctl: recvfrom " + aid + ": TIMEOUT (DeadlineExceeded): "})

	ok(t, addr, "close", aid)
	ok(t, addr, "close", bid)
}

// TestSendSources sends from DATA, --file, stdin ("-" and no DATA) and --hex.
func TestSendSources(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	lis, server, client := tcpPair(t, addr)
	sid, cid := server.GetSocketId(), client.GetSocketId()

	file := filepath.Join(t.TempDir(), "data.bin")
	fileData := []byte("from a file\x00\xff\n")
	if err := os.WriteFile(file, fileData, 0o600); err != nil {
		t.Fatal(err)
	}
	hexFile := filepath.Join(t.TempDir(), "data.hex")
	if err := os.WriteFile(hexFile, []byte("de ad\nbe ef\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  []byte
	}{
		{"argument", "", []string{"send", cid, "plain"}, []byte("plain")},
		{"file", "ignored", []string{"send", cid, "--file", file}, fileData},
		{"stdin dash", "from stdin\n", []string{"send", cid, "-"}, []byte("from stdin\n")},
		{"stdin absent", "also stdin", []string{"send", cid}, []byte("also stdin")},
		{"hex argument", "", []string{"send", cid, "--hex", "48 69"}, []byte("Hi")},
		{"hex file", "", []string{"send", cid, "--hex", "--file", hexFile}, []byte{0xde, 0xad, 0xbe, 0xef}},
		{"hex stdin", "0a0b", []string{"send", cid, "--hex"}, []byte{0x0a, 0x0b}},
	} {
		// Subtests share one connection, so they run in order.
		t.Run(tc.name, func(t *testing.T) {
			r := invocation{stdin: tc.stdin, args: append([]string{"--agent", addr}, tc.args...)}.exec(t)
			r.want(t, ExitOK, []string{"sent " + strconv.Itoa(len(tc.want)) + " bytes"}, nil)
			r = ok(t, addr, "recv", sid, "--exact", strconv.Itoa(len(tc.want)), "--wait", "5s")
			if !bytes.Equal([]byte(r.stdout), tc.want) {
				t.Errorf("received %q, want %q", r.stdout, tc.want)
			}
		})
	}

	sockctl(t, addr, "send", cid, "x", "--file", file).want(t, ExitUsage, nil, []string{"give DATA or --file, not both"})
	sockctl(t, addr, "send", cid, "--file", filepath.Join(t.TempDir(), "nosuch")).want(t, ExitFailure, nil, []string{"read --file: "})
	sockctl(t, addr, "send", cid, "--hex", "4g").want(t, ExitUsage, nil, []string{"invalid hex"})

	for _, id := range []string{cid, sid, lis.GetSocketId()} {
		ok(t, addr, "close", id)
	}
}

// TestCancel cancels Main's context (as SIGINT does) while accept blocks: sockctl exits 1
// saying so, and the agent frees the listener for the next accept.
func TestCancel(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	var l sockagentv1.ListenResponse
	okJSON(t, addr, &l, "listen", "tcp", "127.0.0.1:0")
	lid := l.GetSocket().GetSocketId()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan result, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		code := run(ctx, []string{"--agent", addr, "accept", lid, "--wait", "1m"}, nil, nil, &stdout, &stderr)
		done <- result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}()
	// Wait (by asking the agent, not by sleeping) until the accept is pending.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var g sockagentv1.GetSocketResponse
		okJSON(t, addr, &g, "get", lid)
		if g.GetSocket().GetPendingCalls() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("accept never became pending: %v", g.GetSocket())
		}
	}
	cancel()
	r := <-done
	r.want(t, ExitFailure, nil, []string{"sockctl: accept " + lid + ": cancelled"})
	// The agent drops the cancelled accept too; until it has, a new peer could still be
	// taken by it.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var g sockagentv1.GetSocketResponse
		okJSON(t, addr, &g, "get", lid)
		if g.GetSocket().GetPendingCalls() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cancelled accept is still pending in the agent: %v", g.GetSocket())
		}
	}

	// The listener still works.
	var d sockagentv1.DialResponse
	okJSON(t, addr, &d, "dial", "tcp", l.GetSocket().GetLocalAddress())
	var a sockagentv1.AcceptResponse
	okJSON(t, addr, &a, "accept", lid, "--wait", "10s")
	if a.GetSocket().GetRemoteAddress() != d.GetSocket().GetLocalAddress() {
		t.Errorf("accepted %v, want the peer %s", a.GetSocket(), d.GetSocket().GetLocalAddress())
	}
	for _, id := range []string{d.GetSocket().GetSocketId(), a.GetSocket().GetSocketId(), lid} {
		ok(t, addr, "close", id)
	}
}

// TestOtherNetworks runs a short exchange over IPv6 loopback and UNIX sockets.
func TestOtherNetworks(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "sockctl") // short: UNIX socket paths are limited to ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })

	for _, tc := range []struct{ network, address string }{
		{"tcp6", "[::1]:0"},
		{"unix", filepath.Join(dir, "stream.sock")},
	} {
		t.Run(tc.network, func(t *testing.T) {
			t.Parallel()
			if tc.network == "tcp6" {
				l, err := net.Listen("tcp6", "[::1]:0")
				if err != nil {
					if os.Getenv("CI") != "" {
						t.Fatalf("no IPv6 loopback (%v); CI must run this test", err)
					}
					t.Skipf("no IPv6 loopback: %v", err)
				}
				_ = l.Close()
			}
			addr := startAgentConfig(t, agent.Config{SocketDir: dir}) // UNIX sockets go there
			lis, server, client := streamPair(t, addr, tc.network, tc.address)
			ok(t, addr, "send", client.GetSocketId(), "over "+tc.network)
			r := ok(t, addr, "recv", server.GetSocketId(), "--exact", strconv.Itoa(len("over "+tc.network)))
			if r.stdout != "over "+tc.network {
				t.Errorf("recv: %q, want %q", r.stdout, "over "+tc.network)
			}
			for _, s := range []*sockagentv1.Socket{client, server, lis} {
				ok(t, addr, "close", s.GetSocketId())
			}
		})
	}

	t.Run("unixgram", func(t *testing.T) {
		t.Parallel()
		addr := startAgentConfig(t, agent.Config{SocketDir: dir})
		var a, b sockagentv1.BindResponse
		okJSON(t, addr, &a, "bind", "unixgram", filepath.Join(dir, "a.sock"))
		okJSON(t, addr, &b, "bind", "unixgram", filepath.Join(dir, "b.sock"))
		ok(t, addr, "sendto", a.GetSocket().GetSocketId(), filepath.Join(dir, "b.sock"), "datagram")
		r := ok(t, addr, "recvfrom", b.GetSocket().GetSocketId(), "--wait", "5s")
		if r.stdout != "datagram" || r.stderr != "from "+filepath.Join(dir, "a.sock")+" (8 bytes)\n" {
			t.Errorf("recvfrom: stdout %q stderr %q", r.stdout, r.stderr)
		}
		ok(t, addr, "close", a.GetSocket().GetSocketId())
		ok(t, addr, "close", b.GetSocket().GetSocketId())
	})
}
