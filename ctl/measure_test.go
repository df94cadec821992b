package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/ctl/runner"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// fakeMeasure answers Serve, Probe and Throughput on a real agent (through interceptors),
// with fixed figures, so that output and expectations can be checked exactly.
type fakeMeasure struct {
	mu      sync.Mutex
	probes  []*sockagentv1.ProbeRequest
	tputs   []*sockagentv1.ThroughputRequest
	serves  []*sockagentv1.ServeRequest
	started chan struct{} // closed when a throughput test that hangs sent its first interval
	once    sync.Once
}

const (
	fullMethodProbe      = "/sockagent.v1.MeasureService/Probe"
	fullMethodThroughput = "/sockagent.v1.MeasureService/Throughput"
	fullMethodServe      = "/sockagent.v1.SocketService/Serve"
	refusedTarget        = "127.0.0.1:1" // every probe attempt to it fails
	hangTarget           = "127.0.0.1:2" // a throughput test to it sends one interval, then waits to be cancelled
	udpTarget            = "127.0.0.1:3" // a throughput test to it reports datagrams
)

func msD(v float64) *durationpb.Duration {
	return durationpb.New(time.Duration(v * float64(time.Millisecond)))
}

// probeResult is what the fake probe answers: 100 sent, 99 received.
func probeResult(req *sockagentv1.ProbeRequest) *sockagentv1.ProbeResponse {
	if req.GetAddress() == refusedTarget {
		return &sockagentv1.ProbeResponse{RemoteAddress: refusedTarget, Sent: 10, Loss: 1,
			Errors:  []*sockagentv1.ErrorCount{{Reason: "CONNECTION_REFUSED", Count: 10, Message: "dial tcp 127.0.0.1:1: connection refused"}},
			Elapsed: msD(3)}
	}
	return &sockagentv1.ProbeResponse{RemoteAddress: req.GetAddress(), LocalAddress: "127.0.0.1:40000", Sent: 100, Received: 99, Loss: 0.01,
		Rtt:     &sockagentv1.LatencyStats{Samples: 99, Min: msD(0.010), P50: msD(0.041), P90: msD(0.060), P99: msD(3.2), Max: msD(5), Mean: msD(0.050)},
		Errors:  []*sockagentv1.ErrorCount{{Reason: "TIMEOUT", Count: 1, Message: "no answer within 1s"}},
		Elapsed: msD(1234)}
}

// throughputReports are the fake test's reports: three intervals of 1 GiB, then the summary.
func throughputReports(req *sockagentv1.ThroughputRequest) []*sockagentv1.ThroughputResponse {
	var out []*sockagentv1.ThroughputResponse
	udp := req.GetAddress() == udpTarget
	for i := range 3 {
		iv := &sockagentv1.ThroughputInterval{Start: msD(float64(i) * 500), End: msD(float64(i+1) * 500), Bytes: 1 << 30, BitsPerSecond: 9.41e9 + float64(i)*1e7}
		if udp {
			iv.Datagrams, iv.Lost = 1000, uint64(i)
		} else {
			iv.Retransmits, iv.Rtt = uint64(i), msD(0.040)
		}
		out = append(out, &sockagentv1.ThroughputResponse{Report: &sockagentv1.ThroughputResponse_Interval{Interval: iv}})
	}
	sum := &sockagentv1.ThroughputSummary{Duration: msD(1500), Bytes: 3 << 30, BitsPerSecond: 9.42e9, Retransmits: 3, Rtt: msD(0.040),
		Streams: max(req.GetStreams(), 1), RemoteAddress: req.GetAddress()}
	if udp {
		sum.Retransmits, sum.Rtt = 0, nil
		sum.DatagramsSent, sum.DatagramsReceived, sum.Loss = 3000, 2997, 0.001
	}
	return append(out, &sockagentv1.ThroughputResponse{Report: &sockagentv1.ThroughputResponse_Summary{Summary: sum}})
}

