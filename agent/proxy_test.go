package agent_test

import (
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

func latencyToxic(d time.Duration) *sockagentv1.Toxic {
	return &sockagentv1.Toxic{Direction: sockagentv1.ToxicDirection_TOXIC_DIRECTION_DOWNSTREAM,
		Kind: &sockagentv1.Toxic_Latency{Latency: &sockagentv1.LatencyToxic{Latency: durationpb.New(d)}}}
}

// echoThrough writes msg on c and reads it back, returning how long it took.
func echoThrough(t *testing.T, c net.Conn, msg string) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo: %q, %v; want %q", buf, err, msg)
	}
	return time.Since(start)
}

// TestProxyRPCs: Serve with BEHAVIOUR_PROXY forwards to the upstream (here the agent's own echo)
// through its toxics; GetSocket shows them, named by default, with exact counters once the
// client is done; UpdateToxics changes them live; the metrics count the same bytes, also after
// the proxy closes.
func TestProxyRPCs(t *testing.T) {
	e := newEnvWith(t, agent.Config{Metrics: true})
	up := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, up.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	ln := e.listen(t, "tcp", "127.0.0.1:0")
	r, err := e.sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: ln.GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_PROXY,
		Upstream: up.GetLocalAddress(), Toxics: []*sockagentv1.Toxic{latencyToxic(30 * time.Millisecond)}, UpstreamTimeout: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	px := r.GetSocket().GetProxy()
	want := &sockagentv1.Toxic{Name: "latency_downstream", Direction: sockagentv1.ToxicDirection_TOXIC_DIRECTION_DOWNSTREAM, Toxicity: proto.Float64(1),
		Kind: &sockagentv1.Toxic_Latency{Latency: &sockagentv1.LatencyToxic{Latency: durationpb.New(30 * time.Millisecond), Jitter: durationpb.New(0)}}}
	if px.GetUpstream() != up.GetLocalAddress() || len(px.GetToxics()) != 1 || !proto.Equal(px.GetToxics()[0], want) {
		t.Errorf("proxy state %v, want upstream %s and %v", px, up.GetLocalAddress(), want)
	}
	c := dialT(t, "tcp", ln.GetLocalAddress())
	echoThrough(t, c, "warm up")
	if d := echoThrough(t, c, "hello"); d < 30*time.Millisecond || d > 100*time.Millisecond {
		t.Errorf("echo through 30ms of latency took %v", d)
	}
	u, err := e.sc.UpdateToxics(ctxT(t), &sockagentv1.UpdateToxicsRequest{SocketId: ln.GetSocketId()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(u.GetSocket().GetProxy().GetToxics()); n != 0 {
		t.Errorf("%d toxics after removing them", n)
	}
	if d := echoThrough(t, c, "quick"); d > 25*time.Millisecond {
		t.Errorf("echo without toxics took %v", d)
	}
	c.Close()
	var g *sockagentv1.GetSocketResponse
	waitFor(t, 5*time.Second, "the pair ends", func() bool {
		g, err = e.sc.GetSocket(ctxT(t), &sockagentv1.GetSocketRequest{SocketId: ln.GetSocketId()})
		return err == nil && g.GetSocket().GetProxy().GetActiveConnections() == 0
	})
	px = g.GetSocket().GetProxy()
	if px.GetConnections() != 1 || px.GetBytesUpstream() != 17 || px.GetBytesDownstream() != 17 || px.GetUpstreamFailures() != 0 {
		t.Errorf("proxy counters %v, want 1 connection, 17 bytes each way", px)
	}
	check := func(when string) {
		t.Helper()
		_, text := scrape(t, e.a.MetricsHandler(), "")
		for _, m := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"sockagent_proxy_connections_total", map[string]string{}, 1},
			{"sockagent_proxy_bytes_total", map[string]string{"direction": "upstream"}, 17},
			{"sockagent_proxy_bytes_total", map[string]string{"direction": "downstream"}, 17},
			{"sockagent_proxy_upstream_failures_total", map[string]string{}, 0},
			{"sockagent_proxy_resets_total", map[string]string{}, 0},
			{"sockagent_proxy_datagrams_impaired_total", map[string]string{"toxic": "loss"}, 0},
			{"sockagent_served_connections_total", map[string]string{"behaviour": "proxy"}, 1},
		} {
			if got := sample(t, text, m.name, m.labels); got != m.want {
				t.Errorf("%s: %s%v = %v, want %v", when, m.name, m.labels, got, m.want)
			}
		}
	}
	check("while served")
	if _, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: ln.GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	check("after close")
}

