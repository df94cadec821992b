package ctl

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// peer listens on 127.0.0.1 and returns its address and the bytes its one connection read
// until EOF.
func peer(t *testing.T) (string, <-chan []byte) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	got := make(chan []byte, 1)
	go func() {
		defer close(got)
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, _ := io.ReadAll(c)
		got <- b
	}()
	return lis.Addr().String(), got
}

// send --file of 10 MB is sendall: the bytes arrive whole and in order, in as many calls as
// the agent's message size and the caller's bytes_per_call need.
func TestSendLargeFile(t *testing.T) {
	t.Parallel()
	data := make([]byte, 10<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "10mb.bin")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	small, err := policy.Parse("test", []byte("default: {limits: {bytes_per_call: 1048576}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		cfg   agent.Config
		calls uint64
	}{
		{"default limits: pieces of 4 MiB", agent.Config{}, 3},
		{"bytes_per_call 1 MiB", agent.Config{Policy: small}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := startAgentConfig(t, tc.cfg)
			target, got := peer(t)
			var d sockagentv1.DialResponse
			okJSON(t, addr, &d, "dial", "tcp", target)
			id := d.GetSocket().GetSocketId()
			r := ok(t, addr, "send", id, "--file", file)
			if r.stdout != "sent 10485760 bytes\n" || r.stderr != "" {
				t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
			}
			var g sockagentv1.GetSocketResponse
			okJSON(t, addr, &g, "get", id)
			if s := g.GetSocket(); s.GetBytesSent() != uint64(len(data)) || s.GetMessagesSent() != tc.calls {
				t.Errorf("bytes_sent %d in %d calls, want %d in %d", s.GetBytesSent(), s.GetMessagesSent(), len(data), tc.calls)
			}
			ok(t, addr, "close", id)
			if b := <-got; !bytes.Equal(b, data) {
				t.Errorf("the peer read %d bytes, not the file's %d", len(b), len(data))
			}
		})
	}
}

// Up to 1 MiB goes in one call, without asking the agent anything first.
func TestSendOneCall(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	target, got := peer(t)
	var d sockagentv1.DialResponse
	okJSON(t, addr, &d, "dial", "tcp", target)
	id := d.GetSocket().GetSocketId()
	data := bytes.Repeat([]byte("x"), sendOneCall)
	r := invocation{args: []string{"--agent", addr, "send", id, "-o", "json"}, stdin: string(data)}.exec(t)
	r.want(t, ExitOK, []string{`"bytesSent": "` + strconv.Itoa(sendOneCall) + `"`}, nil)
	var g sockagentv1.GetSocketResponse
	okJSON(t, addr, &g, "get", id)
	if s := g.GetSocket(); s.GetMessagesSent() != 1 {
		t.Errorf("%d calls, want 1", s.GetMessagesSent())
	}
	ok(t, addr, "close", id)
	if b := <-got; len(b) != len(data) {
		t.Errorf("the peer read %d bytes, want %d", len(b), len(data))
	}
}

// A datagram larger than one call is refused before anything is sent: it is never split.
func TestSendLargeDatagram(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	var b sockagentv1.BindResponse
	okJSON(t, addr, &b, "bind", "udp", "127.0.0.1:0")
	id := b.GetSocket().GetSocketId()
	var d sockagentv1.DialResponse
	okJSON(t, addr, &d, "dial", "udp", b.GetSocket().GetLocalAddress())
	did := d.GetSocket().GetSocketId()
	r := invocation{args: []string{"--agent", addr, "send", did}, stdin: string(make([]byte, 5<<20))}.exec(t)
	r.want(t, ExitFailure, nil, []string{"sockctl: send " + did + ": 5242880 bytes are one datagram on this datagram socket, and the agent takes at most 4194304 in one call; send less"})
	var g sockagentv1.GetSocketResponse
	okJSON(t, addr, &g, "get", did)
	if g.GetSocket().GetMessagesSent() != 0 {
		t.Errorf("%d datagrams sent, want 0", g.GetSocket().GetMessagesSent())
	}
	ok(t, addr, "close", did)
	ok(t, addr, "close", id)
}

func TestSendPieceSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		msg, perCall uint32
		want         int
	}{
		{0, 0, sendOneCall},
		{messageOverhead, 0, sendOneCall},
		{messageOverhead + 1, 0, 1},
		{4<<20 + 64<<10, 0, 4 << 20},
		{4<<20 + 64<<10, 4 << 20, 4 << 20},
		{4<<20 + 64<<10, 4<<20 - 1, 4<<20 - 1},
		{4<<20 + 64<<10, 4<<20 + 1, 4 << 20},
		{0, 1000, 1000},
	} {
		if got := sendPieceSize(&sockagentv1.Limits{MaxMessageBytes: tc.msg, BytesPerCall: tc.perCall}); got != tc.want {
			t.Errorf("message %d, bytes_per_call %d: %d, want %d", tc.msg, tc.perCall, got, tc.want)
		}
	}
}

// A send that fails midway says how much went before the failure.
func TestSendFailsMidway(t *testing.T) {
	t.Parallel()
	small, err := policy.Parse("test", []byte("default: {limits: {bytes_per_call: 1048576}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	addr := startAgentConfig(t, agent.Config{Policy: small})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var d sockagentv1.DialResponse
	okJSON(t, addr, &d, "dial", "tcp", lis.Addr().String())
	id := d.GetSocket().GetSocketId()
	c, err := lis.Accept() // and never read: the kernel's buffers fill, then a Send times out
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	r := invocation{args: []string{"--agent", addr, "send", id, "--wait", "300ms"}, stdin: string(make([]byte, 64<<20))}.exec(t)
	re := regexp.MustCompile(`^sockctl: send ` + id + `: TIMEOUT \(DeadlineExceeded\): .*; (\d+) of 67108864 bytes were sent before it\n$`)
	m := re.FindStringSubmatch(r.stderr)
	if r.code != ExitFailure || m == nil {
		t.Fatalf("exit %d, stderr %q; want 1 and %s", r.code, r.stderr, re)
	}
	if n, _ := strconv.Atoi(m[1]); n == 0 || n%(1<<20) != 0 || n >= 64<<20 {
		t.Errorf("%d bytes sent before the failure: want whole pieces of 1 MiB, some but not all", n)
	}
	ok(t, addr, "close", id)
}
