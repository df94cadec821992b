package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
)

// A call on an id of another instance (or expecting another instance) that reaches an agent
// while it stops is AGENT_STOPPING, never the restart hint: the client is to wait for the
// agent, not to conclude its sockets are gone.
func TestOtherInstanceWhileStopping(t *testing.T) {
	tb := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20, Instance: "0123456789abcdef"})
	ctx := WithCaller(context.Background(), Caller{ID: "token:alice"})
	old := contract.FormatSocketID("fedcba9876543210", 1)
	mine := contract.FormatSocketID("0123456789abcdef", 1)
	expectOld := WithInstance(ctx, "fedcba")
	for _, c := range []struct {
		ctx context.Context
		id  string
	}{{ctx, old}, {expectOld, mine}} {
		_, err := tb.GetFor(c.ctx, c.id)
		if !errors.Is(err, ErrUnknownSocket) || Reason(err) != contract.ReasonUnknownSocket {
			t.Fatalf("get %s before the stop: %v, want UNKNOWN_SOCKET", c.id, err)
		}
	}
	tb.Stop()
	for _, c := range []struct {
		ctx context.Context
		id  string
	}{{ctx, old}, {expectOld, mine}} {
		_, err := tb.GetFor(c.ctx, c.id)
		if Reason(err) != contract.ReasonAgentStopping {
			t.Errorf("get %s while stopping: %v (%s), want AGENT_STOPPING", c.id, err, Reason(err))
		}
		_, err = tb.Close(c.ctx, c.id)
		if Reason(err) != contract.ReasonAgentStopping {
			t.Errorf("close %s while stopping: %v (%s), want AGENT_STOPPING", c.id, err, Reason(err))
		}
	}
}
