//go:build linux

package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/lab"

	"github.com/sockagent/sockagent/lab/labtest"
)

// matrixRun is one `sockctl matrix ... -o json` process: its exit code, its report, and what
// it cost.
type matrixRun struct {
	code   int
	doc    matrixDoc
	stderr string
	wall   time.Duration
	cpu    time.Duration // sockctl's user + system time
	maxRSS int64         // sockctl's peak resident set, KiB
}

type matrixDoc struct {
	Total, Mismatches int
	Cells             []struct {
		Source, Target, Service, Verdict, Expected, Reason string
		OK                                                 bool
		Attempts                                           int
	}
}

// runMatrix runs the built sockctl's matrix on file across l, as a process of its own.
func runMatrix(t *testing.T, l *lab.Lab, inventory, file string, timeout time.Duration) matrixRun {
	t.Helper()
	if err := l.CheckRoutes(); err != nil {
		t.Fatalf("the lab's addresses are not routed over its bridge; not running sockctl: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sockctlBin, "matrix", file, "--inventory", inventory, "-o", "json")
	dieWithTest(cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := matrixRun{wall: time.Since(start), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("sockctl matrix: still running after %s\n%s", timeout, &stderr)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss
	}
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if err := json.Unmarshal(stdout.Bytes(), &r.doc); err != nil {
		t.Fatalf("sockctl matrix -o json: exit %d, %v\nstdout:\n%s\nstderr:\n%s", r.code, err, &stdout, &stderr)
	}
	return r
}

func requireNft(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		labtest.SkipOutsideCI(t, "nft not installed (.ci/run installs nftables)")
	}
}

func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLabMatrix: a TCP and UDP matrix across 10 namespace hosts, agents as processes: every
// cell open. Then nftables in h3's namespace drops TCP 8080 and rejects UDP 5514: exactly
// those cells are filtered and closed, the default table catches them (exit 1) and a table
// that expects them passes (exit 0). Nothing is left open on any agent.
func TestLabMatrix(t *testing.T) {
	requireRoot(t)
	requireNft(t)
	requireBinaries(t, sockagentBin, sockctlBin)
	const n = 10
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("h%d", i+1)
	}
	labels, err := lab.ParseLabels("h1-h5:role=web,h6-h10:role=db", names)
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("salab-m%d", os.Getpid())
	l, err := upOnFreeSubnet(t, lab.Config{Prefix: prefix, Hosts: n, AgentBin: sockagentBin, Attached: true, Labels: labels}, 64)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	inv := l.Inventory()
	if !strings.Contains(inv, "  h6: {address: "+l.Hosts[5].AgentAddr+", labels: {role: db}}\n") {
		t.Fatalf("inventory without labels:\n%s", inv)
	}
	invFile := writeTemp(t, "inventory.yaml", inv)
	const body = `services:
  web: {network: tcp, port: 8080}
  syslog: {network: udp, port: 5514}
  admin: {network: tcp, port: 9090}
sources: [all]
targets: [{role: web}, {role: db}]
probe: {timeout: 300ms, spacing: 100ms}
`
	plain := writeTemp(t, "plain.yaml", "name: plain\n"+body+"expect: {default: open}\n")
	r := runMatrix(t, l, invFile, plain, time.Minute)
	if r.code != 0 || r.doc.Total != 3*n*(n-1) || r.doc.Mismatches != 0 {
		t.Fatalf("all open: exit %d, %d cells, %d mismatches, want 0, %d, 0\n%s", r.code, r.doc.Total, r.doc.Mismatches, 3*n*(n-1), r.stderr)
	}
	t.Logf("%d cells all open in %s", r.doc.Total, r.wall.Round(time.Millisecond))

	rules := writeTemp(t, "h3.nft", `table inet satest {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 8080 drop
		udp dport 5514 reject with icmpx port-unreachable
	}
}
`)
	if out, err := exec.Command("ip", "netns", "exec", l.Hosts[2].Namespace, "nft", "-f", rules).CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", l.Hosts[2].Namespace, err, out)
	}
	r = runMatrix(t, l, invFile, plain, time.Minute)
	if r.code != 1 || r.doc.Mismatches != 2*(n-1) {
		t.Errorf("with h3's firewall: exit %d, %d mismatches; want 1, %d\n%s", r.code, r.doc.Mismatches, 2*(n-1), r.stderr)
	}
	for _, c := range r.doc.Cells {
		want, reason, attempts := "open", "", 1
		switch {
		case c.Target == "h3" && c.Service == "web":
			want, reason, attempts = "filtered", "TIMEOUT", 2
		case c.Target == "h3" && c.Service == "syslog":
			want, reason = "closed", "CONNECTION_REFUSED"
		}
		if c.Verdict != want || c.Reason != reason || c.Attempts != attempts || c.OK != (want == "open") {
			t.Errorf("%s -> %s %s: %s %s after %d attempts (ok %v); want %s %s after %d", c.Source, c.Target, c.Service, c.Verdict, c.Reason, c.Attempts, c.OK, want, reason, attempts)
		}
	}
	expected := writeTemp(t, "expected.yaml", "name: expected\n"+body+`expect:
  default: open
  rules:
    - {to: h3, service: web, expect: filtered}
    - {to: h3, service: syslog, expect: closed}
`)
	r = runMatrix(t, l, invFile, expected, time.Minute)
	if r.code != 0 || r.doc.Mismatches != 0 {
		t.Errorf("with the expected table: exit %d, %d mismatches; want 0, 0\n%s", r.code, r.doc.Mismatches, r.stderr)
	}
	agents := connect(t, l)
	for _, h := range l.Hosts {
		wantEmpty(t, agents[h.Name])
	}
}

