package runner

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/sockagent/sockagent/agent/contract"
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
// none for grpc-go to send (stepClock).
func TestStepDeadlineIsClientSide(t *testing.T) {
	f, err := scenario.Parse("hang.yaml", []byte("agents: {a: 127.0.0.1:1}\nsteps:\n"+
		"  - {on: a, listen: {network: tcp, address: \"127.0.0.1:0\"}}\n  - {on: a, listen: {network: tcp, address: \"127.0.0.1:0\"}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	hs := &hangingSockets{hadDeadline: make(chan bool, 2)}
	const stepTimeout = 150 * time.Millisecond
	r := newRunner(Config{File: f, StepTimeout: stepTimeout, KeepGoing: true, Getenv: func(string) string { return "" }})
	r.remotes["a"] = &remote{name: "a", sockets: hs}
	r.plans = planSteps(f.Path, f.Steps)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	r.runSteps(ctx, f.Steps, "", nil)
	took := time.Since(start)
	if len(r.steps) != 2 {
		t.Fatalf("%d step reports, want 2", len(r.steps))
	}
	for _, s := range r.steps { // the second on a fresh context: it too waits its deadline
		if s.Status != StatusFailed || s.Reason != contract.ReasonStepTimeout {
			t.Errorf("step %s: status %s reason %q (%s), want failed STEP_TIMEOUT", s.Index, s.Status, s.Reason, s.Message)
		}
	}
	if took < 2*stepTimeout || took > 5*time.Second {
		t.Errorf("the steps took %s, want their deadlines, 2 x %s (and well under 5s)", took, stepTimeout)
	}
	for range 2 {
		if <-hs.hadDeadline {
			t.Error("the Listen RPC's context had a deadline: grpc-go sends it to the agent, which costs every call a timer there")
		}
	}
}

// A stepClock reuses its context from step to step, ignores a timer callback of a step that
// has ended, and after a deadline gives the next step a fresh context.
func TestStepClock(t *testing.T) {
	c := newStepClock(context.Background())
	defer c.close()
	ctx1 := c.start(time.Hour)
	c.stop()
	c.expire() // the callback of the ended step, late
	ctx2 := c.start(time.Hour)
	c.expire() // the same, running beside the next step
	if ctx2.Err() != nil || ctx2 != ctx1 {
		t.Fatalf("second step: context %p (err %v), want the first's %p, live", ctx2, ctx2.Err(), ctx1)
	}
	c.stop()
	ctx3 := c.start(time.Millisecond)
	<-ctx3.Done() // the timer fires
	if cause := context.Cause(ctx3); cause != errStepDeadline {
		t.Errorf("after the deadline: cause %v, want %v", cause, errStepDeadline)
	}
	c.stop()
	ctx4 := c.start(time.Hour)
	if ctx4.Err() != nil || ctx4 == ctx3 {
		t.Errorf("after a deadline: the next step's context is %p (err %v), want a fresh one", ctx4, ctx4.Err())
	}
	c.stop()
}