func (f *fakeMeasure) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch info.FullMethod {
	case fullMethodProbe:
		r := req.(*sockagentv1.ProbeRequest)
		f.probes = append(f.probes, r)
		return probeResult(r), nil
	case fullMethodServe:
		r := req.(*sockagentv1.ServeRequest)
		f.serves = append(f.serves, r)
		return &sockagentv1.ServeResponse{Socket: &sockagentv1.Socket{SocketId: r.GetSocketId(), Network: "tcp", Kind: sockagentv1.SocketKind_SOCKET_KIND_LISTENER,
			State: sockagentv1.SocketState_SOCKET_STATE_OPEN, LocalAddress: "127.0.0.1:4242",
			Serving: &sockagentv1.Serving{Behaviour: r.GetBehaviour(), Connections: 3, ActiveConnections: 1, BytesIn: 3 << 20, BytesOut: 3 << 20}}}, nil
	}
	return h(ctx, req)
}

func (f *fakeMeasure) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod != fullMethodThroughput {
		return h(srv, ss)
	}
	req := &sockagentv1.ThroughputRequest{}
	if err := ss.RecvMsg(req); err != nil {
		return err
	}
	f.mu.Lock()
	f.tputs = append(f.tputs, req)
	f.mu.Unlock()
	reports := throughputReports(req)
	if req.GetAddress() == hangTarget {
		if err := ss.SendMsg(reports[0]); err != nil {
			return err
		}
		f.once.Do(func() { close(f.started) })
		<-ss.Context().Done()
		return ss.Context().Err()
	}
	for _, r := range reports {
		if err := ss.SendMsg(r); err != nil {
			return err
		}
	}
	return nil
}

// startFakeMeasure runs a real agent whose Serve, Probe and Throughput answer as fakeMeasure.
func startFakeMeasure(t *testing.T) (string, *fakeMeasure) {
	t.Helper()
	f := &fakeMeasure{started: make(chan struct{})}
	lis := listenLoopback(t)
	serveOn(t, lis, agent.Config{ServerOptions: []grpc.ServerOption{grpc.ChainUnaryInterceptor(f.unary), grpc.ChainStreamInterceptor(f.stream)}})
	return lis.Addr().String(), f
}

func TestProbeCommand(t *testing.T) {
	t.Parallel()
	addr, f := startFakeMeasure(t)
	r := ok(t, addr, "probe", "tcp", "127.0.0.1:4242", "--mode", "echo", "--count", "100", "--size", "1K", "--interval", "1ms",
		"--timeout", "2s", "--warmup", "5", "--local", "127.0.0.1:0")
	want := "target:   tcp 127.0.0.1:4242\n" +
		"local:    127.0.0.1:40000\n" +
		"sent:     100\n" +
		"received: 99\n" +
		"loss:     0.01\n" +
		"rtt:      min 10µs  p50 41µs  p90 60µs  p99 3.2ms  max 5ms  mean 50µs\n" +
		"errors:   TIMEOUT 1: no answer within 1s\n" +
		"elapsed:  1.234s\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	wantReq := &sockagentv1.ProbeRequest{Network: "tcp", Address: "127.0.0.1:4242", Mode: sockagentv1.ProbeMode_PROBE_MODE_ECHO, Count: 100, Size: 1024,
		Interval: durationpb.New(time.Millisecond), Timeout: durationpb.New(2 * time.Second), LocalAddress: "127.0.0.1:0", Warmup: 5}
	f.mu.Lock()
	got := f.probes[0]
	f.mu.Unlock()
	if !proto.Equal(got, wantReq) {
		t.Errorf("request %v, want %v", got, wantReq)
	}

	var resp sockagentv1.ProbeResponse
	okJSON(t, addr, &resp, "probe", "udp", "127.0.0.1:4242")
	if resp.GetReceived() != 99 || resp.GetRtt().GetP99().AsDuration() != 3200*time.Microsecond {
		t.Errorf("-o json: %v", &resp)
	}

	// Every attempt failed: the figures, then exit 1 with the reason.
	sockctl(t, addr, "probe", "tcp", refusedTarget).want(t, ExitFailure,
		[]string{"sent:     10\nreceived: 0\nloss:     1\nerrors:   CONNECTION_REFUSED 10: dial tcp 127.0.0.1:1: connection refused\n"},
		[]string{"sockctl: probe tcp 127.0.0.1:1: every attempt failed: CONNECTION_REFUSED (10 of 10): dial tcp 127.0.0.1:1: connection refused\n"})

	for _, bad := range []struct {
		args []string
		msg  string
	}{
		{[]string{"probe", "unix", "/tmp/x"}, `unknown network "unix": use one of tcp, tcp4, tcp6, udp, udp4, udp6`},
		{[]string{"probe", "tcp", "127.0.0.1:1", "--mode", "ping"}, `--mode "ping": use connect, echo or tls`},
		{[]string{"probe", "tcp", "127.0.0.1:1", "--size", "1Q"}, `--size: unknown unit "Q" in "1Q"`},
		{[]string{"probe", "tcp", "127.0.0.1:1", "--interval", "-1s"}, "--interval must not be negative"},
		{[]string{"probe", "tcp"}, "expected NETWORK ADDRESS, got 1 argument"},
	} {
		sockctl(t, addr, bad.args...).want(t, ExitUsage, nil, []string{bad.msg})
	}
}

