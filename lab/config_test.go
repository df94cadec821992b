//go:build linux

package lab

// What a lab refuses before it touches the system, and the helpers behind salab's messages:
// no root needed, nothing created outside the test's temporary directories.

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigRefused: every wrong field is refused as ErrBadConfig, saying which, before Up
// removes or creates anything.
func TestConfigRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"prefix", Config{Prefix: "Bad"}, `prefix "Bad"`},
		{"no hosts", Config{Prefix: "salab-x", Hosts: -1}, "hosts -1: give 1 to 250"},
		{"too many hosts", Config{Prefix: "salab-x", Hosts: 251}, "hosts 251: give 1 to 250"},
		{"names and hosts", Config{Prefix: "salab-x", Hosts: 2, Names: []string{"a"}}, "1 names for 2 hosts"},
		{"name twice", Config{Prefix: "salab-x", Names: []string{"a", "a"}}, `host name "a": use a letter`},
		{"name with a digit first", Config{Prefix: "salab-x", Names: []string{"1a"}}, `host name "1a"`},
		{"IPv6 subnet", Config{Prefix: "salab-x", Subnet: netip.MustParsePrefix("fd00::/64")}, "subnet fd00::/64: give an IPv4 range"},
		{"subnet too small", Config{Prefix: "salab-x", Hosts: 2, Subnet: netip.MustParsePrefix("10.9.0.0/30")}, "subnet 10.9.0.0/30 is too small for 2 hosts and a bridge"},
		{"one address", Config{Prefix: "salab-x", Hosts: 1, Subnet: netip.MustParsePrefix("10.9.0.0/31")}, "too small for 1 hosts"},
		{"agent port", Config{Prefix: "salab-x", AgentPort: 70000}, "agent port 70000: give 1 to 65535"},
		{"agent binary", Config{Prefix: "salab-x", AgentBin: "/nonexistent/sockagent"}, "agent binary: stat /nonexistent/sockagent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, err := Up(context.Background(), tc.cfg)
			if l != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Up: %v, want an error with %q", err, tc.want)
			}
			if tc.name != "agent binary" && !errors.Is(err, ErrBadConfig) {
				t.Errorf("%v is not ErrBadConfig", err)
			}
		})
	}
}

// TestConfigDefaults: names give the host count; the subnet is masked; the state directory
// follows the prefix.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := Config{Prefix: "salab-d", Names: []string{"a", "b"}, Subnet: netip.MustParsePrefix("10.9.0.77/24")}
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	if c.Hosts != 2 || c.Subnet.String() != "10.9.0.0/24" || c.AgentPort != DefaultAgentPort || c.StateDir != DefaultStateDir("salab-d") {
		t.Errorf("defaults: %d hosts, subnet %s, port %d, state %s", c.Hosts, c.Subnet, c.AgentPort, c.StateDir)
	}
	c = Config{}
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	if c.Prefix != DefaultPrefix || c.Hosts != DefaultHosts || c.Subnet != DefaultSubnet {
		t.Errorf("zero config: prefix %q, %d hosts, subnet %s", c.Prefix, c.Hosts, c.Subnet)
	}
}

// TestOpenRefused: Open says what is wrong with the state it finds, and where.
func TestOpenRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Open("Bad", dir); err == nil || !strings.Contains(err.Error(), `prefix "Bad"`) {
		t.Errorf("Open with a bad prefix: %v", err)
	}
	if _, err := Open("salab-o", dir); err == nil || !strings.Contains(err.Error(), `no lab "salab-o": `+filepath.Join(dir, stateFile)+" not found (salab up --prefix salab-o makes one)") {
		t.Errorf("Open without state: %v", err)
	}
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("{not json")
	if _, err := Open("salab-o", dir); err == nil || !strings.Contains(err.Error(), "read "+filepath.Join(dir, stateFile)+": ") {
		t.Errorf("Open of bad JSON: %v", err)
	}
	l := &Lab{Prefix: "salab-other", StateDir: dir, Hosts: []Host{{Name: "h1"}, {Name: "h2"}}}
	if err := l.save(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("salab-o", dir); err == nil || !strings.Contains(err.Error(), `belongs to lab "salab-other", not "salab-o"`) {
		t.Errorf("Open of another lab's state: %v", err)
	}
	got, err := Open("salab-other", dir)
	if err != nil {
		t.Fatal(err)
	}
	// A host the lab does not have is refused before any ip command, naming the hosts it has.
	if err := got.Cut("h9"); err == nil || err.Error() != `lab salab-other has no host "h9" (its hosts: h1, h2)` {
		t.Errorf("Cut h9: %v", err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if os.Geteuid() != 0 { // root writes anyway
		if err := l.save(); err == nil || !strings.Contains(err.Error(), "write state: ") {
			t.Errorf("save into a read-only directory: %v", err)
		}
	}
}

// TestAgentBinary: a given binary must be an executable file; without one, the agent is built
// from the source tree around the working directory.
func TestAgentBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	plain := filepath.Join(dir, "plain")
	exe := filepath.Join(dir, "exe")
	for p, mode := range map[string]os.FileMode{plain: 0o644, exe: 0o755} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ bin, want string }{
		{filepath.Join(dir, "none"), "agent binary: stat "},
		{dir, "agent binary " + dir + " is not an executable file"},
		{plain, "agent binary " + plain + " is not an executable file"},
	} {
		if _, err := agentBinary(context.Background(), tc.bin, dir, log); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("agentBinary(%s): %v, want %q", tc.bin, err, tc.want)
		}
	}
	if got, err := agentBinary(context.Background(), exe, dir, log); err != nil || got != exe {
		t.Errorf("agentBinary(%s) = %q, %v", exe, got, err)
	}
	// The tests run in lab/: the source tree is the parent.
	root, ok := moduleRoot()
	if wd, _ := os.Getwd(); !ok || root != filepath.Dir(wd) {
		t.Fatalf("moduleRoot() = %q, %v; want the parent of %s", root, ok, wd)
	}
	out := t.TempDir()
	built, err := agentBinary(context.Background(), "", out, log)
	if err != nil || built != filepath.Join(out, "sockagent") {
		t.Fatalf("agentBinary from source: %q, %v", built, err)
	}
	if fi, err := os.Stat(built); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("built agent %s: %v", built, err)
	}
}

// TestLogTail: the last lines of an agent's log, indented; what stands in for a missing or
// empty one.
func TestLogTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.log")
	if got := logTail(p, 3); !strings.HasPrefix(got, "  (open "+p+": ") {
		t.Errorf("missing log: %q", got)
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := logTail(p, 3); got != "  (empty)" {
		t.Errorf("empty log: %q", got)
	}
	if err := os.WriteFile(p, []byte("one\ntwo\nthree\nfour\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := logTail(p, 2); got != "  three\n  four" {
		t.Errorf("last 2 lines: %q", got)
	}
	if got := logTail(p, 9); got != "  one\n  two\n  three\n  four" {
		t.Errorf("last 9 of 4 lines: %q", got)
	}
}