// TestLabMatrixScale: one sockctl drives every host of the lab, agents as processes: an N x N
// TCP matrix, every cell open, several runs in a row with no false filtered cell, each within
// its bound. CI runs 20 hosts, 3 runs; SALAB_MATRIX_HOSTS and SALAB_MATRIX_RUNS scale it up
// by hand (50 and 100 hosts, 10 runs). Wall time, sockctl's CPU and peak RSS are logged.
func TestLabMatrixScale(t *testing.T) {
	requireRoot(t)
	requireBinaries(t, sockagentBin, sockctlBin)
	n, runs := envInt(t, "SALAB_MATRIX_HOSTS", 20), envInt(t, "SALAB_MATRIX_RUNS", 3)
	// The bounds of issue 14 on the 2-core CI machine: 100 x 100 in 3s, 50 x 50 in 1s; 20 x
	// 20 shares 50's.
	bound := time.Second
	if n > 50 {
		bound = 3 * time.Second
	}
	// The prefix of TestLabMatrix: neither test is parallel, and each takes its lab down.
	prefix := fmt.Sprintf("salab-m%d", os.Getpid())
	t0 := time.Now()
	l, err := upOnFreeSubnet(t, lab.Config{Prefix: prefix, Hosts: n, AgentBin: sockagentBin, Attached: true}, 96)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Logf("lab of %d hosts up in %s", n, time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	invFile := writeTemp(t, "inventory.yaml", l.Inventory())
	file := writeTemp(t, "scale.yaml", `name: scale
services: {web: {network: tcp, port: 8080}}
sources: [all]
targets: [all]
expect: {default: open}
probe: {concurrency: 128}
`)
	for i := range runs {
		r := runMatrix(t, l, invFile, file, time.Minute)
		if r.code != 0 || r.doc.Total != n*(n-1) || r.doc.Mismatches != 0 {
			bad := 0
			for _, c := range r.doc.Cells {
				if !c.OK && bad < 10 {
					t.Errorf("run %d: %s -> %s: %s %s", i+1, c.Source, c.Target, c.Verdict, c.Reason)
					bad++
				}
			}
			t.Fatalf("run %d: exit %d, %d cells, %d not open\n%s", i+1, r.code, r.doc.Total, r.doc.Mismatches, r.stderr)
		}
		t.Logf("run %d: %d x %d = %d cells open in %s; sockctl CPU %s (%.0f%% of wall), peak RSS %.1f MiB",
			i+1, n, n, r.doc.Total, r.wall.Round(time.Millisecond), r.cpu.Round(time.Millisecond), 100*r.cpu.Seconds()/r.wall.Seconds(), float64(r.maxRSS)/1024)
		if r.wall > bound {
			t.Errorf("run %d: %s, want at most %s", i+1, r.wall.Round(time.Millisecond), bound)
		}
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 2 || v > 250 {
		t.Fatalf("%s=%q: give 2 to 250", name, s)
	}
	return v
}

// testMatrixExample runs a matrix example across the lab's three hosts, labelled as the
// example's agents are (h1 and h2 web, h3 db): every cell as expected, nothing left open.
func testMatrixExample(t *testing.T, l *lab.Lab, file string) {
	var inv strings.Builder
	inv.WriteString("agents:\n")
	for i, h := range l.Hosts {
		role := "web"
		if i == 2 {
			role = "db"
		}
		fmt.Fprintf(&inv, "  %s: {address: %s, labels: {role: %s}}\n", h.Name, h.AgentAddr, role)
	}
	r := runMatrix(t, l, writeTemp(t, "inventory.yaml", inv.String()), file, time.Minute)
	if r.code != 0 || r.doc.Total != 2*3*2 || r.doc.Mismatches != 0 {
		t.Errorf("%s across the lab: exit %d, %d cells, %d mismatches; want 0, 12, 0\n%s", file, r.code, r.doc.Total, r.doc.Mismatches, r.stderr)
	}
	agents := connect(t, l)
	for _, h := range l.Hosts {
		wantEmpty(t, agents[h.Name])
	}
}
