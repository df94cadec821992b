package agent_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"github.com/sockagent/sockagent/lab/labtest"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// run runs a command that must succeed and dies with the test.
func run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out)
}

// inNetns runs fn on a thread moved into the namespace ns: sockets fn opens live there.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("back to the test's namespace: %v (the thread is left locked, and dies)", err)
	}
	runtime.UnlockOSThread()
}

var counterRE = regexp.MustCompile(`counter packets (\d+) bytes \d+ comment "(\w+)"`)

// Keepalive probes on an idle connection are seen by the peer: in a namespace the test
// creates, reached over a veth pair, nft counts the bare ACKs the agent's connection sends.
// With keepalive idle 1s interval 1s two probes arrive within about 2s; a connection with
// keepalive off (Go turns it on, every 15s, by default) sends none meanwhile.
func TestOptionsKeepaliveProbes(t *testing.T) {
	labtest.NeedNetns(t)
	e := newEnv(t)
	k := os.Getpid() % 250
	ns, host := fmt.Sprintf("sakeep%d", os.Getpid()), fmt.Sprintf("sakh%d", os.Getpid())
	hostIP, peerIP := fmt.Sprintf("10.78.%d.1", k), fmt.Sprintf("10.78.%d.2", k)
	_ = exec.Command("ip", "netns", "del", ns).Run() // a crashed run's
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	run(t, "ip", "addr", "add", hostIP+"/30", "dev", host)
	run(t, "ip", "link", "set", host, "up")
	run(t, "ip", "-n", ns, "addr", "add", peerIP+"/30", "dev", "eth0")
	run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	const portOn, portOff = 7801, 7802
	run(t, "ip", "netns", "exec", ns, "nft", fmt.Sprintf(`add table inet ka
add chain inet ka in { type filter hook input priority 0; }
add rule inet ka in ip saddr %s tcp dport %d tcp flags == ack counter comment "on"
add rule inet ka in ip saddr %s tcp dport %d tcp flags == ack counter comment "off"`, hostIP, portOn, hostIP, portOff))
	counts := func() map[string]int {
		out := run(t, "ip", "netns", "exec", ns, "nft", "list", "chain", "inet", "ka", "in")
		m := map[string]int{}
		for _, c := range counterRE.FindAllStringSubmatch(out, -1) {
			m[c[2]], _ = strconv.Atoi(c[1])
		}
		return m
	}
	var lnOn, lnOff net.Listener
	inNetns(t, ns, func() {
		var err1, err2 error
		lnOn, err1 = net.Listen("tcp4", fmt.Sprintf("%s:%d", peerIP, portOn))
		lnOff, err2 = net.Listen("tcp4", fmt.Sprintf("%s:%d", peerIP, portOff))
		if err1 != nil || err2 != nil {
			t.Fatalf("listen in %s: %v %v", ns, err1, err2)
		}
	})
	defer lnOn.Close()
	defer lnOff.Close()

	dial := func(port int, ka *sockagentv1.Keepalive, ln net.Listener) net.Conn {
		t.Helper()
		r, err := e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp4", Address: fmt.Sprintf("%s:%d", peerIP, port),
			Timeout: dur(5 * time.Second), Options: &sockagentv1.SocketOptions{Keepalive: ka}})
		if err != nil {
			t.Fatal(err)
		}
		e.closeAtEnd(t, r.GetSocket().GetSocketId())
		peer, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { peer.Close() })
		return peer
	}
	dial(portOff, &sockagentv1.Keepalive{Enabled: proto.Bool(false)}, lnOff)
	dial(portOn, &sockagentv1.Keepalive{Enabled: proto.Bool(true), Idle: dur(time.Second), Interval: dur(time.Second), Count: proto.Uint32(3)}, lnOn)
	start := time.Now()
	before := counts()
	if before["on"] != 1 || before["off"] != 1 {
		t.Fatalf("counters after the handshakes %v, want the one final ACK each", before)
	}
	for time.Since(start) < 10*time.Second && counts()["on"] < before["on"]+2 {
		time.Sleep(50 * time.Millisecond) // polling nft's counter, bounded
	}
	took := time.Since(start)
	after := counts()
	if got := after["on"] - before["on"]; got < 2 {
		t.Fatalf("%d keepalive probes in %s, want 2", got, took.Round(time.Millisecond))
	}
	if took < 1500*time.Millisecond || took > 4*time.Second {
		t.Errorf("two probes took %s; with idle 1s and interval 1s want about 2s (1.5s to 4s)", took.Round(time.Millisecond))
	}
	if got := after["off"] - before["off"]; got != 0 {
		t.Errorf("the connection with keepalive off sent %d packets while idle, want 0", got)
	}
}
