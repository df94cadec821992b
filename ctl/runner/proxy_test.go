package runner

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Every kind of toxic goes to the API's message field by field, and comes back as the spec
// it was written as.
func TestToxicProto(t *testing.T) {
	t.Parallel()
	d := durationpb.New
	up, down := sockagentv1.ToxicDirection_TOXIC_DIRECTION_UPSTREAM, sockagentv1.ToxicDirection_TOXIC_DIRECTION_DOWNSTREAM
	for _, tc := range []struct {
		spec string
		want *sockagentv1.Toxic
	}{
		{"latency=50ms,jitter=5ms@upstream", &sockagentv1.Toxic{Direction: up,
			Kind: &sockagentv1.Toxic_Latency{Latency: &sockagentv1.LatencyToxic{Latency: d(50 * time.Millisecond), Jitter: d(5 * time.Millisecond)}}}},
		{"latency=50ms", &sockagentv1.Toxic{Direction: down, Kind: &sockagentv1.Toxic_Latency{Latency: &sockagentv1.LatencyToxic{Latency: d(50 * time.Millisecond)}}}},
		{"bandwidth=100Mbit,name=narrow,toxicity=0.5@downstream", &sockagentv1.Toxic{Name: "narrow", Direction: down, Toxicity: proto.Float64(0.5),
			Kind: &sockagentv1.Toxic_Bandwidth{Bandwidth: &sockagentv1.BandwidthToxic{BytesPerSecond: 12_500_000}}}},
		{"slicer=64,variation=16,delay=1ms@downstream", &sockagentv1.Toxic{Direction: down,
			Kind: &sockagentv1.Toxic_Slicer{Slicer: &sockagentv1.SlicerToxic{AverageSize: 64, SizeVariation: 16, Delay: d(time.Millisecond)}}}},
		{"reset_peer=after:2s@downstream", &sockagentv1.Toxic{Direction: down, Kind: &sockagentv1.Toxic_ResetPeer{ResetPeer: &sockagentv1.ResetPeerToxic{After: d(2 * time.Second)}}}},
		{"reset_peer=bytes:1000@upstream", &sockagentv1.Toxic{Direction: up, Kind: &sockagentv1.Toxic_ResetPeer{ResetPeer: &sockagentv1.ResetPeerToxic{AfterBytes: 1000}}}},
		{"reset_peer@downstream", &sockagentv1.Toxic{Direction: down, Kind: &sockagentv1.Toxic_ResetPeer{ResetPeer: &sockagentv1.ResetPeerToxic{}}}},
		{"timeout=5s@downstream", &sockagentv1.Toxic{Direction: down, Kind: &sockagentv1.Toxic_Timeout{Timeout: &sockagentv1.TimeoutToxic{CloseAfter: d(5 * time.Second)}}}},
		{"timeout@upstream", &sockagentv1.Toxic{Direction: up, Kind: &sockagentv1.Toxic_Timeout{Timeout: &sockagentv1.TimeoutToxic{}}}},
		{"limit_data=1000@downstream", &sockagentv1.Toxic{Direction: down, Kind: &sockagentv1.Toxic_LimitData{LimitData: &sockagentv1.LimitDataToxic{Bytes: 1000}}}},
		{"loss,toxicity=0.1@downstream", &sockagentv1.Toxic{Direction: down, Toxicity: proto.Float64(0.1), Kind: &sockagentv1.Toxic_Loss{Loss: &sockagentv1.LossToxic{}}}},
		{"loss@downstream", &sockagentv1.Toxic{Direction: down, Kind: &sockagentv1.Toxic_Loss{Loss: &sockagentv1.LossToxic{}}}},
		{"duplicate,toxicity=0.05@upstream", &sockagentv1.Toxic{Direction: up, Toxicity: proto.Float64(0.05), Kind: &sockagentv1.Toxic_Duplicate{Duplicate: &sockagentv1.DuplicateToxic{}}}},
		{"reorder=depth:3,delay=10ms@downstream", &sockagentv1.Toxic{Direction: down,
			Kind: &sockagentv1.Toxic_Reorder{Reorder: &sockagentv1.ReorderToxic{Depth: 3, Delay: d(10 * time.Millisecond)}}}},
		{"latency=1ms,toxicity=0@downstream", &sockagentv1.Toxic{Direction: down, Toxicity: proto.Float64(0),
			Kind: &sockagentv1.Toxic_Latency{Latency: &sockagentv1.LatencyToxic{Latency: d(time.Millisecond)}}}},
	} {
		tx, err := scenario.ParseToxic(tc.spec)
		if err != nil {
			t.Fatalf("%s: %v", tc.spec, err)
		}
		got := ToxicProto(tx)
		if !proto.Equal(got, tc.want) {
			t.Errorf("ToxicProto(%s) = %v, want %v", tc.spec, got, tc.want)
		}
		if back := ToxicOfProto(got).String(); back != tx.String() {
			t.Errorf("ToxicOfProto(ToxicProto(%s)) = %s, want %s", tc.spec, back, tx.String())
		}
	}
	if got := ToxicOfProto(&sockagentv1.Toxic{}).String(); got != "unknown@" {
		t.Errorf("a toxic of no known kind shows as %q", got)
	}
	// The agent fills in the default toxicity: it is not shown.
	full := &sockagentv1.Toxic{Name: "timeout_upstream", Direction: up, Toxicity: proto.Float64(1), Kind: &sockagentv1.Toxic_Timeout{Timeout: &sockagentv1.TimeoutToxic{}}}
	if got := ToxicOfProto(full).String(); got != "timeout@upstream" {
		t.Errorf("the agent's default toxicity shows: %q", got)
	}
}