func TestThroughputCommand(t *testing.T) {
	t.Parallel()
	addr, f := startFakeMeasure(t)
	// stdout is not a terminal: one line per interval, then the summary.
	r := ok(t, addr, "throughput", "tcp", "127.0.0.1:5001", "--receive", "--duration", "2s", "--bytes", "1G", "--streams", "2",
		"--rate", "500M", "--size", "128K", "--interval", "500ms", "--local", "127.0.0.1")
	want := "  0.00-0.50s    1.00 GiB   9.41 Gbit/s  retr 0  rtt 40µs  total 1.00 GiB\n" +
		"  0.50-1.00s    1.00 GiB   9.42 Gbit/s  retr 1  rtt 40µs  total 2.00 GiB\n" +
		"  1.00-1.50s    1.00 GiB   9.43 Gbit/s  retr 2  rtt 40µs  total 3.00 GiB\n" +
		"summary: 9.42 Gbit/s 3.00 GiB in 1.5s 2 streams retransmits 3 rtt 40µs to 127.0.0.1:5001\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	wantReq := &sockagentv1.ThroughputRequest{Network: "tcp", Address: "127.0.0.1:5001", Direction: sockagentv1.Direction_DIRECTION_RECEIVE,
		Duration: durationpb.New(2 * time.Second), Bytes: 1 << 30, Streams: 2, RateBitsPerSecond: 500_000_000, Size: 128 << 10,
		ReportInterval: durationpb.New(500 * time.Millisecond), LocalAddress: "127.0.0.1"}
	f.mu.Lock()
	got := f.tputs[0]
	f.mu.Unlock()
	if !proto.Equal(got, wantReq) {
		t.Errorf("request %v, want %v", got, wantReq)
	}

	r = ok(t, addr, "throughput", "udp", udpTarget)
	if !strings.Contains(r.stdout, "  datagrams 1000 lost 2  total 3.00 GiB\n") ||
		!strings.HasSuffix(r.stdout, "summary: 9.42 Gbit/s 3.00 GiB in 1.5s datagrams 2997/3000 loss 0.001 to 127.0.0.1:3\n") {
		t.Errorf("udp stdout:\n%s", r.stdout)
	}

	// -o json: one object per line, the summary last.
	r = ok(t, addr, "throughput", "tcp", "127.0.0.1:5001", "-o", "json")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("-o json printed %d lines, want 4:\n%s", len(lines), r.stdout)
	}
	for i, l := range lines {
		var m sockagentv1.ThroughputResponse
		if err := protojson.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, l)
		}
		if (i < 3) != (m.GetInterval() != nil) || (i == 3) != (m.GetSummary() != nil) {
			t.Errorf("line %d: %s", i, l)
		}
	}

	for _, bad := range []struct {
		args []string
		msg  string
	}{
		{[]string{"throughput", "unixgram", "/tmp/x"}, `unknown network "unixgram"`},
		{[]string{"throughput", "tcp", "127.0.0.1:1", "--bytes", "1GB/s"}, `--bytes: unknown unit "GB/s" in "1GB/s"`},
		{[]string{"throughput", "tcp", "127.0.0.1:1", "--rate", "1GB"}, `--rate: unknown unit "GB" in "1GB": want bits per second such as 1G, 500M or 10k (k = 1000)`},
		{[]string{"throughput", "tcp", "127.0.0.1:1", "--duration", "-1s"}, "--duration must not be negative"},
	} {
		sockctl(t, addr, bad.args...).want(t, ExitUsage, nil, []string{bad.msg})
	}
}

