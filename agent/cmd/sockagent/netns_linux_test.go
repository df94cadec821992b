package main

// sockagent inside a network namespace the test creates (Linux, root): unreachable hosts and
// networks, and firewall drops and rejects, come back as the codes and reasons the API promises.
// The namespace has only lo; the addresses dialled exist nowhere else, so no packet leaves it.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"github.com/sockagent/sockagent/lab/labtest"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
)

// netnsPrefix starts the name of every namespace these tests create: satest-PID-N.
const netnsPrefix = "satest-"

var (
	netnsSeq      atomic.Int64
	netnsStaleOne sync.Once
)

// ipCmd runs ip (or, with "netns exec NS", a command in a namespace) and fails the test on error.
func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// removeStaleNetns deletes namespaces a crashed earlier run left: ours by prefix, whose pid is
// gone (or is our own pid, reused).
func removeStaleNetns(t *testing.T) {
	out := ipCmd(t, "netns", "list")
	for _, line := range strings.Split(out, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, netnsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil {
			continue
		}
		if pid == os.Getpid() || errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			t.Logf("removing stale namespace %s", name)
			_ = exec.Command("ip", "netns", "del", name).Run()
		}
	}
}

// newNetns creates a namespace with only lo up; it is deleted when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		labtest.SkipOutsideCI(t, "network namespace tests need root (ip netns add); CI runs them as root")
	}
	netnsStaleOne.Do(func() { removeStaleNetns(t) })
	name := fmt.Sprintf("%s%d-%d", netnsPrefix, os.Getpid(), netnsSeq.Add(1))
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	ipCmd(t, "-n", name, "link", "set", "lo", "up")
	return name
}

func TestNetns(t *testing.T) {
	t.Parallel()
	ns := newNetns(t)
	ipCmd(t, "-n", ns, "route", "add", "unreachable", "10.213.7.0/24")

	sock := filepath.Join(shortTempDir(t), "a.sock")
	p := start(t, "ip", "netns", "exec", ns, sockagentBin, "--listen", "unix:"+sock)
	sc := p.sockets()

	t.Run("inside the namespace", func(t *testing.T) {
		info, err := sockagentv1.NewAgentServiceClient(p.conn).GetInfo(ctxT(t), &sockagentv1.GetInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, i := range info.GetInterfaces() {
			names = append(names, i.GetName())
		}
		if strings.Join(names, ",") != "lo" {
			t.Fatalf("interfaces %v, want only lo: the agent is not in namespace %s", names, ns)
		}
	})

	dial := func(t *testing.T, address string, timeout time.Duration) (*sockagentv1.Socket, error) {
		t.Helper()
		r, err := sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: address, Timeout: durationpb.New(timeout)})
		return r.GetSocket(), err
	}

	t.Run("unreachable route", func(t *testing.T) {
		_, err := dial(t, "10.213.7.1:80", 5*time.Second)
		wantStatus(t, err, codes.Unavailable, contract.ReasonHostUnreachable)
	})
	t.Run("no route", func(t *testing.T) {
		_, err := dial(t, "10.213.99.1:80", 5*time.Second)
		wantStatus(t, err, codes.Unavailable, contract.ReasonNetworkUnreachable)
	})

	t.Run("nft drop and reject", func(t *testing.T) {
		if _, err := exec.LookPath("nft"); err != nil {
			labtest.SkipOutsideCI(t, "nft not installed (.ci/run installs nftables)")
		}
		// Something listens on both ports, so a refusal can only come from the reject rule.
		var ids []string
		for _, port := range []string{"9009", "9010"} {
			r, err := sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:" + port})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.GetSocket().GetSocketId())
			c, err := dial(t, "127.0.0.1:"+port, 5*time.Second)
			if err != nil {
				t.Fatalf("dial 127.0.0.1:%s before the firewall rules: %v", port, err)
			}
			ids = append(ids, c.GetSocketId())
		}
		rules := filepath.Join(shortTempDir(t), "rules.nft")
		if err := os.WriteFile(rules, []byte(`table inet satest {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 9009 drop
		tcp dport 9010 reject with tcp reset
	}
}
`), 0o600); err != nil {
			t.Fatal(err)
		}
		ipCmd(t, "netns", "exec", ns, "nft", "-f", rules)

		start := time.Now()
		_, err := dial(t, "127.0.0.1:9009", 300*time.Millisecond)
		wantStatus(t, err, codes.DeadlineExceeded, contract.ReasonTimeout)
		if el := time.Since(start); el < 300*time.Millisecond || el > 10*time.Second {
			t.Errorf("dropped dial returned after %s, want the 300ms timeout", el)
		}
		_, err = dial(t, "127.0.0.1:9010", 5*time.Second)
		wantStatus(t, err, codes.Unavailable, contract.ReasonConnectionRefused)

		for _, id := range ids {
			if _, err := sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: id}); err != nil {
				t.Errorf("close %s: %v", id, err)
			}
		}
	})

	r, err := sc.ListSockets(ctxT(t), &sockagentv1.ListSocketsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.GetSockets()); n != 0 {
		t.Errorf("%d sockets left open, want 0: %v", n, r.GetSockets())
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}
