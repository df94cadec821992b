package ctl

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/ctl/runner"
	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// What serve proxy and toxics refuse before any call: exit 2, naming the flag or token, what
// it takes and an example.
func TestProxyUsage(t *testing.T) {
	t.Parallel()
	addr := closedPort(t) // no call is made
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"serve", "s1", "proxy"}, "proxy needs --upstream ADDR, the address it forwards to, such as --upstream 127.0.0.1:8080"},
		{[]string{"serve", "s1", "echo", "--upstream", "127.0.0.1:1"}, "--upstream is for behaviour proxy: sockctl serve ID proxy --upstream ADDR [--toxic SPEC]"},
		{[]string{"serve", "s1", "discard", "--upstream-timeout", "1s"}, "--upstream-timeout is for behaviour proxy"},
		{[]string{"serve", "s1", "source", "--toxic", "latency=1ms"}, "--toxic is for behaviour proxy"},
		{[]string{"serve", "s1", "proxy", "--upstream", "127.0.0.1:1", "--upstream-timeout", "-1s"}, "--upstream-timeout must not be negative"},
		{[]string{"serve", "s1", "proxy", "--upstream", "127.0.0.1:1", "--toxic", "latency=1ms", "--toxic", "latncy=5ms"},
			`--toxic "latncy=5ms": no kind of toxic in "latncy=5ms": give one of latency, bandwidth, slicer, reset_peer, timeout, limit_data, loss, duplicate, reorder, such as latency=50ms,jitter=5ms`},
		{[]string{"toxics", "s1"}, "give the new toxics with --toxic SPEC (repeatable), or --clear to remove every toxic"},
		{[]string{"toxics", "s1", "--clear", "--toxic", "timeout"}, "give the new toxics with --toxic SPEC (repeatable), or --clear"},
		{[]string{"toxics", "s1", "--toxic", "bandwidth=10Mbyte"}, `--toxic "bandwidth=10Mbyte": bandwidth=10Mbyte: unknown unit "Mbyte" in "10Mbyte"`},
		{[]string{"toxics", "s1", "--toxic", "latency=5ms,jiter=1ms"}, `unknown key "jiter"; did you mean "jitter"? (latency takes jitter, toxicity, name, direction), such as latency=50ms,jitter=5ms`},
		{[]string{"toxics"}, "expected ID, got 0 arguments"},
	} {
		sockctl(t, addr, tc.args...).want(t, ExitUsage, nil, []string{tc.msg})
	}
}

// The proxy lines under the socket table: upstream, counters (datagrams on a UDP proxy,
// resets and upstream failures when there are any) and toxics as --toxic writes them.
func TestProxyLines(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	w := &writer{stdout: &out}
	err := w.sockets(
		&sockagentv1.Socket{SocketId: "s1", Network: "tcp", Kind: sockagentv1.SocketKind_SOCKET_KIND_LISTENER,
			Proxy: &sockagentv1.ProxyState{Upstream: "127.0.0.1:9000", Connections: 3, ActiveConnections: 1, BytesUpstream: 1228, BytesDownstream: 3 << 10,
				Toxics: []*sockagentv1.Toxic{
					runner.ToxicProto(mustToxic(t, "latency=50ms,jitter=5ms")),
					runner.ToxicProto(mustToxic(t, "bandwidth=10M@upstream")),
				}}},
		&sockagentv1.Socket{SocketId: "s2", Network: "udp", Kind: sockagentv1.SocketKind_SOCKET_KIND_DATAGRAM,
			Proxy: &sockagentv1.ProxyState{Upstream: "127.0.0.1:53", Connections: 2, DatagramsUpstream: 10, DatagramsDownstream: 8, DatagramsDropped: 2,
				DatagramsDuplicated: 1, DatagramsReordered: 4, Resets: 0, UpstreamFailures: 1, LastUpstreamError: "CONNECTION_REFUSED: \x1b[2J"}},
		&sockagentv1.Socket{SocketId: "s3", Network: "tcp", Kind: sockagentv1.SocketKind_SOCKET_KIND_LISTENER,
			Proxy: &sockagentv1.ProxyState{Resets: 2, DatagramsUpstream: 1}},
	)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{
		"s1 proxy to 127.0.0.1:9000: connections 3 (1 active), upstream 1.20 KiB, downstream 3.00 KiB",
		"s1 toxics: latency=50ms,jitter=5ms@downstream bandwidth=10Mbit@upstream",
		"s2 proxy to 127.0.0.1:53: connections 2 (0 active), upstream 0 B, downstream 0 B, datagrams upstream 10, downstream 8, dropped 2, duplicated 1, reordered 4, upstream failures 1 (last: CONNECTION_REFUSED: \\x1b[2J)",
		"s2 toxics: none",
		"s3 proxy to -: connections 0 (0 active), upstream 0 B, downstream 0 B, datagrams upstream 1, downstream 0, dropped 0, duplicated 0, reordered 0, resets 2",
		"s3 toxics: none",
	}
	if len(lines) != 4+len(want) {
		t.Fatalf("output:\n%s", out.String())
	}
	for i, w := range want {
		if lines[4+i] != w {
			t.Errorf("line %d:\n got %q\nwant %q", 4+i, lines[4+i], w)
		}
	}
}

