package main

// Broadcast, multicast and forged senders, only inside namespaces the test creates: a
// "switch" namespace holds a bridge; the agent's, a victim's and an attacker's namespaces each
// have one veth on it. Nothing of it touches the root namespace, so no datagram can leave the
// machine.

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/wire"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
)

// The lab's subnet, private to its namespaces: the agent .2, the victim .3, the attacker .4.
const (
	destNet       = "10.213.50."
	destAgent     = destNet + "2"
	destVictim    = destNet + "3"
	destAttacker  = destNet + "4"
	destBroadcast = destNet + "255"
)

// bridgedNetns makes a switch namespace with a bridge and, for each address, a namespace on
// it with that address on eth0 (/24) and multicast routed to eth0; it returns their names.
func bridgedNetns(t *testing.T, addrs ...string) []string {
	t.Helper()
	sw := newNetns(t)
	ipCmd(t, "-n", sw, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", sw, "link", "set", "br0", "up")
	var names []string
	for i, a := range addrs {
		ns := newNetns(t)
		port := fmt.Sprintf("p%d", i)
		ipCmd(t, "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ipCmd(t, "-n", sw, "link", "set", port, "master", "br0", "up")
		ipCmd(t, "-n", ns, "addr", "add", a+"/24", "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
		ipCmd(t, "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
		names = append(names, ns)
	}
	return names
}

// inNetns runs fn on a thread moved into namespace ns; sockets fn opens live there.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/var/run/netns", ns))
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns %s: %v", ns, err)
	}
	fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("setns back: %v", err) // the thread stays locked, and dies with the goroutine
	}
	runtime.UnlockOSThread()
}

// udpIn binds a UDP socket in namespace ns.
func udpIn(t *testing.T, ns, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	inNetns(t, ns, func() {
		pc, err := net.ListenPacket("udp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		c = pc.(*net.UDPConn)
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// spoofer sends UDP datagrams with any sender address from namespace ns (a raw socket).
type spoofer struct{ fd int }

func newSpoofer(t *testing.T, ns string) spoofer {
	t.Helper()
	var (
		fd  int
		err error
	)
	inNetns(t, ns, func() { fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	return spoofer{fd}
}

func (s spoofer) send(t *testing.T, from, to netip.AddrPort, payload []byte) {
	t.Helper()
	pkt := make([]byte, 28+len(payload))
	pkt[0], pkt[8], pkt[9] = 0x45, 64, syscall.IPPROTO_UDP
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	src, dst := from.Addr().As4(), to.Addr().As4()
	copy(pkt[12:], src[:])
	copy(pkt[16:], dst[:])
	binary.BigEndian.PutUint16(pkt[20:], from.Port())
	binary.BigEndian.PutUint16(pkt[22:], to.Port())
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload))) // checksum 0: none (IPv4)
	copy(pkt[28:], payload)
	if err := syscall.Sendto(s.fd, pkt, 0, &syscall.SockaddrInet4{Addr: dst}); err != nil {
		t.Fatalf("raw sendto: %v", err)
	}
}

// readAll reads datagrams from c until it has been quiet for quiet, at most max of them.
func readAll(c *net.UDPConn, quiet time.Duration, max int) (got [][]byte) {
	buf := make([]byte, 65536)
	for len(got) < max {
		_ = c.SetReadDeadline(time.Now().Add(quiet))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return got
		}
		got = append(got, append([]byte(nil), buf[:n]...))
	}
	return got
}

func TestNetnsBroadcastMulticastSpoof(t *testing.T) {
	t.Parallel()
	nss := bridgedNetns(t, destAgent, destVictim, destAttacker)
	agentNS, victimNS, attackerNS := nss[0], nss[1], nss[2]
	dir := shortTempDir(t)
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("plain:secret-plain\nbcast:secret-bcast\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pol := writePolicy(t, `
default:
  destinations:
    allow: [{name: lab, cidrs: [`+destNet+`0/24]}]
rule_sets:
  - name: bcast
    callers: [token:bcast]
    destinations:
      allow:
        - {name: lab, cidrs: [`+destNet+`0/24]}
        - {name: lab broadcast, cidrs: [`+destBroadcast+`/32]}
        - {name: multicast, cidrs: [224.0.0.0/4]}
`)
	p := start(t, "ip", "netns", "exec", agentNS, sockagentBin, "--listen", "unix:"+filepath.Join(dir, "a.sock"),
		"--token-file", tokens, "--policy", pol)
	sc := p.sockets()
	victim := udpIn(t, victimNS, "0.0.0.0:9999") // gets unicast, broadcast and 224.0.0.1

	bind := func(t *testing.T, token string) string {
		r, err := sc.Bind(bearerCtx(t, token), &sockagentv1.BindRequest{Network: "udp4", Address: "0.0.0.0:0"})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetSocket().GetSocketId()
	}
	sendTo := func(t *testing.T, token, id, addr, data string) error {
		_, err := sc.SendTo(bearerCtx(t, token), &sockagentv1.SendToRequest{SocketId: id, Address: addr, Data: []byte(data)})
		return err
	}
	// wantFirst reads the victim's next datagram: it must be data (nothing refused arrived).
	wantFirst := func(t *testing.T, data string) {
		t.Helper()
		buf := make([]byte, 2048)
		_ = victim.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := victim.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != data {
			t.Fatalf("the victim read %q, %v; want %q", buf[:n], err, data)
		}
	}

	t.Run("broadcast and multicast need a rule naming them", func(t *testing.T) {
		id := bind(t, "secret-plain")
		for _, dst := range []string{destBroadcast, "255.255.255.255", "224.0.0.1"} {
			err := sendTo(t, "secret-plain", id, dst+":9999", "refused "+dst)
			wantStatus(t, err, codes.PermissionDenied, contract.ReasonPolicyDenied)
			if err != nil && !strings.Contains(err.Error(), "cidrs name it") {
				t.Errorf("sendto %s: %v; want the hint on naming it", dst, err)
			}
		}
		_, err := sc.Dial(bearerCtx(t, "secret-plain"), &sockagentv1.DialRequest{Network: "udp4", Address: destBroadcast + ":9999"})
		wantStatus(t, err, codes.PermissionDenied, contract.ReasonPolicyDenied)
		if err := sendTo(t, "secret-plain", id, destVictim+":9999", "unicast"); err != nil {
			t.Fatal(err)
		}
		wantFirst(t, "unicast")

		id = bind(t, "secret-bcast")
		for _, dst := range []string{destBroadcast, "224.0.0.1"} {
			if err := sendTo(t, "secret-bcast", id, dst+":9999", "to "+dst); err != nil {
				t.Fatalf("sendto %s, named by the rule set: %v", dst, err)
			}
			wantFirst(t, "to "+dst)
		}
		err = sendTo(t, "secret-bcast", id, "255.255.255.255:9999", "not named")
		wantStatus(t, err, codes.PermissionDenied, contract.ReasonPolicyDenied)
		if err := sendTo(t, "secret-bcast", id, destVictim+":9999", "end"); err != nil {
			t.Fatal(err)
		}
		wantFirst(t, "end")
	})

	t.Run("a forged sender gets nothing larger than its request", func(t *testing.T) {
		victim := udpIn(t, victimNS, "0.0.0.0:7777")
		sp := newSpoofer(t, attackerNS)
		served := map[sockagentv1.Behaviour]netip.AddrPort{}
		for _, b := range []sockagentv1.Behaviour{sockagentv1.Behaviour_BEHAVIOUR_ECHO, sockagentv1.Behaviour_BEHAVIOUR_DISCARD, sockagentv1.Behaviour_BEHAVIOUR_SOURCE} {
			r, err := sc.Bind(bearerCtx(t, "secret-plain"), &sockagentv1.BindRequest{Network: "udp4", Address: destAgent + ":0"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sc.Serve(bearerCtx(t, "secret-plain"), &sockagentv1.ServeRequest{SocketId: r.GetSocket().GetSocketId(), Behaviour: b}); err != nil {
				t.Fatal(err)
			}
			served[b] = netip.MustParseAddrPort(r.GetSocket().GetLocalAddress())
		}
		from := netip.MustParseAddrPort(destVictim + ":7777")
		short := make([]byte, wire.HeaderSize)
		wire.PutHeader(short, wire.Header{Type: wire.ReportRequest, Test: 1})
		requests := []struct {
			to  sockagentv1.Behaviour
			dg  []byte
			max int // the largest answer allowed: the request's size, or 0 for none
		}{
			{sockagentv1.Behaviour_BEHAVIOUR_DISCARD, short, 0},
			{sockagentv1.Behaviour_BEHAVIOUR_SOURCE, short, 0},
			{sockagentv1.Behaviour_BEHAVIOUR_DISCARD, wire.AppendReportRequest(nil, 1, nil), wire.ReportRequestSize},
			{sockagentv1.Behaviour_BEHAVIOUR_SOURCE, wire.AppendReportRequest(nil, 1, nil), wire.ReportRequestSize},
			{sockagentv1.Behaviour_BEHAVIOUR_SOURCE, wire.AppendStart(nil, 2, wire.StartBody{RateBitsPerSecond: 1e9, Duration: time.Second}), wire.StartSize},
			{sockagentv1.Behaviour_BEHAVIOUR_ECHO, []byte("forged echo request"), len("forged echo request")},
		}
		sentBytes := 0
		for _, rq := range requests {
			sp.send(t, from, served[rq.to], rq.dg)
			sentBytes += len(rq.dg)
		}
		got := readAll(victim, time.Second, 100)
		gotBytes := 0
		for _, g := range got {
			gotBytes += len(g)
			if h, _, err := wire.ParseHeader(g); err == nil && (h.Type == wire.Report || h.Type == wire.Data) {
				t.Errorf("the victim got a %d-byte datagram of type %d: a Report or Data to an address that never returned a cookie", len(g), h.Type)
			}
		}
		// Answered: the two full-size ReportRequests (a Cookie each), the SourceStart (a
		// Cookie) and the echo; the two short requests get nothing.
		if len(got) != 4 || gotBytes > sentBytes-2*wire.HeaderSize {
			t.Errorf("the victim got %d datagrams, %d bytes, for %d bytes forged; want 4, no more bytes than the answered requests", len(got), gotBytes, sentBytes)
		}
	})
}
