package agent_test

// Tests of MeasureService.Probe against sockets the agent serves (Serve) and plain loopback
// endpoints of the test.

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/codes"
)

func (e *env) mc() sockagentv1.MeasureServiceClient {
	return sockagentv1.NewMeasureServiceClient(e.conn)
}

func (e *env) probe(t *testing.T, r *sockagentv1.ProbeRequest) *sockagentv1.ProbeResponse {
	t.Helper()
	res, err := e.mc().Probe(ctxT(t), r)
	if err != nil {
		t.Fatalf("probe %v: %v", r, err)
	}
	return res
}

// wantClean checks a probe where every attempt succeeded, and the order of the statistics.
func wantClean(t *testing.T, res *sockagentv1.ProbeResponse, count int) {
	t.Helper()
	st := res.GetRtt()
	if res.GetSent() != uint32(count) || res.GetReceived() != uint32(count) || st.GetSamples() != uint32(count) || res.GetLoss() != 0 || len(res.GetErrors()) != 0 {
		t.Fatalf("probe: sent %d received %d samples %d loss %v errors %v; want %d, all received", res.GetSent(), res.GetReceived(), st.GetSamples(), res.GetLoss(), res.GetErrors(), count)
	}
	mn, p50, p90, p99, mx, mean := st.GetMin().AsDuration(), st.GetP50().AsDuration(), st.GetP90().AsDuration(), st.GetP99().AsDuration(), st.GetMax().AsDuration(), st.GetMean().AsDuration()
	if mn <= 0 || mn > p50 || p50 > p90 || p90 > p99 || p99 > mx || mean < mn || mean > mx {
		t.Errorf("stats out of order: min %s p50 %s p90 %s p99 %s max %s mean %s", mn, p50, p90, p99, mx, mean)
	}
	if res.GetRemoteAddress() == "" || res.GetLocalAddress() == "" || res.GetElapsed().AsDuration() <= 0 {
		t.Errorf("remote %q local %q elapsed %s: want all set", res.GetRemoteAddress(), res.GetLocalAddress(), res.GetElapsed().AsDuration())
	}
}

// wantErrors checks that every attempt failed with reason.
func wantErrors(t *testing.T, res *sockagentv1.ProbeResponse, count int, reason string) {
	t.Helper()
	if res.GetSent() != uint32(count) || res.GetReceived() != 0 || res.GetLoss() != 1 || res.GetRtt().GetSamples() != 0 {
		t.Errorf("sent %d received %d loss %v samples %d; want %d sent, none received, loss 1", res.GetSent(), res.GetReceived(), res.GetLoss(), res.GetRtt().GetSamples(), count)
	}
	errs := res.GetErrors()
	if len(errs) != 1 || errs[0].GetReason() != reason || errs[0].GetCount() != uint32(count) || errs[0].GetMessage() == "" {
		t.Errorf("errors %v; want %d x %s with a message", errs, count, reason)
	}
}