// TestProxyRefusals: each bad request is refused with its code and reason, naming what was
// wrong.
func TestProxyRefusals(t *testing.T) {
	e := polEnv(t, `default:
  destinations:
    allow: [{name: anywhere}]
    deny: [{name: no port 9, cidrs: [127.0.0.1/32], ports: ["9"]}]
`, false)
	ln := e.listen(t, "tcp", "127.0.0.1:0")
	udp := e.bind(t, "udp", "127.0.0.1:0")
	serve := func(r *sockagentv1.ServeRequest) error {
		_, err := e.sc.Serve(ctxT(t), r)
		return err
	}
	proxyTo := func(id, up string, toxics ...*sockagentv1.Toxic) *sockagentv1.ServeRequest {
		return &sockagentv1.ServeRequest{SocketId: id, Behaviour: sockagentv1.Behaviour_BEHAVIOUR_PROXY, Upstream: up, Toxics: toxics}
	}
	wantDenied(t, serve(proxyTo(ln.GetSocketId(), "127.0.0.1:9")), "no port 9", "default", "127.0.0.1:9")
	wantStatus(t, serve(proxyTo(ln.GetSocketId(), "")), codes.InvalidArgument, contract.ReasonInvalidAddress, "needs an upstream")
	wantStatus(t, serve(proxyTo(ln.GetSocketId(), "127.0.0.1:0")), codes.InvalidArgument, contract.ReasonInvalidAddress, "port 0")
	wantStatus(t, serve(proxyTo(ln.GetSocketId(), "127.0.0.1:10", &sockagentv1.Toxic{Kind: &sockagentv1.Toxic_Loss{Loss: &sockagentv1.LossToxic{}}})),
		codes.InvalidArgument, contract.ReasonInvalidArgument, "direction is required")
	bad := latencyToxic(time.Second)
	bad.Toxicity = proto.Float64(1.5)
	wantStatus(t, serve(proxyTo(ln.GetSocketId(), "127.0.0.1:10", bad)), codes.InvalidArgument, contract.ReasonInvalidArgument, `toxic "latency_downstream": toxicity 1.5`)
	badDur := latencyToxic(time.Second)
	badDur.GetLatency().Latency = &durationpb.Duration{Seconds: 1, Nanos: -1}
	wantStatus(t, serve(proxyTo(ln.GetSocketId(), "127.0.0.1:10", badDur)), codes.InvalidArgument, contract.ReasonInvalidArgument, "toxics[0]")
	wantStatus(t, serve(&sockagentv1.ServeRequest{SocketId: ln.GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO, Upstream: "127.0.0.1:10"}),
		codes.InvalidArgument, contract.ReasonInvalidArgument, "for BEHAVIOUR_PROXY only")
	wantStatus(t, serve(proxyTo(udp.GetSocketId(), "127.0.0.1:10", &sockagentv1.Toxic{Direction: sockagentv1.ToxicDirection_TOXIC_DIRECTION_UPSTREAM,
		Kind: &sockagentv1.Toxic_LimitData{LimitData: &sockagentv1.LimitDataToxic{Bytes: 1}}})),
		codes.InvalidArgument, contract.ReasonInvalidArgument, "limit_data applies to stream proxies")
	// Nothing above left the listener served.
	g, err := e.sc.GetSocket(ctxT(t), &sockagentv1.GetSocketRequest{SocketId: ln.GetSocketId()})
	if err != nil || g.GetSocket().GetServing() != nil || g.GetSocket().GetProxy() != nil {
		t.Errorf("after the refusals: %v, %v; want a listener not served", g.GetSocket(), err)
	}
	e.serve(t, ln.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	_, err = e.sc.UpdateToxics(ctxT(t), &sockagentv1.UpdateToxicsRequest{SocketId: ln.GetSocketId()})
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonWrongSocketKind, "not served as a proxy")
	_, err = e.sc.UpdateToxics(ctxT(t), &sockagentv1.UpdateToxicsRequest{SocketId: "nope"})
	wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSocket)
	if !agent.IsAudited(sockagentv1.SocketService_UpdateToxics_FullMethodName) {
		t.Error("UpdateToxics is not audited")
	}
}

// waitFor polls cond every millisecond until it holds, failing after bound.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, bound)
		}
		time.Sleep(time.Millisecond)
	}
}
