package runner

// The runner's own cost per step, without gRPC or an agent: the 1,000-step scenario of
// BenchmarkRatioScenario1000 against a SocketService client that answers at once.
//
//	go test -run='^$' -bench=RunnerCPU -benchmem ./ctl/runner/

import (
	"context"
	"io"
	"testing"

	"google.golang.org/grpc"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// instantSockets answers the scenario's calls at once, as an agent would.
type instantSockets struct {
	sockagentv1.SocketServiceClient
}

func (instantSockets) Listen(context.Context, *sockagentv1.ListenRequest, ...grpc.CallOption) (*sockagentv1.ListenResponse, error) {
	return &sockagentv1.ListenResponse{Socket: &sockagentv1.Socket{SocketId: "s1", LocalAddress: "127.0.0.1:9"}}, nil
}

func (instantSockets) Dial(context.Context, *sockagentv1.DialRequest, ...grpc.CallOption) (*sockagentv1.DialResponse, error) {
	return &sockagentv1.DialResponse{Socket: &sockagentv1.Socket{SocketId: "s2", LocalAddress: "127.0.0.1:10", RemoteAddress: "127.0.0.1:9"}}, nil
}

func (instantSockets) Accept(context.Context, *sockagentv1.AcceptRequest, ...grpc.CallOption) (*sockagentv1.AcceptResponse, error) {
	return &sockagentv1.AcceptResponse{Socket: &sockagentv1.Socket{SocketId: "s3", LocalAddress: "127.0.0.1:9", RemoteAddress: "127.0.0.1:10"}}, nil
}

func (instantSockets) Send(_ context.Context, r *sockagentv1.SendRequest, _ ...grpc.CallOption) (*sockagentv1.SendResponse, error) {
	return &sockagentv1.SendResponse{BytesSent: uint64(len(r.GetData()))}, nil
}

func (instantSockets) Recv(_ context.Context, r *sockagentv1.RecvRequest, _ ...grpc.CallOption) (*sockagentv1.RecvResponse, error) {
	return &sockagentv1.RecvResponse{Data: []byte(benchPayload)[:r.GetExactBytes()]}, nil
}

func BenchmarkRunnerCPU(b *testing.B) {
	f := benchScenario(b, "127.0.0.1:1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	plans := planSteps(f.Path, f.Steps)
	b.ReportAllocs()
	for b.Loop() {
		table := NewTable(io.Discard, f.Steps)
		r := newRunner(Config{File: f, StepTimeout: DefaultStepTimeout, Getenv: func(string) string { return "" }, OnStep: table.Row})
		r.remotes["a"] = &remote{name: "a", sockets: instantSockets{}}
		r.plans = plans
		r.steps = make([]StepReport, 0, benchSteps)
		r.runSteps(ctx, f.Steps, "", nil)
		if len(r.steps) != benchSteps || r.steps[benchSteps-1].Status != StatusPassed {
			b.Fatalf("%d steps, last %+v", len(r.steps), r.steps[len(r.steps)-1])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchSteps, "ns/step")
}
