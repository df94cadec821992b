package runner

// A 1,000-step scenario run by the runner (what 'sockctl run' does, reports to io.Discard)
// beside a bare grpc-go client making the same RPCs in a plain loop, both against the same
// in-process agent over TCP loopback (the target: the runner at most 1.2x the bare client).
//
//	go test -run='^$' -bench=RatioScenario -benchtime=5x ./ctl/runner/
//
// One iteration is one whole run of each, in turn; the figures are medians over iterations.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/ctl/localagent"
	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// benchSteps is the number of steps of the scenario: listen, dial, accept, then sends and
// receives of benchPayload, alternating.
const benchSteps = 1000

// benchPayload is what each send step sends and each recv step expects.
const benchPayload = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// benchScenario writes the 1,000-step scenario for the agent at addr and parses it.
func benchScenario(b *testing.B, addr string) *scenario.File {
	b.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "name: %d steps\nagents: {a: %q}\nsteps:\n", benchSteps, addr)
	sb.WriteString("  - {on: a, listen: {network: tcp, address: \"127.0.0.1:0\"}, as: lis}\n")
	sb.WriteString("  - {on: a, dial: {network: tcp, address: \"${lis.local_address}\", timeout: 5s}, as: cli}\n")
	sb.WriteString("  - {on: a, accept: {socket: lis, timeout: 5s}, as: srv}\n")
	for i := 3; i < benchSteps; i++ {
		if i%2 == 1 {
			fmt.Fprintf(&sb, "  - {on: a, send: {socket: cli, data: %q}}\n", benchPayload)
		} else {
			fmt.Fprintf(&sb, "  - {on: a, recv: {socket: srv, exact_bytes: %d, timeout: 5s}, expect: {data: %q}}\n", len(benchPayload), benchPayload)
		}
	}
	path := filepath.Join(b.TempDir(), "bench.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := scenario.Parse(path, []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	if n := CountSteps(f.Steps); n != benchSteps {
		b.Fatalf("scenario has %d steps, want %d", n, benchSteps)
	}
	return f
}

// benchAgent serves an in-process agent on 127.0.0.1:0 until the benchmark ends, and checks
// that it has no sockets left then.
func benchAgent(b *testing.B) string {
	b.Helper()
	a, err := localagent.Start(agent.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if n := a.NumSockets(); n != 0 {
			b.Errorf("agent has %d open sockets at the end, want 0", n)
		}
		_ = a.Close()
	})
	return a.Addr()
}

// benchRunner runs the scenario as 'sockctl run' does, the table report going to io.Discard.
func benchRunner(b *testing.B, ctx context.Context, f *scenario.File, addr string) {
	table := NewTable(io.Discard, f.Steps)
	rep := Run(ctx, Config{
		File: f, Agents: map[string]Target{"a": {Addr: addr}}, StepTimeout: DefaultStepTimeout,
		SessionTTL: DefaultSessionTTL, OnStep: table.Row,
	})
	table.Summary(rep)
	if !rep.OK() || rep.Passed != benchSteps || len(rep.Cleanup) != 3 {
		b.Fatalf("run: %d passed, %d failed, %d skipped, %d cleaned up; want %d passed, 3 cleaned up; first steps: %+v",
			rep.Passed, rep.Failed, rep.Skipped, len(rep.Cleanup), benchSteps, rep.Steps[:min(len(rep.Steps), 4)])
	}
}

// benchBare makes the scenario's RPCs with grpc-go alone: a new connection, listen, dial,
// accept, the sends and receives (each received payload checked), and closing the three
// sockets, as the runner's cleanup does.
func benchBare(b *testing.B, ctx context.Context, addr string) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	sc := sockagentv1.NewSocketServiceClient(cc)
	payload := []byte(benchPayload)
	lis, cli, srv := benchPair(b, ctx, sc)
	for i := 3; i < benchSteps; i++ {
		if i%2 == 1 {
			if _, err := sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: payload}); err != nil {
				b.Fatal(err)
			}
			continue
		}
		r, err := sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: srv, ExactBytes: uint32(len(payload))})
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(r.GetData(), payload) {
			b.Fatalf("received %q, want %q", r.GetData(), payload)
		}
	}
	for _, id := range []string{srv, cli, lis} {
		if _, err := sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchPair listens on the agent, dials the listener and accepts: it returns the three ids.
func benchPair(b *testing.B, ctx context.Context, sc sockagentv1.SocketServiceClient) (lis, cli, srv string) {
	b.Helper()
	l, err := sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	d, err := sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: l.GetSocket().GetLocalAddress()})
	if err != nil {
		b.Fatal(err)
	}
	a, err := sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: l.GetSocket().GetSocketId()})
	if err != nil {
		b.Fatal(err)
	}
	return l.GetSocket().GetSocketId(), d.GetSocket().GetSocketId(), a.GetSocket().GetSocketId()
}

// BenchmarkRatioScenario1000: the runner's wall time for a 1,000-step scenario, target at most
// 1.2x a bare client's for the same RPCs. Besides the ratio of the medians it reports the
// median of the ratios of runs made one after the other ("paired"), which machine noise
// (other processes, bursts of load) disturbs less.
func BenchmarkRatioScenario1000(b *testing.B) {
	addr := benchAgent(b)
	f := benchScenario(b, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	benchBare(b, ctx, addr) // warm up: first connections, allocations
	benchRunner(b, ctx, f, addr)
	var run, bare []time.Duration
	var paired []float64
	for b.Loop() {
		t0 := time.Now()
		benchRunner(b, ctx, f, addr)
		t1 := time.Now()
		benchBare(b, ctx, addr)
		t2 := time.Now()
		run, bare = append(run, t1.Sub(t0)), append(bare, t2.Sub(t1))
		paired = append(paired, float64(t1.Sub(t0))/float64(t2.Sub(t1)))
	}
	p50r, p50b := benchMedian(run), benchMedian(bare)
	ratio := float64(p50r) / float64(p50b)
	slices.Sort(paired)
	pairedRatio := paired[len(paired)/2]
	b.ReportMetric(float64(p50r.Microseconds())/1000, "runner-ms")
	b.ReportMetric(float64(p50b.Microseconds())/1000, "bare-client-ms")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(pairedRatio, "ratio-paired")
	verdict := "PASS"
	if ratio > 1.2 {
		verdict = "FAIL"
	}
	b.Logf("%d-step scenario: runner p50=%s  bare grpc-go client p50=%s  ratio=%.2fx (target <= 1.2x: %s)  paired ratio p50=%.2fx  (n=%d)",
		benchSteps, p50r.Round(10*time.Microsecond), p50b.Round(10*time.Microsecond), ratio, verdict, pairedRatio, len(run))
}

func benchMedian(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
