//go:build linux

package lab_test

// Lab tests (Linux, root; CI runs them as root): a 3-host lab of network namespaces with a
// sockagent process in each; every example scenario runs across the hosts through the built
// sockctl binary; a partition (one host's link set down mid-run) fails the step that crosses
// it with a network reason inside its timeout, and the run still ends, bounded, with the
// other hosts cleaned up. All traffic stays on the lab's bridge and inside its namespaces.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sockagent/sockagent/ctl/matrix"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"github.com/sockagent/sockagent/lab"
	"github.com/sockagent/sockagent/lab/labtest"
)

// The labs these tests make are named salab-t<PID> (TestLab), salab-f<PID>, salab-c<PID>
// salab-m<PID> (the matrix tests) (and salab-s<PID> in lab/cmd/salab), so parallel test processes and a user's own lab
// (salab) never meet, and a crashed test process's labs are found again.
var stalePrefixRE = regexp.MustCompile(`^salab-[tfcsm]([0-9]+)$`)

var (
	testLab                  *lab.Lab // TestLab's lab: sockctl runs only while its routes hold
	sockagentBin, sockctlBin string
	buildErr                 = map[string]error{} // by binary path
)

func TestMain(m *testing.M) {
	// Under .ci/cover the binaries this test starts are built with coverage (GOFLAGS); go test
	// points GOCOVERDIR at a directory it then ignores, so their counters go where the script
	// collects them.
	if d := os.Getenv("SOCKAGENT_GOCOVERDIR"); d != "" {
		_ = os.Setenv("GOCOVERDIR", d)
	}
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // the tests skip, saying why
		}
		if os.Getenv("LAB_ATTACHED_RUNNER") != "" {
			return m.Run() // TestAttachedAgentsDieWithTheirRunner's child: its parent built the agent
		}
		dir, err := os.MkdirTemp("", "salab-test-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		sockagentBin, sockctlBin = filepath.Join(dir, "sockagent"), filepath.Join(dir, "sockctl")
		for bin, pkg := range map[string]string{
			sockagentBin: "github.com/sockagent/sockagent/agent/cmd/sockagent",
			sockctlBin:   "github.com/sockagent/sockagent/ctl/cmd/sockctl",
		} {
			if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
				buildErr[bin] = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
			}
		}
		removeStaleLabs()
		return m.Run()
	}()
	os.Exit(code)
}

// removeStaleLabs tears down the labs of earlier test processes that died before their
// cleanup ran (their pid is gone).
func removeStaleLabs() {
	prefixes, err := lab.Labs()
	if err != nil {
		fmt.Fprintln(os.Stderr, "list labs:", err)
		return
	}
	for _, p := range prefixes {
		m := stalePrefixRE.FindStringSubmatch(p)
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		if pid == os.Getpid() || errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			fmt.Fprintf(os.Stderr, "removing stale lab %s\n", p)
			if err := lab.Teardown(p, "", nil); err != nil {
				fmt.Fprintf(os.Stderr, "remove stale lab %s: %v\n", p, err)
			}
		}
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		labtest.SkipOutsideCI(t, "lab tests need root (network namespaces, veth, bridge); CI runs them as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip not found: install iproute2 (.ci/run does)")
	}
}

// requireBinaries fails the test when TestMain could not build one of these binaries.
func requireBinaries(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if err := buildErr[b]; err != nil {
			t.Fatal(err)
		}
	}
}

// upOnFreeSubnet runs lab.Up on 10.77.K.0/24 for the first K from firstK on that no other lab
// (a user's, another test process's) holds.
func upOnFreeSubnet(t *testing.T, cfg lab.Config, firstK int) (*lab.Lab, error) {
	t.Helper()
	for k := firstK; k < firstK+16; k++ {
		cfg.Subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(k), 0}), 24)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		l, err := lab.Up(ctx, cfg)
		cancel()
		if !errors.Is(err, lab.ErrSubnetInUse) {
			return l, err
		}
		t.Logf("%s: %v", cfg.Subnet, err)
	}
	return nil, fmt.Errorf("no free subnet in 10.77.%d-%d.0/24", firstK, firstK+15)
}