func TestToxicsText(t *testing.T) {
	t.Parallel()
	if got := ToxicsText(nil); got != "none" {
		t.Errorf("no toxics: %q", got)
	}
	a, _ := scenario.ParseToxic("latency=5ms")
	b, _ := scenario.ParseToxic("loss=0.5@upstream")
	if got, want := ToxicsText(ToxicsProto([]scenario.Toxic{a, b})), "latency=5ms@downstream loss,toxicity=0.5@upstream"; got != want {
		t.Errorf("ToxicsText = %q, want %q", got, want)
	}
	if got := ToxicsProto(nil); got == nil || len(got) != 0 {
		t.Errorf("ToxicsProto(nil) = %#v, want an empty list", got)
	}
}

// serveRequest carries a proxy's upstream, its upstream timeout and its toxics.
func TestServeRequestProxy(t *testing.T) {
	t.Parallel()
	args := scenario.Resolved{Args: scenario.Args{
		"behaviour": {Raw: "proxy"}, "upstream": {Raw: "127.0.0.1:9"}, "upstream_timeout": {Raw: "2s"},
		"toxics.0": {}, "toxics.0.latency": {Raw: "5ms"}, "toxics.0.direction": {Raw: "upstream"},
		"toxics.1": {}, "toxics.1.timeout": {},
	}}
	req, err := serveRequest(args)
	if err != nil {
		t.Fatal(err)
	}
	want := &sockagentv1.ServeRequest{Behaviour: sockagentv1.Behaviour_BEHAVIOUR_PROXY, Upstream: "127.0.0.1:9", UpstreamTimeout: durationpb.New(2 * time.Second),
		Toxics: []*sockagentv1.Toxic{
			{Direction: sockagentv1.ToxicDirection_TOXIC_DIRECTION_UPSTREAM, Kind: &sockagentv1.Toxic_Latency{Latency: &sockagentv1.LatencyToxic{Latency: durationpb.New(5 * time.Millisecond)}}},
			{Direction: sockagentv1.ToxicDirection_TOXIC_DIRECTION_DOWNSTREAM, Kind: &sockagentv1.Toxic_Timeout{Timeout: &sockagentv1.TimeoutToxic{}}},
		}}
	if !proto.Equal(req, want) {
		t.Errorf("serveRequest = %v, want %v", req, want)
	}
	args.Args["upstream_timeout"] = scenario.Scalar{Raw: "soon"}
	if _, err := serveRequest(args); err == nil {
		t.Error("a bad upstream_timeout passed")
	}
	args.Args["upstream_timeout"] = scenario.Scalar{Raw: "1s"}
	args.Args["toxics.1.jitter"] = scenario.Scalar{Raw: "1ms"}
	if _, err := serveRequest(args); err == nil {
		t.Error("a bad toxic (timeout with jitter) passed")
	}
}
