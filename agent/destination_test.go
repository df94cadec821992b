package agent_test

// Destinations are judged where the kernel sends them: 0.0.0.0 and :: reach loopback, so a
// policy that denies loopback refuses them in every call that sends (Dial, SendTo, Attach's
// per-message addresses, Probe, Throughput), and nothing reaches the loopback target.

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

const noLoopbackPolicy = `
default:
  destinations:
    allow: [{name: anywhere}]
    deny: [{name: no loopback, cidrs: [127.0.0.0/8, "::1"]}]
rule_sets:
  - name: open
    callers: [token:bob]
    destinations: {allow: [{name: anywhere}], deny: []}
`

func TestUnspecifiedDestinationIsLoopback(t *testing.T) {
	t.Parallel()
	e := polEnv(t, noLoopbackPolicy, true)
	alice, bob := e.as(t, "alice"), e.as(t, "bob")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, tport, _ := net.SplitHostPort(ln.Addr().String())
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_, uport, _ := net.SplitHostPort(pc.LocalAddr().String())

	targets := []string{"0.0.0.0"}
	if hasIPv6Loopback() {
		targets = append(targets, "::", "::ffff:0.0.0.0")
	} else if os.Getenv("CI") != "" {
		t.Fatal("no ::1 on this host; CI must run the IPv6 unspecified-address cases")
	}
	for _, host := range targets {
		tcp, udp := net.JoinHostPort(host, tport), net.JoinHostPort(host, uport)
		kernel := "127.0.0.1:"
		if host == "::" {
			kernel = "[::1]:"
		}
		t.Run("dial "+host, func(t *testing.T) {
			for _, nw := range []string{"tcp", "udp"} {
				addr, port := tcp, tport
				if nw == "udp" {
					addr, port = udp, uport
				}
				_, err := alice.e.sc.Dial(alice.ctx, &sockagentv1.DialRequest{Network: nw, Address: addr, Timeout: dur(5 * time.Second)})
				wantDenied(t, err, "no loopback", "default", "(the kernel sends it to "+kernel+port+")")
			}
		})
		t.Run("sendto "+host, func(t *testing.T) {
			b := alice.bind(t, "udp", "127.0.0.1:0")
			_, err := e.sc.SendTo(alice.ctx, &sockagentv1.SendToRequest{SocketId: b.GetSocketId(), Address: udp, Data: []byte("leak")})
			wantDenied(t, err, "no loopback", "default", "(the kernel sends it to "+kernel+uport+")")
		})
		t.Run("attach "+host, func(t *testing.T) {
			b := alice.bind(t, "udp", "127.0.0.1:0")
			st := e.attach(t, alice.ctx, b.GetSocketId())
			if err := st.Send(&sockagentv1.AttachRequest{Address: udp, Data: []byte("leak")}); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			_, err := st.Recv()
			wantDenied(t, err, "no loopback", "default", "(the kernel sends it to "+kernel+uport+")")
		})
		t.Run("probe "+host, func(t *testing.T) {
			for _, tc := range []struct{ nw, addr, port string }{{"tcp", tcp, tport}, {"udp", udp, uport}} {
				_, err := e.mc().Probe(alice.ctx, &sockagentv1.ProbeRequest{Network: tc.nw, Address: tc.addr, Count: 2, Timeout: dur(time.Second)})
				wantDenied(t, err, "no loopback", "default", "(the kernel sends it to "+kernel+tc.port+")")
			}
		})
		t.Run("throughput "+host, func(t *testing.T) {
			for _, tc := range []struct{ nw, addr, port string }{{"tcp", tcp, tport}, {"udp", udp, uport}} {
				st, err := e.mc().Throughput(alice.ctx, &sockagentv1.ThroughputRequest{Network: tc.nw, Address: tc.addr, Duration: dur(200 * time.Millisecond)})
				if err == nil {
					_, err = st.Recv()
				}
				wantDenied(t, err, "no loopback", "default", "(the kernel sends it to "+kernel+tc.port+")")
			}
		})
	}

	// Nothing of alice's reached the targets: the first connection and the first datagram
	// they get are bob's, whose rule set allows loopback, sent to the same unspecified address.
	c := bob.dial(t, "tcp", net.JoinHostPort("0.0.0.0", tport))
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	got, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept bob's connection: %v", err)
	}
	defer got.Close()
	if got.RemoteAddr().String() != c.GetLocalAddress() {
		t.Errorf("first connection from %s, want bob's %s: a refused dial got through", got.RemoteAddr(), c.GetLocalAddress())
	}
	b := bob.bind(t, "udp", "127.0.0.1:0")
	if _, err := e.sc.SendTo(bob.ctx, &sockagentv1.SendToRequest{SocketId: b.GetSocketId(), Address: net.JoinHostPort("0.0.0.0", uport), Data: []byte("bob")}); err != nil {
		t.Fatalf("bob's sendto 0.0.0.0: %v", err)
	}
	buf := make([]byte, 64)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "bob" || from.String() != b.GetLocalAddress() {
		t.Errorf("first datagram %q from %v (%v), want bob's from %s: a refused datagram got through", buf[:n], from, err, b.GetLocalAddress())
	}
	if strings.Contains(string(buf[:n]), "leak") {
		t.Error("a refused datagram reached the loopback target")
	}
}
