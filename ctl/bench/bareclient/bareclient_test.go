package bareclient_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/policy"
	"github.com/sockagent/sockagent/ctl/bench/bareclient"
	"github.com/sockagent/sockagent/ctl/localagent"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs an in-process agent under the policy YAML (the built-in default when empty).
func start(t *testing.T, yaml string) *localagent.Agent {
	t.Helper()
	var cfg agent.Config
	if yaml != "" {
		p, err := policy.Parse("test.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Policy = p
	}
	a, err := localagent.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestScenario: the pairs go through, and the scenario leaves no socket and no session behind.
func TestScenario(t *testing.T) {
	t.Parallel()
	a := start(t, "")
	if err := bareclient.Scenario(ctxT(t), a.Addr(), 50, []byte("0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	if n, s := a.NumSockets(), a.NumSessions(); n != 0 || s != 0 {
		t.Errorf("%d sockets and %d sessions left open, want none", n, s)
	}
}

// TestScenarioErrors: a refused call ends the scenario with the call's name and the agent's
// status, and the session it opened is closed all the same.
func TestScenarioErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, policy, prefix string
		code                 codes.Code
	}{
		{"listen denied", "default:\n  local: {deny: [{name: no local, ports: [\"0-65535\"]}]}\n", "Listen: ", codes.PermissionDenied},
		{"no socket for the dial", "default:\n  session_limits: {sockets: 1}\n", "Dial: ", codes.ResourceExhausted},
		{"no socket for the accept", "default:\n  session_limits: {sockets: 2}\n", "Accept: ", codes.ResourceExhausted},
		{"payload over the call bound", "default:\n  limits: {bytes_per_call: 8}\n", "Send: ", codes.ResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := start(t, tc.policy)
			err := bareclient.Scenario(ctxT(t), a.Addr(), 3, []byte("0123456789abcdef"))
			if err == nil || !strings.HasPrefix(err.Error(), tc.prefix) || status.Code(err) != tc.code {
				t.Fatalf("error %v (code %s), want %q... with %s", err, status.Code(err), tc.prefix, tc.code)
			}
			if s := a.NumSessions(); s != 0 {
				t.Errorf("%d sessions left open, want the scenario's closed", s)
			}
		})
	}
	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		a := start(t, "")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := bareclient.Scenario(ctx, a.Addr(), 1, []byte("x"))
		if err == nil || !strings.HasPrefix(err.Error(), "GetInfo: ") || status.Code(err) != codes.Canceled {
			t.Fatalf("error %v, want GetInfo: ... Canceled", err)
		}
	})
}
