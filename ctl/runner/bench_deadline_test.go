package runner

// What bounding each RPC costs on a send+recv loop like the 1,000-step scenario's: no bound,
// context.WithTimeout (grpc-go sends the deadline; the agent arms a timer per call), a
// cancellable context and a timer per call (the client's timer alone) and a stepClock (one
// context and one timer for all), in rounds against the same in-process agent.
//
//	go test -run='^$' -bench=StepDeadline -benchtime=30x ./ctl/runner/

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// sendRecvLoop makes 500 send+recv pairs on a fresh TCP pair, each RPC's context from bound.
func sendRecvLoop(b *testing.B, ctx context.Context, sc sockagentv1.SocketServiceClient, bound func(context.Context) (context.Context, context.CancelFunc)) {
	lis, cli, srv := benchPair(b, ctx, sc)
	payload := []byte(benchPayload)
	for range 500 {
		c, cancel := bound(ctx)
		_, err := sc.Send(c, &sockagentv1.SendRequest{SocketId: cli, Data: payload})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		c, cancel = bound(ctx)
		r, err := sc.Recv(c, &sockagentv1.RecvRequest{SocketId: srv, ExactBytes: uint32(len(payload))})
		cancel()
		if err != nil || string(r.GetData()) != benchPayload {
			b.Fatalf("recv: %q, %v", r.GetData(), err)
		}
	}
	for _, id := range []string{srv, cli, lis} {
		if _, err := sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStepDeadline(b *testing.B) {
	addr := benchAgent(b)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	sc := sockagentv1.NewSocketServiceClient(cc)
	ctx, cancel := context.WithCancel(context.Background()) // as a run's: cancellable, no deadline
	defer cancel()
	const d = 30 * time.Second
	clock := newStepClock(ctx)
	defer clock.close()
	kinds := []struct {
		name  string
		bound func(context.Context) (context.Context, context.CancelFunc)
	}{
		{"none", func(ctx context.Context) (context.Context, context.CancelFunc) { return ctx, func() {} }},
		{"withtimeout", func(ctx context.Context) (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, d) }},
		{"timerpercall", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			t := time.AfterFunc(d, cancel)
			return ctx, func() { t.Stop(); cancel() }
		}},
		{"stepclock", func(context.Context) (context.Context, context.CancelFunc) { return clock.start(d), clock.stop }},
	}
	sendRecvLoop(b, ctx, sc, kinds[0].bound) // warm up
	took := make([]time.Duration, len(kinds))
	for b.Loop() {
		for i, k := range kinds {
			t0 := time.Now()
			sendRecvLoop(b, ctx, sc, k.bound)
			took[i] += time.Since(t0)
		}
	}
	for i, k := range kinds {
		b.ReportMetric(float64(took[i])/float64(b.N)/1e6, k.name+"-ms")
	}
	b.ReportMetric(float64(took[1])/float64(took[0]), "withtimeout/none")
	b.ReportMetric(float64(took[2])/float64(took[0]), "timerpercall/none")
	b.ReportMetric(float64(took[3])/float64(took[0]), "stepclock/none")
}