func closedPort(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestProbeConnect(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, l.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	res := e.probe(t, &sockagentv1.ProbeRequest{Network: "tcp", Address: l.GetLocalAddress(), Count: 20, Warmup: 2})
	wantClean(t, res, 20)
	if res.GetRemoteAddress() != l.GetLocalAddress() {
		t.Errorf("remote_address %q, want %q", res.GetRemoteAddress(), l.GetLocalAddress())
	}
	e.waitServing(t, l.GetSocketId(), "22 connections, all ended", func(sv *sockagentv1.Serving) bool {
		return sv.GetConnections() == 22 && sv.GetActiveConnections() == 0
	})
}

func TestProbeConnectRefused(t *testing.T) {
	e := newEnv(t)
	res := e.probe(t, &sockagentv1.ProbeRequest{Network: "tcp", Address: closedPort(t, "tcp"), Mode: sockagentv1.ProbeMode_PROBE_MODE_CONNECT, Count: 5})
	wantErrors(t, res, 5, contract.ReasonConnectionRefused)
}

func TestProbeEchoTCP(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, l.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	res := e.probe(t, &sockagentv1.ProbeRequest{Network: "tcp", Address: l.GetLocalAddress(), Mode: sockagentv1.ProbeMode_PROBE_MODE_ECHO, Count: 50, Size: 1000, Warmup: 3})
	wantClean(t, res, 50)
	// One connection carried every attempt, warmup included; the probe reset it at the end.
	e.waitServing(t, l.GetSocketId(), "1 connection, 53000 bytes echoed", func(sv *sockagentv1.Serving) bool {
		return sv.GetConnections() == 1 && sv.GetBytesIn() == 53000 && sv.GetBytesOut() == 53000 && sv.GetActiveConnections() == 0
	})
}

// TestProbeEchoTCPBig: a request larger than the socket buffers is read while it is written.
func TestProbeEchoTCPBig(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, l.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	res := e.probe(t, &sockagentv1.ProbeRequest{Network: "tcp", Address: l.GetLocalAddress(), Mode: sockagentv1.ProbeMode_PROBE_MODE_ECHO, Count: 3, Size: 1 << 20, Timeout: dur(5 * time.Second)})
	wantClean(t, res, 3)
}

func TestProbeEchoUDP(t *testing.T) {
	e := newEnv(t)
	b := e.bind(t, "udp", "127.0.0.1:0")
	e.serve(t, b.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	res := e.probe(t, &sockagentv1.ProbeRequest{Network: "udp", Address: b.GetLocalAddress(), Count: 50, Size: 100})
	wantClean(t, res, 50)
	e.waitServing(t, b.GetSocketId(), "50 datagrams of 100 bytes", func(sv *sockagentv1.Serving) bool {
		return sv.GetDatagramsIn() == 50 && sv.GetBytesIn() == 5000
	})
}

func TestProbeEchoUDPNoAnswer(t *testing.T) {
	e := newEnv(t)
	b := e.bind(t, "udp", "127.0.0.1:0") // bound, never read: nothing answers
	res := e.probe(t, &sockagentv1.ProbeRequest{Network: "udp", Address: b.GetLocalAddress(), Count: 3, Timeout: dur(50 * time.Millisecond)})
	wantErrors(t, res, 3, contract.ReasonTimeout)
	if el := res.GetElapsed().AsDuration(); el < 150*time.Millisecond {
		t.Errorf("elapsed %s; want at least 3 timeouts of 50ms", el)
	}
}

func TestProbeEchoUDPRefused(t *testing.T) {
	e := newEnv(t)
	res := e.probe(t, &sockagentv1.ProbeRequest{Network: "udp", Address: closedPort(t, "udp"), Count: 4, Timeout: dur(500 * time.Millisecond)})
	wantErrors(t, res, 4, contract.ReasonConnectionRefused)
}

func TestProbeEchoMismatch(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, l.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_SOURCE, 0, 0) // answers, but not an echo
	res := e.probe(t, &sockagentv1.ProbeRequest{Network: "tcp", Address: l.GetLocalAddress(), Mode: sockagentv1.ProbeMode_PROBE_MODE_ECHO, Count: 3})
	wantErrors(t, res, 3, "ECHO_MISMATCH")
}

func TestProbeInterval(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, l.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	res := e.probe(t, &sockagentv1.ProbeRequest{Network: "tcp", Address: l.GetLocalAddress(), Mode: sockagentv1.ProbeMode_PROBE_MODE_ECHO, Count: 5, Interval: dur(30 * time.Millisecond)})
	wantClean(t, res, 5)
	if el := res.GetElapsed().AsDuration(); el < 120*time.Millisecond {
		t.Errorf("elapsed %s; want at least 4 intervals of 30ms", el)
	}
}

// TestProbeDeadline: the RPC deadline ends the probe with the attempts done so far.
func TestProbeDeadline(t *testing.T) {
	e := newEnv(t)
	b := e.bind(t, "udp", "127.0.0.1:0")
	e.serve(t, b.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	ctx, cancel := context.WithTimeout(ctxT(t), 500*time.Millisecond)
	defer cancel()
	res, err := e.mc().Probe(ctx, &sockagentv1.ProbeRequest{Network: "udp", Address: b.GetLocalAddress(), Count: 1000, Interval: dur(20 * time.Millisecond)})
	if err != nil {
		t.Fatalf("probe cut by its deadline: %v; want the partial results", err)
	}
	if n := res.GetSent(); n < 5 || n > 26 || res.GetReceived() != n {
		t.Errorf("sent %d received %d; want the about 24 attempts that fit in 500ms, all received", n, res.GetReceived())
	}
}

func TestProbePolicyDenied(t *testing.T) {
	e := polEnv(t, `
default:
  destinations: {deny: [{name: no 127.0.0.9, cidrs: [127.0.0.9]}]}
`, false)
	for _, r := range []*sockagentv1.ProbeRequest{
		{Network: "tcp", Address: "127.0.0.9:80"},
		{Network: "udp", Address: "127.0.0.9:53", Mode: sockagentv1.ProbeMode_PROBE_MODE_ECHO},
	} {
		_, err := e.mc().Probe(ctxT(t), r)
		wantDenied(t, err, "no 127.0.0.9", "default", "probe "+r.GetNetwork()+" "+r.GetAddress(), "destination 127.0.0.9")
	}
	e = polEnv(t, `
default:
  networks: [tcp]
`, false)
	_, err := e.mc().Probe(ctxT(t), &sockagentv1.ProbeRequest{Network: "udp", Address: "127.0.0.1:53"})
	wantStatus(t, err, codes.PermissionDenied, contract.ReasonPolicyDenied, "network udp")
}

func TestProbeBadRequests(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		r      *sockagentv1.ProbeRequest
		reason string
		parts  []string
	}{
		{&sockagentv1.ProbeRequest{Network: "unix", Address: "/tmp/x"}, contract.ReasonInvalidNetwork, []string{"network \"unix\"", "tcp, tcp4"}},
		{&sockagentv1.ProbeRequest{Network: "tcp"}, contract.ReasonInvalidAddress, []string{"probe: address", "empty"}},
		{&sockagentv1.ProbeRequest{Network: "udp", Address: "127.0.0.1:9", Mode: sockagentv1.ProbeMode_PROBE_MODE_CONNECT}, contract.ReasonInvalidArgument, []string{"mode connect", "use mode echo"}},
		{&sockagentv1.ProbeRequest{Network: "tcp", Address: "127.0.0.1:9", Mode: 7}, contract.ReasonInvalidArgument, []string{"mode 7"}},
		{&sockagentv1.ProbeRequest{Network: "tcp", Address: "127.0.0.1:9", Count: 2_000_000}, contract.ReasonInvalidArgument, []string{"count 2000000", "up to 1000000"}},
		{&sockagentv1.ProbeRequest{Network: "tcp", Address: "127.0.0.1:9", Warmup: 2_000_000}, contract.ReasonInvalidArgument, []string{"warmup 2000000"}},
		{&sockagentv1.ProbeRequest{Network: "udp", Address: "127.0.0.1:9", Size: 10}, contract.ReasonInvalidArgument, []string{"size 10", "24"}},
		{&sockagentv1.ProbeRequest{Network: "udp", Address: "127.0.0.1:9", Size: 70000}, contract.ReasonInvalidArgument, []string{"size 70000", "65000"}},
		{&sockagentv1.ProbeRequest{Network: "tcp", Address: "127.0.0.1:9", Size: 2 << 20}, contract.ReasonInvalidArgument, []string{"size 2097152"}},
		{&sockagentv1.ProbeRequest{Network: "tcp", Address: "127.0.0.1:9", Timeout: dur(-time.Second)}, contract.ReasonInvalidArgument, []string{"timeout -1s"}},
		{&sockagentv1.ProbeRequest{Network: "tcp", Address: "127.0.0.1:9", Interval: dur(2 * time.Hour)}, contract.ReasonInvalidArgument, []string{"interval 2h0m0s", "up to 1h0m0s"}},
		{&sockagentv1.ProbeRequest{Network: "tcp", Address: "127.0.0.1:9", LocalAddress: "nonsense"}, contract.ReasonInvalidAddress, []string{"local address \"nonsense\""}},
	} {
		_, err := e.mc().Probe(ctxT(t), tc.r)
		wantStatus(t, err, codes.InvalidArgument, tc.reason, tc.parts...)
	}
}

func TestProbeLocalAddress(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, l.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	res := e.probe(t, &sockagentv1.ProbeRequest{Network: "tcp", Address: l.GetLocalAddress(), LocalAddress: "127.0.0.2:0"})
	wantClean(t, res, 10) // count 0 means 10
	if !strings.HasPrefix(res.GetLocalAddress(), "127.0.0.2:") {
		t.Errorf("local_address %q, want 127.0.0.2:PORT", res.GetLocalAddress())
	}
}

func TestProbePolicyLocalAndLimits(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	e := polEnv(t, "default:\n  local: {allow: [{name: low, ports: [\"1024-1100\"]}]}\n", false)
	_, err = e.mc().Probe(ctxT(t), &sockagentv1.ProbeRequest{Network: "tcp", Address: target.Addr().String(), LocalAddress: "127.0.0.1:0"})
	wantDenied(t, err, "local.allow", "default", "local address 127.0.0.1:")
	_, err = e.mc().Probe(ctxT(t), &sockagentv1.ProbeRequest{Network: "tcp", Address: target.Addr().String(), LocalAddress: "127.0.0.1:2000"})
	wantDenied(t, err, "local.allow", "default", "local address 127.0.0.1:2000")

	// A probe holds a socket slot while it runs.
	e = polEnv(t, "default:\n  limits: {sockets: 1}\n", false)
	e.bind(t, "udp", "127.0.0.1:0")
	_, err = e.mc().Probe(ctxT(t), &sockagentv1.ProbeRequest{Network: "tcp", Address: target.Addr().String()})
	wantLimit(t, err, "limits.sockets", 1)
}
