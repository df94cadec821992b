package ctl

import (
	"strings"
	"testing"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// The ends of the lease and TTL ranges are accepted: 1s and 24h.
func TestLeaseAndTTLBounds(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	refused := closedPort(t)
	for _, lease := range []string{"1s", "24h"} {
		sockctl(t, addr, "connect", "tcp", refused, "--lease", lease).want(t, ExitFailure, nil, []string{"CONNECTION_REFUSED"})
		r := ok(t, addr, "-o", "id", "sessions", "open", "--ttl", lease)
		ok(t, addr, "sessions", "close", strings.TrimSpace(r.stdout))
	}
	if r := ok(t, addr, "sessions", "ls", "-o", "id"); r.stdout != "" {
		t.Errorf("sessions left: %q", r.stdout)
	}
}

// A send that fails on its first call says nothing of bytes sent before it.
func TestSendFailsAtOnce(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	r := sockctl(t, addr, "send", "s000000-9", "x")
	r.want(t, ExitFailure, nil, []string{"sockctl: send s000000-9: UNKNOWN_SOCKET (NotFound): "})
	if strings.Contains(r.stderr, "sent before") {
		t.Errorf("stderr speaks of bytes sent before: %q", r.stderr)
	}
}

// A datagram exactly as large as one call carries goes to the agent, which judges it.
func TestSendDatagramOfOneCall(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	var b sockagentv1.BindResponse
	okJSON(t, addr, &b, "bind", "udp", "127.0.0.1:0")
	var d sockagentv1.DialResponse
	okJSON(t, addr, &d, "dial", "udp", b.GetSocket().GetLocalAddress())
	did := d.GetSocket().GetSocketId()
	r := invocation{args: []string{"--agent", addr, "send", did}, stdin: string(make([]byte, 4<<20))}.exec(t)
	r.want(t, ExitFailure, nil, []string{"sockctl: send " + did + ": "})
	if strings.Contains(r.stderr, "bytes are one datagram") {
		t.Errorf("sockctl refused a datagram one call carries: %q", r.stderr)
	}
	ok(t, addr, "close", did)
	ok(t, addr, "close", b.GetSocket().GetSocketId())
}

// keepalive and close complete session ids.
func TestCompleteSessionCommands(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	sid := strings.TrimSpace(ok(t, addr, "-o", "id", "sessions", "open", "--name", "x").stdout)
	for _, sub := range []string{"keepalive", "close"} {
		got, dir := complete(t, nil, "--agent", addr, "sessions", sub, "")
		if strings.Join(got, "|") != sid+"\tx, 0 sockets" || dir != ":4" {
			t.Errorf("sessions %s: %q %s", sub, got, dir)
		}
	}
	if got, _ := complete(t, nil, "--agent", addr, "sessions", "open", ""); len(got) != 0 {
		t.Errorf("sessions open completes %q, want nothing", got)
	}
	ok(t, addr, "sessions", "close", sid)
}