// Ctrl-C (the context) ends a running throughput test at once, with exit 1.
func TestThroughputCancel(t *testing.T) {
	t.Parallel()
	addr, f := startFakeMeasure(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runAsync(ctx, "--agent", addr, "throughput", "tcp", hangTarget, "--duration", "1h")
	select {
	case <-f.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the test did not start")
	}
	start := time.Now()
	cancel()
	select {
	case r := <-done:
		r.want(t, ExitFailure, nil, []string{"throughput tcp 127.0.0.1:2: cancelled"})
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("sockctl took %s to stop after the cancel", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sockctl did not stop after the cancel")
	}
}

func TestLiveLineTerminal(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	l := &liveLine{w: &b, tty: true}
	_ = l.show("one")
	_ = l.show("two")
	l.end()
	if got := b.String(); got != "\rone\x1b[K\rtwo\x1b[K\n" {
		t.Errorf("terminal output %q", got)
	}
	if isTerminal(&b) {
		t.Error("a buffer is not a terminal")
	}
}

func TestServeCommand(t *testing.T) {
	t.Parallel()
	addr, f := startFakeMeasure(t)
	r := ok(t, addr, "serve", "s1", "echo", "--chunk-size", "64K", "--max-connections", "10")
	if !strings.HasSuffix(r.stdout, "\ns1 serving echo: connections 3 (1 active), in 3.00 MiB, out 3.00 MiB\n") ||
		!strings.HasPrefix(r.stdout, "ID  NETWORK  KIND      STATE") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	f.mu.Lock()
	got := f.serves[0]
	f.mu.Unlock()
	want := &sockagentv1.ServeRequest{SocketId: "s1", Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO, ChunkSize: 64 << 10, MaxConnections: 10}
	if !proto.Equal(got, want) {
		t.Errorf("request %v, want %v", got, want)
	}
	sockctl(t, addr, "serve", "s1", "mirror").want(t, ExitUsage, nil, []string{`unknown behaviour "mirror": use echo, discard, source or proxy`})
	sockctl(t, addr, "serve", "s1", "source", "--chunk-size", "5M").want(t, ExitUsage, nil, []string{"--chunk-size 5M: at most 4194304 bytes"})
}

func TestServingLine(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	w := &writer{stdout: &out}
	err := w.sockets(
		&sockagentv1.Socket{SocketId: "s1", Network: "udp", Kind: sockagentv1.SocketKind_SOCKET_KIND_DATAGRAM, State: sockagentv1.SocketState_SOCKET_STATE_OPEN,
			Serving: &sockagentv1.Serving{Behaviour: sockagentv1.Behaviour_BEHAVIOUR_DISCARD, BytesIn: 1400, DatagramsIn: 1, Errors: 2, LastError: "TIMEOUT: x"}},
		&sockagentv1.Socket{SocketId: "s2", Network: "tcp", Kind: sockagentv1.SocketKind_SOCKET_KIND_STREAM},
		&sockagentv1.Socket{SocketId: "s3", Network: "tcp", Kind: sockagentv1.SocketKind_SOCKET_KIND_STREAM, Attached: true},
	)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 6 || lines[4] != "s1 serving discard: in 1.37 KiB, out 0 B, datagrams in 1, out 0, errors 2 (last: TIMEOUT: x)" ||
		lines[5] != "s3 attached: an Attach stream owns its data; other data calls answer SOCKET_BUSY" {
		t.Errorf("output:\n%s", out.String())
	}
}

const measureScenario = `name: measure
agents: {a: AGENT, b: AGENT}
steps:
  - {on: b, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: b, serve: {socket: lis, behaviour: echo, chunk_size: 64K, max_connections: 10}}
  - on: a
    name: probe ok
    probe: {network: tcp, address: "${b.host}:${lis.local_port}", mode: echo, count: 100, size: 64, interval: 1ms, timeout: 1s, warmup: 10}
    expect: {rtt_p99: "<= 5ms", rtt_p50: "< 1ms", loss: "<= 1%", received: ">= 99", errors: "<= 1", within: 10s}
  - on: a
    name: probe slow
    probe: {network: tcp, address: "${b.host}:${lis.local_port}", mode: echo}
    expect: {rtt_p99: "<= 2ms", loss: "0"}
  - {on: a, name: probe refused, probe: {network: tcp, address: "127.0.0.1:1"}}
  - {on: a, name: refused expected, probe: {network: tcp, address: "127.0.0.1:1"}, expect: {error: CONNECTION_REFUSED}}
  - {on: a, name: all lost judged, probe: {network: tcp, address: "127.0.0.1:1"}, expect: {loss: "== 1", received: 0}}
  - on: a
    name: tput ok
    throughput: {network: tcp, address: "${b.host}:${lis.local_port}", direction: send, duration: 2s, bytes: 1G, streams: 2, rate: 500M, size: 128K, interval: 500ms}
    expect: {bits_per_second: ">= 1G", bytes: ">= 3G", retransmits: "< 10", rtt: "<= 1ms", errors: 0}
  - on: a
    name: tput slow
    throughput: {network: tcp, address: "${b.host}:${lis.local_port}", duration: 1s}
    expect: {bits_per_second: ">= 10G"}
`

func TestRunMeasureSteps(t *testing.T) {
	t.Parallel()
	addr, f := startFakeMeasure(t)
	p := writeScenario(t, "measure.yaml", strings.ReplaceAll(measureScenario, "AGENT", addr))
	junit := filepath.Join(t.TempDir(), "junit.xml")
	r := runArgs(t, p, "--keep-going", "--junit", junit)
	r.want(t, ExitFailure, []string{
		"\n2          b          serve      ok ",
		"-1 127.0.0.1:4242 serving echo\n",
		"\n3          a          probe      ok ",
		"probe ok: min 10µs p50 41µs p99 3.2ms max 5ms loss 0.01 (99/100) TIMEOUT x1\n",
		"\n4          a          probe      FAIL ",
		"probe slow: EXPECTATION_FAILED: rtt_p99 3.2ms, want <= 2ms; loss 0.01, want == 0 (measured: min 10µs p50 41µs p99 3.2ms max 5ms loss 0.01 (99/100) TIMEOUT x1)\n",
		"\n5          a          probe      FAIL ",
		"probe refused: CONNECTION_REFUSED: failed: CONNECTION_REFUSED: every attempt failed (10 of 10): dial tcp 127.0.0.1:1: connection refused (measured: loss 1 (0/10) CONNECTION_REFUSED x10)\n",
		"\n6          a          probe      ok ",
		"refused expected: loss 1 (0/10) CONNECTION_REFUSED x10\n",
		"\n7          a          probe      ok ",
		"all lost judged: loss 1 (0/10) CONNECTION_REFUSED x10\n",
		"\n8          a          throughput ok ",
		"tput ok: 9.42 Gbit/s 3.00 GiB in 1.5s 2 streams retransmits 3 rtt 40µs\n",
		"tput slow: EXPECTATION_FAILED: bits_per_second 9.42 Gbit/s, want >= 10G (measured: 9.42 Gbit/s",
		"\n6 passed, 3 failed\n",
	}, []string{"run " + p + ": 3 of 9 steps failed"})
	f.mu.Lock()
	if len(f.serves) != 1 || f.serves[0].GetChunkSize() != 64<<10 || f.serves[0].GetMaxConnections() != 10 || f.serves[0].GetSocketId() == "" {
		t.Errorf("serve requests %v", f.serves)
	}
	if len(f.probes) != 5 || f.probes[0].GetCount() != 100 || f.probes[0].GetWarmup() != 10 || f.probes[0].GetMode() != sockagentv1.ProbeMode_PROBE_MODE_ECHO {
		t.Errorf("probe requests %v", f.probes)
	}
	if len(f.tputs) != 2 || f.tputs[0].GetBytes() != 1<<30 || f.tputs[0].GetRateBitsPerSecond() != 500e6 || f.tputs[0].GetSize() != 128<<10 {
		t.Errorf("throughput requests %v", f.tputs)
	}
	f.mu.Unlock()

	x, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(x), "<system-out>min 10µs p50 41µs p99 3.2ms max 5ms loss 0.01 (99/100) TIMEOUT x1</system-out>") ||
		!strings.Contains(string(x), `message="EXPECTATION_FAILED: rtt_p99 3.2ms, want &lt;= 2ms;`) {
		t.Errorf("junit:\n%s", x)
	}

	r = runArgs(t, p, "--keep-going", "-o", "json")
	var rep runner.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	fig := rep.Steps[2].Figures
	if fig["rtt_p99_ms"] != 3.2 || fig["loss"] != 0.01 || fig["received"] != 99 || fig["errors"] != 1 {
		t.Errorf("probe figures %v", fig)
	}
	if fig := rep.Steps[7].Figures; fig["bits_per_second"] != 9.42e9 || fig["bytes"] != 3<<30 || fig["rtt_ms"] != 0.04 {
		t.Errorf("throughput figures %v", fig)
	}
}

// examples/perf.yaml runs on two in-process agents, as written but for its listeners: the
// file binds 0.0.0.0 so that it also runs across hosts, and a test binds only loopback.
func TestExamplePerf(t *testing.T) {
	t.Parallel()
	r := runArgs(t, loopbackExample(t, "perf.yaml", 6))
	r.want(t, ExitOK, []string{"a          probe      ok ", "udp send at 10M: ", "udp receive at 10M: ", "\n20 passed, 0 failed\n"}, nil)
}

// serve, probe, throughput and get against a real agent: the agent measures itself over
// loopback.
func TestMeasureCommandsRealAgent(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	open := func(args ...string) (id, local string) {
		var resp sockagentv1.ListenResponse // ListenResponse and BindResponse are both {socket}
		okJSON(t, addr, &resp, args...)
		return resp.GetSocket().GetSocketId(), resp.GetSocket().GetLocalAddress()
	}
	echo, echoAddr := open("listen", "tcp", "127.0.0.1:0")
	sink, sinkAddr := open("listen", "tcp", "127.0.0.1:0")
	uecho, uechoAddr := open("bind", "udp", "127.0.0.1:0")
	defer func() {
		for _, id := range []string{echo, sink, uecho} {
			ok(t, addr, "close", id)
		}
	}()
	r := ok(t, addr, "serve", echo, "echo")
	if !strings.Contains(r.stdout, "\n"+echo+" serving echo: connections 0 (0 active), in 0 B, out 0 B\n") {
		t.Errorf("serve stdout:\n%s", r.stdout)
	}
	ok(t, addr, "serve", sink, "discard")
	ok(t, addr, "serve", uecho, "echo")
	sockctl(t, addr, "serve", echo, "discard").want(t, ExitFailure, nil, []string{"SOCKET_BUSY"})

	r = ok(t, addr, "probe", "tcp", echoAddr, "--mode", "echo", "--count", "20", "--size", "100")
	if !strings.Contains(r.stdout, "\nsent:     20\nreceived: 20\nloss:     0\nrtt:      min ") {
		t.Errorf("tcp probe stdout:\n%s", r.stdout)
	}
	r = ok(t, addr, "probe", "udp", uechoAddr, "--count", "20")
	if !strings.Contains(r.stdout, "\nreceived: 20\n") {
		t.Errorf("udp probe stdout:\n%s", r.stdout)
	}
	ok(t, addr, "probe", "tcp", echoAddr, "--count", "5") // connect
	sockctl(t, addr, "probe", "tcp", closedPort(t), "--count", "3").want(t, ExitFailure,
		[]string{"received: 0\n"}, []string{"every attempt failed: CONNECTION_REFUSED (3 of 3)"})

	r = ok(t, addr, "throughput", "tcp", sinkAddr, "--duration", "300ms", "--interval", "100ms")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[len(lines)-1], "summary: ") || !strings.Contains(lines[0], "-0.10s") {
		t.Errorf("throughput stdout:\n%s", r.stdout)
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.Contains(l, "bit/s") || !strings.Contains(l, "total ") {
			t.Errorf("interval line %q", l)
		}
	}
	// The discard's counters show in get.
	r = ok(t, addr, "get", sink)
	if !strings.Contains(r.stdout, "\n"+sink+" serving discard: connections 1 (") {
		t.Errorf("get stdout:\n%s", r.stdout)
	}
}

