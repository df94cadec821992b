package ctl

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// hangingSockets is an agent's SocketService that never answers Listen: the call returns only
// when its context ends, as grpc-go's does, and says whether that context had a deadline
// (which grpc-go would send to the agent).
type hangingSockets struct {
	sockagentv1.SocketServiceClient
	hadDeadline chan bool
}

func (h *hangingSockets) Listen(ctx context.Context, _ *sockagentv1.ListenRequest, _ ...grpc.CallOption) (*sockagentv1.ListenResponse, error) {
	_, ok := ctx.Deadline()
	h.hadDeadline <- ok
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

// A step whose agent never answers fails with STEP_TIMEOUT once its deadline passes (not as
// CANCELLED, not never), and that deadline is the client's alone: the RPC's context carries
// none for grpc-go to send (withStepDeadline).
func TestStepDeadlineIsClientSide(t *testing.T) {
	f, err := scenario.Parse("hang.yaml", []byte("agents: {a: 127.0.0.1:1}\nsteps:\n  - {on: a, listen: {network: tcp, address: \"127.0.0.1:0\"}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	hs := &hangingSockets{hadDeadline: make(chan bool, 1)}
	const stepTimeout = 150 * time.Millisecond
	r := &runner{
		cfg:     runConfig{file: f, stepTimeout: stepTimeout, getenv: func(string) string { return "" }},
		remotes: map[string]*remote{"a": {name: "a", sockets: hs}},
		aliases: map[string]alias{},
	}
	r.plans = planSteps(f.Path, f.Steps)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	r.runSteps(ctx, f.Steps, "", nil)
	took := time.Since(start)
	if len(r.steps) != 1 {
		t.Fatalf("%d step reports, want 1", len(r.steps))
	}
	s := r.steps[0]
	if s.Status != statusFailed || s.Reason != reasonStepTimeout {
		t.Errorf("step: status %s reason %q (%s), want failed STEP_TIMEOUT", s.Status, s.Reason, s.Message)
	}
	if took < stepTimeout || took > 5*time.Second {
		t.Errorf("the step took %s, want its deadline %s (and well under 5s)", took, stepTimeout)
	}
	if <-hs.hadDeadline {
		t.Error("the Listen RPC's context had a deadline: grpc-go sends it to the agent, which costs every call a timer there")
	}
}
