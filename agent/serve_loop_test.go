package agent_test

// Served UDP sockets and loops: an echo answering an echo would bounce a datagram between
// them for ever. A served socket never answers another served socket of its agent, and
// answers one peer address at a limited rate, so a loop between two agents' echoes dies out.
// No answer is larger than its request, and a Report goes only to an address that returned
// the cookie.

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/internal/wire"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// serving returns the serving counters of socket id.
func (e *env) serving(t *testing.T, id string) *sockagentv1.Serving {
	t.Helper()
	r, err := e.sc.GetSocket(ctxT(t), &sockagentv1.GetSocketRequest{SocketId: id})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetSocket().GetServing()
}

// Two echoes of one agent pointed at each other: the first answer reaches the second echo,
// which does not answer a socket its agent serves. Exactly one datagram goes out.
func TestServeEchoesOfOneAgentDoNotLoop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.bind(t, "udp", "127.0.0.1:0")
	b := e.bind(t, "udp", "127.0.0.1:0")
	e.serve(t, a.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	// b, not served yet, sends to a; a's echo waits in b's queue until b is served.
	if _, err := e.sc.SendTo(ctxT(t), &sockagentv1.SendToRequest{SocketId: b.GetSocketId(), Address: a.GetLocalAddress(), Data: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	e.waitServing(t, a.GetSocketId(), "the echo to b", func(sv *sockagentv1.Serving) bool { return sv.GetDatagramsOut() >= 1 })
	e.serve(t, b.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	sb := e.waitServing(t, b.GetSocketId(), "the refusal to answer a", func(sv *sockagentv1.Serving) bool { return sv.GetErrors() >= 1 })
	if !strings.Contains(sb.GetLastError(), "not answering "+a.GetLocalAddress()+": it is a socket this agent serves") {
		t.Errorf("b's last error %q, want the refusal to answer a", sb.GetLastError())
	}
	sa := e.serving(t, a.GetSocketId())
	sb = e.serving(t, b.GetSocketId())
	if sa.GetDatagramsIn() != 1 || sa.GetDatagramsOut() != 1 || sb.GetDatagramsIn() != 1 || sb.GetDatagramsOut() != 0 || sb.GetErrors() != 1 {
		t.Errorf("a in %d out %d, b in %d out %d errors %d; want 1 1 1 0 1: one datagram, answered once",
			sa.GetDatagramsIn(), sa.GetDatagramsOut(), sb.GetDatagramsIn(), sb.GetDatagramsOut(), sb.GetErrors())
	}
	// Other peers are still answered.
	c := dialT(t, "udp", b.GetLocalAddress())
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Errorf("a plain peer of b got %q, %v", buf[:n], err)
	}
}

// Two agents' echoes pointed at each other over loopback: each notices that the other keeps
// sending back exactly what it answered (the bounce guard), so the loop loses its datagram and
// stops after loopBounces (256) round trips, with no rate limit involved (loopback peers have
// none).
func TestServeEchoLoopAcrossAgentsStops(t *testing.T) {
	t.Parallel()
	const loopBounces = 256
	e1, e2 := newEnv(t), newEnv(t)
	a := e1.bind(t, "udp", "127.0.0.1:0")
	b := e2.bind(t, "udp", "127.0.0.1:0")
	e1.serve(t, a.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	if _, err := e2.sc.SendTo(ctxT(t), &sockagentv1.SendToRequest{SocketId: b.GetSocketId(), Address: a.GetLocalAddress(), Data: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	e1.waitServing(t, a.GetSocketId(), "the echo to b", func(sv *sockagentv1.Serving) bool { return sv.GetDatagramsOut() >= 1 })
	start := time.Now()
	e2.serve(t, b.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)

	// The loop ends when one side refuses to answer a bounce.
	deadline := time.Now().Add(10 * time.Second)
	var sa, sb *sockagentv1.Serving
	for {
		sa, sb = e1.serving(t, a.GetSocketId()), e2.serving(t, b.GetSocketId())
		if sa.GetErrors()+sb.GetErrors() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the loop still runs: a out %d, b out %d, no answer refused", sa.GetDatagramsOut(), sb.GetDatagramsOut())
		}
		time.Sleep(time.Millisecond) // polling interval: the counters decide
	}
	elapsed := time.Since(start)
	refused := sa.GetLastError() + sb.GetLastError()
	if !strings.Contains(refused, "sent back what this socket answered it 256 times in a row") {
		t.Errorf("last errors %q, want the bounce guard's refusal", refused)
	}
	// A plain peer's round trip through each echo: had the loop survived, more than these two
	// answers would be counted meanwhile. The peer sends from 127.0.0.2, an address whose
	// reply rate the loop did not use up.
	before := sa.GetDatagramsOut() + sb.GetDatagramsOut()
	for _, addr := range []string{a.GetLocalAddress(), b.GetLocalAddress()} {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("marker")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != "marker" {
			t.Fatalf("marker through %s: %q, %v", addr, buf[:n], err)
		}
	}
	sa, sb = e1.serving(t, a.GetSocketId()), e2.serving(t, b.GetSocketId())
	if after := sa.GetDatagramsOut() + sb.GetDatagramsOut(); after != before+2 {
		t.Errorf("answers went from %d to %d around two markers, want +2: the loop still runs", before, after)
	}
	// Each side answered loopBounces bounces, and its first datagram, before one refused.
	if before < 2*loopBounces || before > 2*loopBounces+2 {
		t.Errorf("the loop sent %d datagrams in %s, want %d to %d", before, elapsed, 2*loopBounces, 2*loopBounces+2)
	}
}

// No answer is larger than its request: a short (24-byte) ReportRequest gets nothing, a
// full-size one without the cookie gets a Cookie of the same size, and only one with the
// cookie gets the Report, as large as the request.
func TestServeReportNeedsCookie(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, b := range []sockagentv1.Behaviour{sockagentv1.Behaviour_BEHAVIOUR_DISCARD, sockagentv1.Behaviour_BEHAVIOUR_SOURCE} {
		s := e.bind(t, "udp", "127.0.0.1:0")
		e.serve(t, s.GetSocketId(), b, 0, 0)
		c := dialT(t, "udp", s.GetLocalAddress())
		short := make([]byte, wire.HeaderSize)
		wire.PutHeader(short, wire.Header{Type: wire.ReportRequest, Test: 3})
		for _, dg := range [][]byte{short, wire.AppendReportRequest(nil, 3, nil)} {
			if _, err := c.Write(dg); err != nil {
				t.Fatal(err)
			}
		}
		buf := make([]byte, 256)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		h, body, _ := wire.ParseHeader(buf[:n])
		if h.Type != wire.Cookie || n != wire.ReportRequestSize {
			t.Fatalf("%s: first answer %d bytes of type %d; want a %d-byte Cookie (the short request gets nothing)", b, n, h.Type, wire.ReportRequestSize)
		}
		ck, _ := wire.ParseCookie(body)
		wrong := ck
		wrong[3] ^= 1
		for _, dg := range [][]byte{wire.AppendReportRequest(nil, 3, &wrong), wire.AppendReportRequest(nil, 3, &ck)} {
			if _, err := c.Write(dg); err != nil {
				t.Fatal(err)
			}
		}
		for i, want := range []wire.Type{wire.Cookie, wire.Report} {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if h, _, _ := wire.ParseHeader(buf[:n]); h.Type != want || n > wire.ReportRequestSize {
				t.Errorf("%s: answer %d is %d bytes of type %d, want type %d, at most %d bytes", b, i, n, h.Type, want, wire.ReportRequestSize)
			}
		}
		// The last answer is counted just after it is written: wait for the count.
		sv := e.waitServing(t, s.GetSocketId(), "3 datagrams out", func(sv *sockagentv1.Serving) bool { return sv.GetDatagramsOut() >= 3 })
		if sv.GetDatagramsIn() != 4 || sv.GetDatagramsOut() != 3 || sv.GetBytesOut() > sv.GetBytesIn() {
			t.Errorf("%s: in %d (%d bytes), out %d (%d bytes); want 4 in, 3 out, no more bytes out than in", b, sv.GetDatagramsIn(), sv.GetBytesIn(), sv.GetDatagramsOut(), sv.GetBytesOut())
		}
	}
}
