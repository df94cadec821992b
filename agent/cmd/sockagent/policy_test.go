package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func writePolicy(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPolicyFlag: a policy file with a mistake stops the agent at start with exit 2 and the
// mistake's FILE:LINE:COL; a good one is enforced.
func TestPolicyFlag(t *testing.T) {
	t.Parallel()
	bad := writePolicy(t, "default:\n  destinations:\n    deny: [{name: x, ports: [99999]}]\n")
	for _, tc := range []struct {
		name, file, want string
	}{
		{"mistake", bad, "sockagent: --policy: " + bad + ":3:30: default.destinations.deny[0].ports[0]: want a port"},
		{"unknown key", writePolicy(t, "default:\n  destination: {}\n"), `:2:3: default: unknown key "destination"`},
		{"missing", filepath.Join(t.TempDir(), "nope.yaml"), "sockagent: --policy: open "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var stderr strings.Builder
			cmd := exec.CommandContext(ctx, sockagentBin, "--listen", "127.0.0.1:0", "--policy", tc.file, "--socket-dir", shortTempDir(t))
			dieWithTest(cmd)
			cmd.Stderr = &stderr
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Errorf("exit %d (%v), want 2", code, err)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.want)
			}
		})
	}

	t.Run("enforced", func(t *testing.T) {
		t.Parallel()
		closed := closedPort(t)
		_, port, _ := net.SplitHostPort(closed)
		p := startLocal(t, "--policy", writePolicy(t, fmt.Sprintf(`
default:
  destinations:
    deny: [{name: not that port, ports: [%s]}]
  local:
    deny: []    # privileged ports allowed
`, port)))
		sc := p.sockets()
		_, err := sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: closed})
		wantStatus(t, err, codes.PermissionDenied, contract.ReasonPolicyDenied)
		if err == nil || !strings.Contains(err.Error(), `denied by policy rule "not that port" (rule set "default")`) {
			t.Errorf("dial %s: %v", closed, err)
		}
		// Other ports: the default's allow rule is inherited.
		_, err = sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: closedPort(t)})
		wantStatus(t, err, codes.Unavailable, contract.ReasonConnectionRefused)
		// With local.deny emptied a privileged port may be bound (as root).
		if os.Geteuid() != 0 {
			return
		}
		for _, priv := range []string{"1019", "1020", "1021", "1022"} {
			r, err := sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:" + priv})
			if status.Code(err) == codes.AlreadyExists {
				continue // something else has it; try the next
			} else if err != nil {
				t.Fatalf("bind udp 127.0.0.1:%s with privileged ports allowed: %v", priv, err)
			}
			if _, err := sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: r.GetSocket().GetSocketId()}); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatal("no free privileged UDP port among 1019-1022")
	})
}
