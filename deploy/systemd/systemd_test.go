// Package systemd_test checks that sockagent.service and sockagent.env agree with sockagent:
// the flags parse with sockagent's own parser, every path they name lies in a directory the
// unit makes writable or provides, and the hardening the unit promises is there.
// `systemd-analyze verify` (in .ci/run) checks the unit's syntax.
package systemd_test

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/daemon"
	"github.com/sockagent/sockagent/deploy/internal/testenv"
)

// service reads the [Service] section of sockagent.service: each key's values in order.
func service(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.Root(t), "deploy", "systemd", "sockagent.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatalf("sockagent.service: %v", err)
	}
	m := map[string][]string{}
	for _, o := range opts {
		if o.Section == "Service" {
			m[o.Name] = append(m[o.Name], o.Value)
		}
	}
	return m
}

// envFlags reads SOCKAGENT_FLAGS from sockagent.env and splits it as systemd splits an
// unquoted $VAR of ExecStart: on white space.
func envFlags(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.Root(t), "deploy", "systemd", "sockagent.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var flags []string
	n := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k != "SOCKAGENT_FLAGS" || strings.ContainsAny(v, `"'\$`) {
			t.Fatalf("sockagent.env: %q: want SOCKAGENT_FLAGS=FLAGS, unquoted, without escapes or variables", line)
		}
		flags = strings.Fields(v)
		n++
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("sockagent.env sets SOCKAGENT_FLAGS %d times, want once", n)
	}
	return flags
}

func TestUnitHardening(t *testing.T) {
	t.Parallel()
	svc := service(t)
	for key, want := range map[string]string{
		"NoNewPrivileges":          "yes",
		"ProtectSystem":            "strict",
		"ProtectHome":              "yes",
		"PrivateTmp":               "yes",
		"PrivateDevices":           "yes",
		"Restart":                  "on-failure",
		"RestartPreventExitStatus": "2",
		"RestrictAddressFamilies":  "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
		"CapabilityBoundingSet":    "CAP_NET_BIND_SERVICE CAP_NET_ADMIN CAP_NET_RAW",
		"RuntimeDirectory":         "sockagent",
		"RuntimeDirectoryMode":     "0700",
		"StateDirectory":           "sockagent",
		"LogsDirectory":            "sockagent",
		"EnvironmentFile":          "-/etc/sockagent/sockagent.env",
		"ExecStart":                "/usr/local/bin/sockagent $SOCKAGENT_FLAGS",
		"LimitNOFILE":              "65536",
	} {
		if got := svc[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q once", key, got, want)
		}
	}
}

func TestEnvironmentFlags(t *testing.T) {
	t.Parallel()
	svc := service(t)
	args := envFlags(t)
	cfg := daemon.DefaultConfig()
	fs := flag.NewFlagSet("sockagent", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		t.Fatalf("sockagent %s: %v (arguments left %q)", strings.Join(args, " "), err, fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("sockagent %s: %v", strings.Join(args, " "), err)
	}
	run := "/run/" + svc["RuntimeDirectory"][0]
	logs := "/var/log/" + svc["LogsDirectory"][0]
	// As root, sockagent without flags serves where the unit's runtime directory is.
	if filepath.Dir(contract.DefaultAgentSocket()) != run && os.Geteuid() == 0 {
		t.Errorf("sockagent's default socket %s is outside the unit's %s", contract.DefaultAgentSocket(), run)
	}
	for name, p := range map[string]string{
		"--listen":     strings.TrimPrefix(cfg.Listen, "unix:"),
		"--socket-dir": cfg.SocketDir,
		"--audit-log":  cfg.AuditLog,
	} {
		if !strings.HasPrefix(cfg.Listen, "unix:") && name == "--listen" {
			continue
		}
		if filepath.Dir(p) != run && filepath.Dir(p) != logs {
			t.Errorf("%s %s: not in %s or %s, the directories ProtectSystem=strict leaves writable", name, p, run, logs)
		}
	}
	if cfg.SocketDir != daemon.DefaultSocketDir() && os.Geteuid() == 0 {
		t.Errorf("--socket-dir %s, want sockagent's default for root, %s", cfg.SocketDir, daemon.DefaultSocketDir())
	}
}