// upLab starts a lab of n hosts with a prefix of its own, its agents on labPolicy, on 10.77.0.0/24 or, when another
// lab holds that, the next free 10.77.K.0/24. Cleanup removes it and checks nothing is left.
func upLab(t *testing.T, prefix string, n int) *lab.Lab {
	t.Helper()
	l, err := upOnFreeSubnet(t, lab.Config{Prefix: prefix, Hosts: n, AgentBin: sockagentBin, AgentArgs: labPolicyArgs(t), Attached: true}, 0)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range l.Hosts {
				if data, err := os.ReadFile(h.Log); err == nil {
					t.Logf("agent log of %s (%s):\n%s", h.Name, h.Log, tail(string(data), 4000))
				}
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
		left, err := lab.Leftovers(prefix)
		if err != nil {
			t.Error(err)
		}
		if len(left) > 0 {
			t.Errorf("after down, still there: %v", left)
		}
		if _, err := os.Stat(l.StateDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after down, state directory %s: %v, want it gone", l.StateDir, err)
		}
		for _, h := range l.Hosts {
			if isAlive(h.PID) {
				t.Errorf("after down, agent pid %d of %s still runs", h.PID, h.Name)
			}
		}
	})
	return l
}

// dieWithTest makes cmd's process die when the test process does (SIGKILL from the kernel), so
// a crashed or killed test leaves no child behind.
func dieWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func isAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i > 0 && i+2 < len(data) && data[i+2] != 'Z'
}

// agentClient is a control connection to one lab agent.
type agentClient struct {
	name    string
	sockets sockagentv1.SocketServiceClient
	info    sockagentv1.AgentServiceClient
}

