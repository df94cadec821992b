package runner

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The runner, the client and the scenario package are clients: none of them links the agent
// (the server), whose in-process form reaches the runner only through Config.StartLocal (the
// tracing setup, shared with the agent, is not the server). The
// scenario package makes no RPC at all, and neither the client nor the runner knows the
// command line. The leaves the file formats share (positions, selectors) import nothing of
// this module but each other. sockctl links no Prometheus.
func TestDependencies(t *testing.T) {
	t.Parallel()
	goBin := goTool(t)
	const mod = "github.com/sockagent/sockagent/"
	for _, tc := range []struct {
		pkg       string
		forbidden []string // import path prefixes
		allowed   []string // exceptions to forbidden
	}{
		{"ctl/runner", []string{mod + "agent", mod + "ctl/localagent", mod + "ctl/bench", "github.com/spf13/"}, []string{mod + "agent/contract", mod + "agent/tracing"}},
		{"ctl/client", []string{mod + "agent", mod + "ctl/", "github.com/spf13/"}, []string{mod + "agent/contract", mod + "agent/tracing"}},
		{"ctl/scenario", []string{mod + "agent", mod + "gen/", "google.golang.org/grpc"}, []string{mod + "agent/contract"}},
		// A matrix's file side is shared by sockctl matrix and the scenario's matrix step: it
		// imports neither of them, nor makes an RPC.
		{"ctl/matrix/spec", []string{mod + "agent", mod + "gen/", "google.golang.org/grpc", mod + "ctl/"}, []string{mod + "ctl/diag", mod + "ctl/selector", mod + "ctl/internal/yamlwalk"}},
		{"ctl/diag", []string{mod}, nil},
		// The YAML walk of scenario and matrix files: the two parsers' common part, nothing else.
		{"ctl/internal/yamlwalk", []string{mod}, []string{mod + "ctl/diag"}},
		{"ctl/selector", []string{mod}, []string{mod + "ctl/diag"}},
		// sockctl's local agents keep no metrics: Prometheus's packages would initialise their
		// registries at every start of every sockctl command.
		{"ctl/cmd/sockctl", []string{"github.com/prometheus/", "github.com/grpc-ecosystem/go-grpc-middleware/", mod + "agent/metrics"}, nil},
	} {
		out, err := exec.Command(goBin, "list", "-deps", "-test=false", mod+tc.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", tc.pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s listed %d packages: %q", tc.pkg, len(deps), deps)
		}
		for _, d := range deps {
			if d == mod+tc.pkg || !hasPrefix(d, tc.forbidden) || hasPrefix(d, tc.allowed) {
				continue
			}
			t.Errorf("%s depends on %s", tc.pkg, d)
		}
	}
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if s == p || strings.HasPrefix(s, p+"/") || strings.HasSuffix(p, "/") && strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// goTool is the go command of the toolchain in use: GOROOT/bin/go, GOROOT as the go on PATH
// reports it.
func goTool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no go command on PATH; CI must run this test")
		}
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(path, "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "bin", "go")
}