func mustToxic(t *testing.T, spec string) scenario.Toxic {
	t.Helper()
	tx, err := scenario.ParseToxic(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// serve proxy and toxics against a real agent: the requests carry the flags, the proxy
// forwards bytes to a Go server and back through a 300 ms latency toxic, toxics --clear
// takes it away on the same connection, and ls shows the counters and toxics.
func TestProxyCommandsRealAgent(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() { // the upstream: an echo of one connection
		c, err := up.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()

	var lis sockagentv1.ListenResponse
	okJSON(t, addr, &lis, "listen", "tcp", "127.0.0.1:0")
	id := lis.GetSocket().GetSocketId()
	defer ok(t, addr, "close", id)
	var served sockagentv1.ServeResponse
	okJSON(t, addr, &served, "serve", id, "proxy", "--upstream", up.Addr().String(), "--upstream-timeout", "2s",
		"--toxic", "latency=300ms", "--toxic", "bandwidth=100Mbit,name=narrow@upstream")
	px := served.GetSocket().GetProxy()
	// As the agent keeps them: name, toxicity and jitter filled in.
	wantToxics := []*sockagentv1.Toxic{
		{Name: "latency_downstream", Direction: sockagentv1.ToxicDirection_TOXIC_DIRECTION_DOWNSTREAM, Toxicity: proto.Float64(1),
			Kind: &sockagentv1.Toxic_Latency{Latency: &sockagentv1.LatencyToxic{Latency: durationpb.New(300 * time.Millisecond), Jitter: durationpb.New(0)}}},
		{Name: "narrow", Direction: sockagentv1.ToxicDirection_TOXIC_DIRECTION_UPSTREAM, Toxicity: proto.Float64(1),
			Kind: &sockagentv1.Toxic_Bandwidth{Bandwidth: &sockagentv1.BandwidthToxic{BytesPerSecond: 12_500_000}}},
	}
	if px.GetUpstream() != up.Addr().String() || len(px.GetToxics()) != 2 {
		t.Fatalf("proxy state %v", px)
	}
	for i, w := range wantToxics {
		if got := px.GetToxics()[i]; !proto.Equal(got, w) {
			t.Errorf("toxic %d: %v, want %v", i, got, w)
		}
	}

	c, err := net.DialTimeout("tcp", lis.GetSocket().GetLocalAddress(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func(msg string) time.Duration {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		t0 := time.Now()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("read %q, %v; want %q", buf, err, msg)
		}
		return time.Since(t0)
	}
	if d := roundTrip("slow"); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("round trip through a 300ms latency toxic took %s, want 300ms..2s", d)
	}

	r := ok(t, addr, "toxics", id, "--clear")
	if !strings.Contains(r.stdout, "\n"+id+" toxics: none\n") || !strings.Contains(r.stdout, id+" proxy to "+up.Addr().String()+": connections 1 (1 active)") {
		t.Errorf("toxics --clear printed:\n%s", r.stdout)
	}
	if d := roundTrip("fast"); d >= 250*time.Millisecond {
		t.Errorf("round trip without toxics took %s, want well under the 300ms toxic", d)
	}
	r = ok(t, addr, "toxics", id, "--toxic", "slicer=2,delay=1ms", "--toxic", "reset_peer=after:1m@upstream")
	if !strings.Contains(r.stdout, id+" toxics: slicer=2,delay=1ms@downstream reset_peer=after:1m0s@upstream\n") {
		t.Errorf("toxics printed:\n%s", r.stdout)
	}
	if d := roundTrip("sliced"); d >= 2*time.Second {
		t.Errorf("round trip through the slicer took %s", d)
	}
	// A chunk is counted once written: the client can read the last slice before the
	// proxy's count moves, so ls is read again until the count is there.
	want := id + " proxy to " + up.Addr().String() + ": connections 1 (1 active), upstream 14 B, downstream 14 B\n"
	deadline := time.Now().Add(5 * time.Second)
	for r = ok(t, addr, "ls"); !strings.Contains(r.stdout, want) && time.Now().Before(deadline); r = ok(t, addr, "ls") {
		time.Sleep(5 * time.Millisecond) // polling interval; the count decides
	}
	if !strings.Contains(r.stdout, want) {
		t.Errorf("ls:\n%s", r.stdout)
	}

	// The agent's own refusals: exit 1 with its reason.
	sockctl(t, addr, "toxics", id, "--toxic", "loss=0.1").want(t, ExitFailure, nil, []string{"INVALID_ARGUMENT", "loss"})
	var plain sockagentv1.ListenResponse
	okJSON(t, addr, &plain, "listen", "tcp", "127.0.0.1:0")
	defer ok(t, addr, "close", plain.GetSocket().GetSocketId())
	sockctl(t, addr, "toxics", plain.GetSocket().GetSocketId(), "--toxic", "timeout").want(t, ExitFailure, nil, []string{"WRONG_SOCKET_KIND"})
}

// examples/slow-server.yaml runs on three in-process agents (its listeners on loopback): the
// 100 ms timeout expires through the 300 ms latency toxic, the late answer arrives when the
// toxic says, and once the toxics step cleared it the same exchange is fast.
func TestExampleSlowServer(t *testing.T) {
	t.Parallel()
	r := runArgs(t, loopbackExample(t, "slow-server.yaml", 2), "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var rep runner.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if len(rep.Steps) != 11 || rep.Passed != 11 || rep.Failed != 0 {
		t.Fatalf("%d steps, %d passed, %d failed:\n%s", len(rep.Steps), rep.Passed, rep.Failed, r.stdout)
	}
	byName := map[string]runner.StepReport{}
	for _, s := range rep.Steps {
		byName[s.Name] = s
	}
	for _, tc := range []struct {
		step     string
		reason   string
		min, max float64 // milliseconds
	}{
		// The agent's recv gives up after its 100 ms, long before the answer's 300 ms.
		{"the client's 100ms timeout expires", "TIMEOUT", 100, 290},
		{"the answer comes late", "", 1, 1000},
		{"the answer comes within 100ms", "", 0, 100},
	} {
		s, ok := byName[tc.step]
		if !ok || s.Status != "passed" || s.Reason != tc.reason || s.DurationMS < tc.min || s.DurationMS > tc.max {
			t.Errorf("step %q: %+v; want passed, reason %q, %v..%v ms", tc.step, s, tc.reason, tc.min, tc.max)
		}
	}
	// From the question to the late answer: the toxic's 300 ms (less the sub-millisecond
	// gaps between steps, which the step durations leave out), and not much more.
	waited := byName["client asks"].DurationMS + byName["the client's 100ms timeout expires"].DurationMS + byName["the answer comes late"].DurationMS
	if waited < 290 || waited > 1000 {
		t.Errorf("the answer came %.1f ms after the question, want about 300", waited)
	}
	if s := byName["the server is fast again"]; s.Status != "passed" || s.Action != "toxics" {
		t.Errorf("toxics step: %+v", s)
	}
}
