package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// sockctlJSON runs sockctl --agent target ARGS -o json, wants exit 0, and returns the
// socket the command printed.
func sockctlJSON(t *testing.T, target string, args ...string) (id, local string) {
	t.Helper()
	out, errOut, code := runSockctl(t, append(append([]string{"--agent", target}, args...), "-o", "json")...)
	var r struct {
		Socket struct{ SocketID, LocalAddress string } `json:"socket"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.Socket.SocketID == "" {
		t.Fatalf("sockctl %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return r.Socket.SocketID, r.Socket.LocalAddress
}

// openFour opens through sockctl what the clients held: a TCP listener, a dialled
// and an accepted connection, a UDP socket; ids in that order.
func openFour(t *testing.T, target string) []string {
	t.Helper()
	lis, addr := sockctlJSON(t, target, "listen", "tcp", "127.0.0.1:0")
	cli, _ := sockctlJSON(t, target, "dial", "tcp", addr)
	srv, _ := sockctlJSON(t, target, "accept", lis, "--wait", "10s")
	udp, _ := sockctlJSON(t, target, "bind", "udp", "127.0.0.1:0")
	return []string{lis, cli, srv, udp}
}

func instanceOf(t *testing.T, p *proc) *sockagentv1.GetInfoResponse {
	t.Helper()
	info, err := sockagentv1.NewAgentServiceClient(p.conn).GetInfo(ctxT(t), &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// The restart sequence through the two binaries: sockets opened with sockctl, the
// agent restarted on the same address, another client opening the same sockets on the new
// instance. The old ids, given to sockctl get, recv, send, close, attach, never reach the new
// sockets: each exits 1 with UNKNOWN_SOCKET naming the restart, and the other client's
// sockets stay open with their bytes.
func TestSockctlIDsAfterRestart(t *testing.T) {
	t.Parallel()
	target := "unix:" + filepath.Join(shortTempDir(t), "a.sock")
	first := start(t, sockagentBin, "--listen", target)
	oldInfo := instanceOf(t, first)
	old := openFour(t, target)
	if _, errOut, code := runSockctl(t, "--agent", target, "send", old[1], "before restart"); code != 0 {
		t.Fatalf("send before the restart: exit %d: %s", code, errOut)
	}
	if c := first.stop(t); c != 0 {
		t.Fatalf("first agent: exit %d", c)
	}
	second := start(t, sockagentBin, "--listen", target)
	info := instanceOf(t, second)
	other := openFour(t, target)
	for i := range other {
		if other[i] == old[i] {
			t.Fatalf("socket %d: the new instance named it %s, as the old one did", i+1, other[i])
		}
	}
	if _, errOut, code := runSockctl(t, "--agent", target, "send", other[1], "OTHER-CLIENT-D"); code != 0 {
		t.Fatalf("the other client's send: exit %d: %s", code, errOut)
	}
	for _, id := range old {
		for _, args := range [][]string{
			{"get", id}, {"recv", id, "--wait", "1s"}, {"send", id, "x"}, {"sendto", id, "127.0.0.1:9", "x"},
			{"shutdown", id, "both"}, {"accept", id, "--wait", "1s"}, {"attach", id}, {"close", id},
		} {
			out, errOut, code := runSockctl(t, append([]string{"--agent", target}, args...)...)
			for _, want := range []string{
				args[0] + " " + id, "UNKNOWN_SOCKET (NotFound)",
				"this agent instance " + info.GetInstanceId(), "the agent restarted",
				"instance " + oldInfo.GetInstanceId()[:contract.SocketIDInstanceLen],
			} {
				if !strings.Contains(errOut, want) {
					t.Errorf("sockctl %s: stderr %q lacks %q", strings.Join(args, " "), errOut, want)
				}
			}
			if code != 1 || out != "" {
				t.Errorf("sockctl %s: exit %d, stdout %q; want exit 1 and nothing on stdout", strings.Join(args, " "), code, out)
			}
		}
	}
	// The other client's sockets: all four open, the bytes still waiting.
	l, err := second.sockets().ListSockets(ctxT(t), &sockagentv1.ListSocketsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.GetSockets()) != 4 {
		t.Fatalf("the new instance holds %d sockets, want the other client's 4", len(l.GetSockets()))
	}
	for i, s := range l.GetSockets() {
		if s.GetSocketId() != other[i] || s.GetState() != sockagentv1.SocketState_SOCKET_STATE_OPEN || s.GetBytesSent()+s.GetBytesReceived() != map[int]uint64{1: 14}[i] {
			t.Errorf("socket %d after the old ids' calls: %v; want %s open, untouched", i+1, s, other[i])
		}
	}
	if out, errOut, code := runSockctl(t, "--agent", target, "recv", other[2], "--exact", "14", "--wait", "5s"); code != 0 || out != "OTHER-CLIENT-D" {
		t.Errorf("the other client's recv: exit %d, %q (%s); want OTHER-CLIENT-D", code, out, errOut)
	}
	for _, id := range other {
		if _, errOut, code := runSockctl(t, "--agent", target, "close", id); code != 0 {
			t.Errorf("close %s: exit %d: %s", id, code, errOut)
		}
	}
	if c := second.stop(t); c != 0 {
		t.Errorf("second agent: exit %d", c)
	}
}