func connect(t *testing.T, l *lab.Lab) map[string]agentClient {
	t.Helper()
	out := map[string]agentClient{}
	for _, h := range l.Hosts {
		conn, err := grpc.NewClient(h.AgentAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		out[h.Name] = agentClient{name: h.Name, sockets: sockagentv1.NewSocketServiceClient(conn), info: sockagentv1.NewAgentServiceClient(conn)}
	}
	return out
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// table returns the agent's socket table; GetInfo's open_sockets must agree. The two are
// separate calls: a socket a finished run's call is still closing (its RPC cancelled, not yet
// returned) can be in one and not the other, so they are read again, for at most 5 s, until
// they agree; a socket that stays in one only is a leak, and an error.
func (a agentClient) table(t *testing.T) []*sockagentv1.Socket {
	t.Helper()
	ctx := ctxTimeout(t, 10*time.Second)
	end := time.Now().Add(5 * time.Second)
	for {
		r, err := a.sockets.ListSockets(ctx, &sockagentv1.ListSocketsRequest{}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("%s: ListSockets: %v", a.name, err)
		}
		info, err := a.info.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
		if err != nil {
			t.Fatalf("%s: GetInfo: %v", a.name, err)
		}
		if int(info.GetOpenSockets()) == len(r.GetSockets()) {
			return r.GetSockets()
		}
		if time.Now().After(end) {
			t.Errorf("%s: GetInfo open_sockets %d, ListSockets has %d, for 5 s", a.name, info.GetOpenSockets(), len(r.GetSockets()))
			return r.GetSockets()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantEmpty(t *testing.T, a agentClient) {
	t.Helper()
	if s := a.table(t); len(s) != 0 {
		t.Errorf("%s: %d socket(s) left open, want 0: %v", a.name, len(s), s)
	}
}

// sockctl runs the sockctl binary with a bound and returns stdout, stderr and exit code.
func sockctl(t *testing.T, timeout time.Duration, args ...string) (string, string, int) {
	t.Helper()
	if err := testLab.CheckRoutes(); err != nil {
		t.Fatalf("the lab's addresses are not routed over its bridge; not running sockctl: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sockctlBin, args...)
	dieWithTest(cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("sockctl %s: still running after %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), timeout, &stdout, &stderr)
	}
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sockctl: %v", err)
	}
	return stdout.String(), stderr.String(), code
}

// agentNames reads the names of a scenario's agents, in file order.
func agentNames(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Agents yaml.Node `yaml:"agents"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var names []string
	for i := 0; i+1 < len(doc.Agents.Content); i += 2 {
		names = append(names, doc.Agents.Content[i].Value)
	}
	if len(names) == 0 {
		t.Fatalf("%s: no agents", path)
	}
	return names
}

var (
	validRE   = regexp.MustCompile(`: ok: (\d+) steps, (\d+) agents`)
	summaryRE = regexp.MustCompile(`(?m)^(\d+) passed, (\d+) failed(, \d+ skipped)?\n?\z`)
)

func TestLab(t *testing.T) {
	requireRoot(t)
	requireBinaries(t, sockagentBin)
	start := time.Now()
	l := upLab(t, fmt.Sprintf("salab-t%d", os.Getpid()), 3)
	testLab = l
	t.Logf("lab %s up in %s: %s, bridge %s", l.Prefix, time.Since(start).Round(time.Millisecond), l.Subnet, l.Bridge)
	agents := connect(t, l)

	t.Run("hosts", func(t *testing.T) { testHosts(t, l, agents) })

	t.Run("examples", func(t *testing.T) {
		requireBinaries(t, sockctlBin)
		files, err := filepath.Glob("../examples/*.yaml")
		if err != nil || len(files) < 5 {
			t.Fatalf("examples: %v %v, want at least 5 files", files, err)
		}
		for _, f := range files {
			if data, err := os.ReadFile(f); err == nil && matrix.IsMatrix(data) {
				t.Run(filepath.Base(f), func(t *testing.T) { testMatrixExample(t, l, f) })
				continue
			}
			t.Run(filepath.Base(f), func(t *testing.T) {
				stdout, stderr, code := sockctl(t, 60*time.Second, "validate", f)
				m := validRE.FindStringSubmatch(stdout)
				if code != 0 || m == nil {
					t.Fatalf("sockctl validate %s: exit %d\n%s%s", f, code, stdout, stderr)
				}
				steps := m[1]
				// The example's agents onto h1..h3, round-robin: distinct hosts for up to 3.
				args := []string{"run", f}
				for i, name := range agentNames(t, f) {
					args = append(args, "--agent", name+"="+l.Hosts[i%len(l.Hosts)].AgentAddr)
				}
				t0 := time.Now()
				stdout, stderr, code = sockctl(t, 60*time.Second, args...)
				t.Logf("sockctl %s: exit %d in %s", strings.Join(args, " "), code, time.Since(t0).Round(time.Millisecond))
				if code != 0 {
					t.Errorf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
				}
				if m := summaryRE.FindStringSubmatch(stdout); m == nil || m[1] != steps || m[2] != "0" || m[3] != "" {
					t.Errorf("report does not end with %q:\n%s", steps+" passed, 0 failed", stdout)
				}
				for _, h := range l.Hosts {
					wantEmpty(t, agents[h.Name])
				}
			})
		}
	})

	t.Run("multicast", func(t *testing.T) { testMulticast(t, l, agents) })

	t.Run("partition", func(t *testing.T) {
		requireBinaries(t, sockctlBin)
		testPartition(t, l, agents)
	})

	t.Run("unreachable agent", func(t *testing.T) { testUnreachable(t, l, agents) })
}

// testHosts: each host's agent runs in its namespace (only lo and eth0 with the host's own
// address), and the inventory names them in order on port 7700.
func testHosts(t *testing.T, l *lab.Lab, agents map[string]agentClient) {
	for _, h := range l.Hosts {
		info, err := agents[h.Name].info.GetInfo(ctxTimeout(t, 5*time.Second), &sockagentv1.GetInfoRequest{})
		if err != nil {
			t.Fatalf("%s: GetInfo: %v", h.Name, err)
		}
		if int(info.GetPid()) != h.PID || !slices.Contains(agentPIDs(), h.PID) {
			t.Errorf("%s: agent pid %d, lab says %d, running agents %v", h.Name, info.GetPid(), h.PID, agentPIDs())
		}
		var got []string
		for _, i := range info.GetInterfaces() {
			got = append(got, i.GetName()+"="+strings.Join(i.GetAddresses(), ","))
		}
		// Only lo and eth0 with the host's own address: the agent runs in its namespace.
		if len(got) != 2 || !strings.HasPrefix(got[0], "lo=127.0.0.1/8") || !strings.HasPrefix(got[1], "eth0="+h.Addr.String()+"/24") {
			t.Errorf("%s: interfaces %v, want lo and eth0=%s/24", h.Name, got, h.Addr)
		}
	}
	want := fmt.Sprintf("# salab %s: 3 hosts\nagents:\n  h1: %s\n  h2: %s\n  h3: %s\n", l.Prefix,
		l.Hosts[0].AgentAddr, l.Hosts[1].AgentAddr, l.Hosts[2].AgentAddr)
	if got := l.Inventory(); got != want {
		t.Errorf("inventory:\n%s\nwant:\n%s", got, want)
	}
	if !strings.HasSuffix(l.Hosts[0].AgentAddr, ":7700") || l.Hosts[0].Addr != l.Subnet.Addr().Next().Next() {
		t.Errorf("h1 at %s, want .2 of %s, port 7700", l.Hosts[0].AgentAddr, l.Subnet)
	}
}

// testUnreachable: an agent cut off before the run is reported by name, no step runs, and
// the run exits 1, bounded.
func testUnreachable(t *testing.T, l *lab.Lab, agents map[string]agentClient) {
	requireBinaries(t, sockctlBin)
	h1, h3 := l.Hosts[0], l.Hosts[2]
	if err := l.Cut(h3.Name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Heal(h3.Name); err != nil {
			t.Error(err)
		}
		wantEmpty(t, agents[h3.Name])
	})
	t0 := time.Now()
	stdout, stderr, code := sockctl(t, 30*time.Second, "run", "../examples/hello-tcp.yaml",
		"--agent", "server="+h3.AgentAddr, "--agent", "client="+h1.AgentAddr)
	el := time.Since(t0)
	t.Logf("exit %d after %s\n%s%s", code, el.Round(time.Millisecond), stdout, stderr)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if want := "agent server (" + h3.AgentAddr + ") unreachable"; !strings.Contains(stdout, want) {
		t.Errorf("stdout does not say %q", want)
	}
	if !strings.HasSuffix(stdout, "0 passed, 0 failed\n") {
		t.Errorf("stdout does not end with \"0 passed, 0 failed\": a step ran")
	}
	if el > 15*time.Second {
		t.Errorf("took %s to find the agent unreachable, want a bounded check", el)
	}
	wantEmpty(t, agents[h1.Name])
}

// report is the part of `sockctl run -o json` the partition test reads.
type report struct {
	Passed, Failed, Skipped int
	Steps                   []struct {
		Index, Name, Agent, Action, Status, Reason, Message string
		DurationMS                                          float64 `json:"duration_ms"`
	}
	Cleanup []struct {
		Agent, Socket, Alias, Status, Error string
	}
}

// partitionScenario: h1 waits at a gate (an accept the test releases) so that the test can
// cut h2 off between two steps; then h1 dials h2 across the cut.
const partitionScenario = `name: partition
agents: {h1: local, h2: local, h3: local}  # replaced by --inventory
steps:
  - {on: h2, listen: {network: tcp, address: "0.0.0.0:0"}, as: lis2}
  - {on: h3, listen: {network: tcp, address: "0.0.0.0:0"}, as: lis3}
  - {on: h1, listen: {network: tcp, address: "0.0.0.0:0"}, as: gate}
  - {on: h1, name: wait at the gate, accept: {socket: gate, timeout: 20s}, as: opened}
  - {on: h1, name: dial across the cut, dial: {network: tcp, address: "${h2.host}:${lis2.local_port}", timeout: 2s}, as: across}
  - {on: h1, name: never runs, send: {socket: across, data: "unreachable"}}
`

const dialTimeout = 2 * time.Second

func testPartition(t *testing.T, l *lab.Lab, agents map[string]agentClient) {
	h1, _ := l.Host("h1")
	run := startPartitionRun(t, l)
	healed := false
	defer func() {
		if !healed {
			_ = l.Heal("h2")
		}
	}()

	// Wait until h1's accept is pending on the gate: then the run stands between two steps.
	gate := waitGate(t, agents["h1"], run)
	_, port, err := net.SplitHostPort(gate)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Cut("h2"); err != nil {
		t.Fatal(err)
	}
	// Release the gate: connect to it from the root namespace, over the bridge.
	c, err := net.DialTimeout("tcp", net.JoinHostPort(h1.Addr.String(), port), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the gate: %v", err)
	}
	defer c.Close()
	released := time.Now()

	select {
	case err = <-run.exited:
	case <-run.ctx.Done():
		t.Fatalf("sockctl still running 30s after start\nstdout:\n%s\nstderr:\n%s", &run.stdout, &run.stderr)
	}
	afterRelease, total := time.Since(released), time.Since(run.start)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("sockctl run: %v, want exit status 1\nstderr:\n%s", err, &run.stderr)
	}
	var rep report
	if err := json.Unmarshal(run.stdout.Bytes(), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, &run.stdout)
	}
	t.Logf("run took %s, %s after the gate opened; report: %d passed, %d failed, %d skipped",
		total.Round(time.Millisecond), afterRelease.Round(time.Millisecond), rep.Passed, rep.Failed, rep.Skipped)
	checkPartitionReport(t, rep)
	if afterRelease > dialTimeout+10*time.Second {
		t.Errorf("the run ended %s after the gate opened, want the dial's %s plus a bounded cleanup", afterRelease, dialTimeout)
	}
	wantEmpty(t, agents["h1"])
	wantEmpty(t, agents["h3"])

	// Heal: h2's agent is still there, with the listener the run could not close.
	if err := l.Heal("h2"); err != nil {
		t.Fatal(err)
	}
	healed = true
	left := agents["h2"].table(t)
	if len(left) != 1 || left[0].GetKind() != sockagentv1.SocketKind_SOCKET_KIND_LISTENER {
		t.Fatalf("h2 after heal: %v, want the one listener lis2", left)
	}
	if _, err := agents["h2"].sockets.Close(ctxTimeout(t, 5*time.Second), &sockagentv1.CloseRequest{SocketId: left[0].GetSocketId()}); err != nil {
		t.Fatalf("close lis2 on h2: %v", err)
	}
	wantEmpty(t, agents["h2"])
}

// partitionRun is `sockctl run` of partitionScenario across the lab, in the background.
type partitionRun struct {
	ctx            context.Context // bounds the run: 30s
	start          time.Time
	stdout, stderr bytes.Buffer
	exited         chan error // Wait's result
}

// startPartitionRun writes partitionScenario and the lab's inventory and starts sockctl on
// them, once the lab's routes are checked.
func startPartitionRun(t *testing.T, l *lab.Lab) *partitionRun {
	t.Helper()
	dir := t.TempDir()
	file, inv := filepath.Join(dir, "partition.yaml"), filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(file, []byte(partitionScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inv, []byte(l.Inventory()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if err := l.CheckRoutes(); err != nil {
		t.Fatal(err)
	}
	r := &partitionRun{ctx: ctx, exited: make(chan error, 1)}
	cmd := exec.CommandContext(ctx, sockctlBin, "run", file, "--inventory", inv, "-o", "json")
	dieWithTest(cmd)
	cmd.Stdout, cmd.Stderr = &r.stdout, &r.stderr
	r.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exited <- cmd.Wait() }()
	return r
}

// waitGate returns the local address of h1's socket with an accept pending (the gate), once
// there is one; it fails the test if the run ends first or none is pending within 15s.
func waitGate(t *testing.T, h1 agentClient, run *partitionRun) string {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; {
		select {
		case err := <-run.exited:
			t.Fatalf("sockctl ended before the gate (%v)\nstdout:\n%s\nstderr:\n%s", err, &run.stdout, &run.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no accept pending on h1 after 15s; h1 has %v", h1.table(t))
		}
		gate := ""
		for _, s := range h1.table(t) {
			if s.GetPendingCalls() == 1 {
				gate = s.GetLocalAddress()
			}
		}
		if gate != "" {
			return gate
		}
		time.Sleep(20 * time.Millisecond) // polling h1's table, bounded by deadline
	}
}

// checkPartitionReport checks the report of the partition run: the dial across the cut
// failed with a network reason within its timeout, the step after it was skipped, and
// cleanup closed h1's and h3's sockets and failed on h2's listener.
func checkPartitionReport(t *testing.T, rep report) {
	t.Helper()
	byName := map[string]int{}
	for i, s := range rep.Steps {
		byName[s.Name] = i
		t.Logf("step %s %-22s %s %s %-7s %s %.0fms %s", s.Index, s.Name, s.Agent, s.Action, s.Status, s.Reason, s.DurationMS, s.Message)
	}
	for _, c := range rep.Cleanup {
		t.Logf("cleanup %s %s (%s): %s %s", c.Agent, c.Socket, c.Alias, c.Status, c.Error)
	}
	i, ok := byName["dial across the cut"]
	if !ok {
		t.Fatalf("no step %q in the report", "dial across the cut")
	}
	cut := rep.Steps[i]
	if cut.Status != "failed" || (cut.Reason != "TIMEOUT" && cut.Reason != "HOST_UNREACHABLE") {
		t.Errorf("dial across the cut: %s %s %q, want failed with TIMEOUT or HOST_UNREACHABLE", cut.Status, cut.Reason, cut.Message)
	}
	if d := time.Duration(cut.DurationMS * float64(time.Millisecond)); d > dialTimeout+time.Second {
		t.Errorf("dial across the cut took %s, want at most its %s timeout (+1s)", d, dialTimeout)
	}
	if rep.Passed != 4 || rep.Failed != 1 || rep.Skipped != 1 {
		t.Errorf("report %d passed, %d failed, %d skipped; want 4, 1, 1", rep.Passed, rep.Failed, rep.Skipped)
	}
	if j, ok := byName["never runs"]; !ok || rep.Steps[j].Status != "skipped" {
		t.Errorf("the step after the failure: %+v, want skipped", rep.Steps)
	}
	// Cleanup: h1's and h3's sockets closed; h2's listener could not be (h2 is cut off).
	var closed, failed []string
	for _, c := range rep.Cleanup {
		if c.Status == "failed" {
			failed = append(failed, c.Agent+":"+c.Alias)
		} else {
			closed = append(closed, c.Agent+":"+c.Alias)
		}
	}
	slices.Sort(closed)
	if !slices.Equal(failed, []string{"h2:lis2"}) || !slices.Equal(closed, []string{"h1:gate", "h1:opened", "h3:lis3"}) {
		t.Errorf("cleanup closed %v, failed %v; want closed [h1:gate h1:opened h3:lis3], failed [h2:lis2]", closed, failed)
	}
}

// removeStaleTables deletes the bridge tables an earlier run of TestUpChecksTheBridge left in
// the root namespace when it crashed: named salab_fPID after a process that is gone.
func removeStaleTables(t *testing.T) {
	t.Helper()
	out, err := exec.Command("nft", "list", "tables", "bridge").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables bridge: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "table bridge salab_f")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(name)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its test still runs
		}
		if out, err := exec.Command("nft", "delete", "table", "bridge", "salab_f"+name).CombinedOutput(); err != nil {
			t.Errorf("remove the stale table salab_f%s: %v\n%s", name, err, out)
		}
	}
}

// TestUpChecksTheBridge: when frames between two hosts are dropped on the bridge (here by an
// nft rule of the test's own; in the field by a FORWARD drop policy), Up fails saying so, in
// bounded time, and leaves nothing behind.
func TestUpChecksTheBridge(t *testing.T) {
	requireRoot(t)
	requireBinaries(t, sockagentBin)
	if _, err := exec.LookPath("nft"); err != nil {
		labtest.SkipOutsideCI(t, "nft not installed (.ci/run installs nftables)")
	}
	removeStaleTables(t)
	prefix := fmt.Sprintf("salab-f%d", os.Getpid())
	table := strings.ReplaceAll(prefix, "-", "_")
	link := strings.TrimSuffix(lab.BridgeName(prefix), "-br") + "-h2"
	rules := filepath.Join(t.TempDir(), "drop.nft")
	if err := os.WriteFile(rules, []byte(`table bridge `+table+` {
	chain filter_forward {
		type filter hook forward priority 0; policy accept;
		iifname "`+link+`" drop
	}
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nft", "-f", rules).CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("nft", "delete", "table", "bridge", table).CombinedOutput(); err != nil {
			t.Errorf("nft delete table: %v\n%s", err, out)
		}
		_ = lab.Teardown(prefix, "", nil)
	})
	before := agentPIDs()
	t0 := time.Now()
	l, err := upOnFreeSubnet(t, lab.Config{Prefix: prefix, Hosts: 2, AgentBin: sockagentBin, Attached: true}, 32)
	el := time.Since(t0)
	if err == nil {
		_ = l.Down()
		t.Fatal("Up succeeded with h2 cut off from h1 on the bridge")
	}
	t.Logf("Up failed after %s: %v", el.Round(time.Millisecond), err)
	if !strings.Contains(err.Error(), "do not reach each other over the bridge") || !strings.Contains(err.Error(), "host h1 cannot connect to") {
		t.Errorf("error does not say that h1 cannot reach h2 over the bridge")
	}
	if el > 15*time.Second {
		t.Errorf("Up took %s to fail, want a bounded check", el)
	}
	if left, err := lab.Leftovers(prefix); err != nil || len(left) > 0 {
		t.Errorf("after the failed Up: %v %v, want nothing left", left, err)
	}
	if pids := slices.DeleteFunc(agentPIDs(), func(p int) bool { return slices.Contains(before, p) }); len(pids) > 0 {
		t.Errorf("after the failed Up, its agents still run: pids %v", pids)
	}
}

// agentPIDs returns the pids of the running processes of the sockagent binary.
func agentPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !isAlive(pid) {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(data), sockagentBin+"\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestTeardownAfterCrash: what a crashed `salab up` leaves (namespaces, one with a process in
// it, links, no state file) is found by name and removed; twice is fine.
func TestTeardownAfterCrash(t *testing.T) {
	requireRoot(t)
	prefix := fmt.Sprintf("salab-c%d", os.Getpid())
	base := strings.TrimSuffix(lab.BridgeName(prefix), "-br")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { _ = lab.Teardown(prefix, t.TempDir(), nil) })
	run("netns", "add", prefix+"-h1")
	run("netns", "add", prefix+"-h2")
	run("link", "add", base+"-br", "type", "bridge")
	run("link", "add", base+"-h2", "type", "veth", "peer", "name", "eth0", "netns", prefix+"-h2")
	// A process inside a namespace keeps it alive: teardown must stop it.
	sleeper := exec.Command("ip", "netns", "exec", prefix+"-h1", "sleep", "300")
	dieWithTest(sleeper)
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sleeper.Wait() }()
	// Another lab's things look alike but are not ours.
	other := prefix + "-h1-h1"
	run("netns", "add", other)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", other).Run() })

	left, err := lab.Leftovers(prefix)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"netns " + prefix + "-h1", "netns " + prefix + "-h2", "link " + base + "-br", "link " + base + "-h2"}
	slices.Sort(left)
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Fatalf("leftovers %v, want %v", left, want)
	}
	for range 2 {
		if err := lab.Teardown(prefix, t.TempDir(), nil); err != nil {
			t.Fatalf("teardown: %v", err)
		}
		if left, err := lab.Leftovers(prefix); err != nil || len(left) > 0 {
			t.Fatalf("after teardown: %v %v, want nothing", left, err)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the process inside the namespace still runs after teardown")
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err != nil || !strings.Contains(string(out), other) {
		t.Errorf("namespace %s of another lab was removed (%v)", other, err)
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ prefix, bridge string }{
		{"salab", "salab-br"},
		{"salab-t1", "salab-t1-br"},
		{"abcdefghij", "abcdefghij-br"},
		{"salab-t4194304", ""}, // too long for link names: shortened
	} {
		got := lab.BridgeName(tc.prefix)
		if tc.bridge != "" && got != tc.bridge {
			t.Errorf("BridgeName(%q) = %q, want %q", tc.prefix, got, tc.bridge)
		}
		if veth := strings.TrimSuffix(got, "-br") + "-h250"; len(veth) > 15 {
			t.Errorf("prefix %q: link %q is longer than 15 bytes", tc.prefix, veth)
		}
	}
	if lab.BridgeName("salab-t4194304") == lab.BridgeName("salab-t4194305") {
		t.Error("two long prefixes share a bridge name")
	}
	for _, p := range []string{"", "Salab", "1lab", "lab-", "a b", strings.Repeat("a", 33)} {
		if lab.CheckPrefix(p) == nil {
			t.Errorf("CheckPrefix(%q) = nil, want an error", p)
		}
	}
}

// TestAttachedAgentsDieWithTheirRunner: a test process that starts a lab with Attached and is
// then killed (SIGKILL: no cleanup runs) leaves no agent running; the next run's
// removeStaleLabs removes the rest by its prefix. The runner is this test binary, run again
// as a child that brings a one-host lab up and waits.
func TestAttachedAgentsDieWithTheirRunner(t *testing.T) {
	if os.Getenv("LAB_ATTACHED_RUNNER") != "" {
		// salab-c<PID>: once this runner is dead, its lab matches stalePrefixRE and goes with
		// the next test run.
		prefix := fmt.Sprintf("salab-c%d", os.Getpid())
		sockagentBin = os.Getenv("LAB_ATTACHED_AGENT")
		l, err := upOnFreeSubnet(t, lab.Config{Prefix: prefix, Hosts: 1, AgentBin: sockagentBin, Attached: true}, 48)
		if err != nil {
			t.Fatalf("lab up: %v", err)
		}
		fmt.Printf("LAB %s AGENT %d\n", prefix, l.Hosts[0].PID)
		time.Sleep(time.Minute) // the parent kills this process long before
		return
	}
	requireRoot(t)
	requireBinaries(t, sockagentBin)
	cmd := exec.Command(os.Args[0], "-test.run=^TestAttachedAgentsDieWithTheirRunner$", "-test.v")
	cmd.Env = append(os.Environ(), "LAB_ATTACHED_RUNNER=1", "LAB_ATTACHED_AGENT="+sockagentBin)
	dieWithTest(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("salab-c%d", cmd.Process.Pid)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err := lab.Teardown(prefix, "", nil); err != nil {
			t.Errorf("teardown %s: %v", prefix, err)
		}
	})
	pidc := make(chan int, 1)
	go func() {
		var lines bytes.Buffer
		buf := make([]byte, 4096)
		for {
			n, err := out.Read(buf)
			lines.Write(buf[:n])
			if m := regexp.MustCompile(`(?m)^LAB ` + prefix + ` AGENT ([0-9]+)$`).FindSubmatch(lines.Bytes()); m != nil {
				pid, _ := strconv.Atoi(string(m[1]))
				pidc <- pid
				return
			}
			if err != nil {
				close(pidc)
				return
			}
		}
	}()
	var agentPID int
	select {
	case pid, ok := <-pidc:
		if !ok {
			t.Fatal("the runner ended without bringing its lab up")
		}
		agentPID = pid
	case <-time.After(60 * time.Second):
		t.Fatal("the runner did not bring its lab up within 60s")
	}
	if !isAlive(agentPID) {
		t.Fatalf("agent %d is not running while its runner is", agentPID)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for isAlive(agentPID) {
		if time.Now().After(deadline) {
			t.Fatalf("agent %d still runs 10s after its runner was killed", agentPID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
