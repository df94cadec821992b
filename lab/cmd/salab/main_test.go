package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/lab"
)

var sockagentBin string

func TestMain(m *testing.M) {
	attachAgents = true // a crashed test leaves no agent running
	// Under .ci/cover the binaries this test starts are built with coverage (GOFLAGS); go test
	// points GOCOVERDIR at a directory it then ignores, so their counters go where the script
	// collects them.
	if d := os.Getenv("SOCKAGENT_GOCOVERDIR"); d != "" {
		_ = os.Setenv("GOCOVERDIR", d)
	}
	code := func() int {
		if os.Geteuid() != 0 || runtime.GOOS != "linux" {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "salab-cmd-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		sockagentBin = filepath.Join(dir, "sockagent")
		if out, err := exec.Command("go", "build", "-o", sockagentBin, "github.com/sockagent/sockagent/agent/cmd/sockagent").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build sockagent: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// salab runs the command in-process.
func salab(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	code = run(ctx, args, &o, &e)
	return o.String(), e.String(), code
}

func TestUsage(t *testing.T) {
	t.Parallel()
	stdout, _, code := salab(t, "--help")
	for _, want := range []string{"salab up", "salab down", "salab cut HOST", "10.77.0.1/24", "--inventory", "after a crash"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
	if code != 0 {
		t.Errorf("--help: exit %d, want 0", code)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Usage:"},
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"up", "--prefix", "Bad"}, `prefix "Bad"`},
		{[]string{"up", "-n", "0"}, "-n 0: give 1 or more hosts"},
		{[]string{"up", "--subnet", "10.77.0.0"}, `--subnet "10.77.0.0"`},
		{[]string{"up", "extra"}, `unexpected argument "extra"`},
		{[]string{"up", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"cut"}, "cut: give one HOST"},
		{[]string{"heal", "h1", "h2"}, "heal: give one HOST"},
		{[]string{"down", "--prefix", "a_b"}, `prefix "a_b"`},
	} {
		_, stderr, code := salab(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("salab %q: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestUpCutHealDown drives a 2-host lab through the command line: up (named hosts), inventory,
// cut, heal, down twice.
func TestUpCutHealDown(t *testing.T) {
	if os.Geteuid() != 0 || runtime.GOOS != "linux" {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run this test, but it needs root on Linux")
		}
		t.Skip("skipping: salab up needs root on Linux (network namespaces); CI runs it as root")
	}
	prefix := fmt.Sprintf("salab-s%d", os.Getpid())
	state := t.TempDir()
	t.Cleanup(func() { _ = lab.Teardown(prefix, state, nil) })
	common := []string{"--prefix", prefix, "--state-dir", state}

	stdout, subnet := upServerClient(t, common)
	want := fmt.Sprintf("# salab %s: 2 hosts\nagents:\n  server: %s.2:7700\n  client: %s.3:7700\n", prefix, subnet, subnet)
	if stdout != want {
		t.Errorf("salab up printed:\n%s\nwant:\n%s", stdout, want)
	}
	if got, _, code := salab(t, append([]string{"inventory"}, common...)...); code != 0 || got != want {
		t.Errorf("salab inventory: exit %d:\n%s\nwant:\n%s", code, got, want)
	}
	if got, _, _ := salab(t, "list"); !slices.Contains(strings.Fields(got), prefix) {
		t.Errorf("salab list: %q, want %s in it", got, prefix)
	}
	stateJSON, err := os.ReadFile(filepath.Join(state, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	cutAndHeal(t, prefix, common)
	downTwice(t, prefix, state, common)

	// A state file whose lab is gone (say, links deleted by hand): no inventory that would
	// send traffic elsewhere.
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "state.json"), stateJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := salab(t, append([]string{"inventory"}, common...)...); code != 1 || !strings.Contains(stderr, "not the lab's bridge") {
		t.Errorf("salab inventory of a lab that is gone: exit %d %q, want 1 and not the lab's bridge", code, stderr)
	}
}

// upServerClient runs `salab up` with hosts server and client on the first of 10.77.48-63.0/24 that no
// other lab uses, and returns what it printed and the subnet's first three bytes.
func upServerClient(t *testing.T, common []string) (stdout, subnet string) {
	t.Helper()
	var stderr string
	code := -1
	for k := 48; k < 64 && code != 0; k++ {
		subnet = fmt.Sprintf("10.77.%d", k)
		t0 := time.Now()
		stdout, stderr, code = salab(t, append([]string{"up", "--names", "server,client", "--agent-bin", sockagentBin,
			"--subnet", subnet + ".0/24"}, common...)...)
		t.Logf("salab up on %s.0/24: exit %d after %s", subnet, code, time.Since(t0).Round(time.Millisecond))
		if !strings.Contains(stderr, "subnet already in use") {
			break
		}
	}
	if code != 0 {
		t.Fatalf("salab up: exit %d\n%s", code, stderr)
	}
	return stdout, subnet
}

// cutAndHeal cuts the lab's second host (client) off and heals it, naming it by name and by
// namespace, and checks its link's state after each; a host the lab lacks is a usage error.
func cutAndHeal(t *testing.T, prefix string, common []string) {
	t.Helper()
	link := strings.TrimSuffix(lab.BridgeName(prefix), "-br") + "-h2"
	linkUp := func() bool {
		out, err := exec.Command("ip", "-j", "link", "show", "dev", link).Output()
		if err != nil {
			t.Fatalf("ip link show %s: %v", link, err)
		}
		var l []struct{ Flags []string }
		if err := json.Unmarshal(out, &l); err != nil || len(l) != 1 {
			t.Fatalf("ip -j link show %s: %v %s", link, err, out)
		}
		return slices.Contains(l[0].Flags, "UP")
	}
	if !linkUp() {
		t.Fatalf("link %s of client is down after up", link)
	}
	// Positional and flag arguments in any order; the host by name or namespace.
	if _, stderr, code := salab(t, append([]string{"cut", "client"}, common...)...); code != 0 || linkUp() {
		t.Errorf("salab cut client: exit %d, link up %v\n%s", code, linkUp(), stderr)
	}
	if _, stderr, code := salab(t, append(append([]string{"heal"}, common...), prefix+"-h2")...); code != 0 || !linkUp() {
		t.Errorf("salab heal %s-h2: exit %d, link up %v\n%s", prefix, code, linkUp(), stderr)
	}
	if _, stderr, code := salab(t, append([]string{"cut", "h9"}, common...)...); code != 2 || !strings.Contains(stderr, `no host "h9"`) {
		t.Errorf("salab cut h9: exit %d, %q; want 2 and no host", code, stderr)
	}
}

// downTwice runs `salab down` twice (the second finds nothing to do) and checks that nothing
// of the lab is left: no namespace or link, no state file, no inventory.
func downTwice(t *testing.T, prefix, state string, common []string) {
	t.Helper()
	for i := range 2 {
		if _, stderr, code := salab(t, append([]string{"down"}, common...)...); code != 0 {
			t.Errorf("salab down #%d: exit %d\n%s", i+1, code, stderr)
		}
	}
	if left, err := lab.Leftovers(prefix); err != nil || len(left) > 0 {
		t.Errorf("after down: %v %v, want nothing", left, err)
	}
	if _, err := os.Stat(filepath.Join(state, "state.json")); !os.IsNotExist(err) {
		t.Errorf("state.json after down: %v, want it gone", err)
	}
	if _, stderr, code := salab(t, append([]string{"inventory"}, common...)...); code != 1 || !strings.Contains(stderr, "no lab") {
		t.Errorf("salab inventory after down: exit %d %q, want 1 and no lab", code, stderr)
	}
}