// A probe's or throughput test's results named with as are ${ALIAS.FIGURE} in later steps.
func TestRunMeasureResults(t *testing.T) {
	t.Parallel()
	addr, _ := startFakeMeasure(t)
	p := writeScenario(t, "results.yaml", strings.ReplaceAll(`name: results
agents: {a: AGENT}
steps:
  - {on: a, probe: {network: tcp, address: "127.0.0.1:9"}, as: base}
  - {on: a, probe: {network: tcp, address: "127.0.0.1:9"}, expect: {rtt_p99: "== ${base.rtt_p99}", loss: "${base.loss}", received: "${base.received}"}}
  - {on: a, throughput: {network: tcp, address: "127.0.0.1:9"}, as: first}
  - {on: a, throughput: {network: tcp, address: "127.0.0.1:9"}, expect: {bits_per_second: ">= ${first.bits_per_second}", bytes: "${first.bytes}", rtt: "${first.rtt}"}}
  - {on: a, throughput: {network: tcp, address: "127.0.0.1:9"}, expect: {bits_per_second: "> ${first.bits_per_second}"}}
  - {on: a, throughput: {network: tcp, address: "127.0.0.1:9"}, expect: {rtt: "> ${base.rtt_p50}"}}
`, "AGENT", addr))
	r := runArgs(t, p, "--keep-going")
	r.want(t, ExitFailure, []string{
		"\n1          a          probe      ok ", "base = min 10µs",
		"\n2          a          probe      ok ",
		"\n3          a          throughput ok ", "first = 9.42 Gbit/s",
		"\n4          a          throughput ok ",
		"EXPECTATION_FAILED: bits_per_second 9.42 Gbit/s, want > 9420000000 (",
		"EXPECTATION_FAILED: rtt 40µs, want > 41µs (",
		"\n4 passed, 2 failed\n",
	}, nil)
}
