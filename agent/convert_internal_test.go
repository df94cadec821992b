package agent

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent/internal/engine"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// roundTrip checks an enum table: every proto value but the listed unconvertible ones converts
// to an engine value and back to itself, no two proto values share an engine value, and every
// engine value listed converts back.
func roundTrip[P interface {
	comparable
	~int32
}, E comparable](t *testing.T, name string, tab enumTable[P, E], names map[int32]string, unconvertible ...P) {
	t.Helper()
	seen := map[E]P{}
	for num, n := range names {
		p := P(num)
		e, ok := tab.engine(p)
		skip := false
		for _, u := range unconvertible {
			skip = skip || u == p
		}
		if skip {
			if ok {
				t.Errorf("%s: %s converts to %v; it must not", name, n, e)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: %s has no engine value", name, n)
			continue
		}
		if prev, dup := seen[e]; dup {
			t.Errorf("%s: %s and %v both convert to %v", name, n, prev, e)
		}
		seen[e] = p
		if back, ok := tab.proto(e); !ok || back != p {
			t.Errorf("%s: %s -> %v -> %v", name, n, e, back)
		}
	}
	if len(seen) != len(tab) {
		t.Errorf("%s: the table has %d pairs, %d proto values convert", name, len(tab), len(seen))
	}
}

func TestEnumTablesRoundTrip(t *testing.T) {
	t.Parallel()
	roundTrip(t, "SocketKind", kinds, sockagentv1.SocketKind_name, sockagentv1.SocketKind_SOCKET_KIND_UNSPECIFIED)
	roundTrip(t, "SocketState", states, sockagentv1.SocketState_name, sockagentv1.SocketState_SOCKET_STATE_UNSPECIFIED)
	roundTrip(t, "ShutdownDirection", shutdownDirections, sockagentv1.ShutdownDirection_name, sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_UNSPECIFIED)
	roundTrip(t, "Behaviour", behaviours, sockagentv1.Behaviour_name, sockagentv1.Behaviour_BEHAVIOUR_UNSPECIFIED)
	roundTrip(t, "ProbeMode", probeModes, sockagentv1.ProbeMode_name)
	roundTrip(t, "Direction", receives, sockagentv1.Direction_name, sockagentv1.Direction_DIRECTION_UNSPECIFIED)
	roundTrip(t, "EventKind", eventKinds, sockagentv1.EventKind_name, sockagentv1.EventKind_EVENT_KIND_UNSPECIFIED)
	// and every engine kind has a proto value: no event goes out as UNSPECIFIED
	for k := engine.EventOpened; k <= engine.EventLimitRefused; k++ {
		if _, ok := eventKinds.proto(k); !ok {
			t.Errorf("EventKind: engine kind %v has no proto value", k)
		}
	}
}

// TestToxicsRoundTrip: every kind of toxic converts to the engine and back unchanged, an
// unset toxicity is 1, and an unknown direction converts to the zero one the engine refuses.
func TestToxicsRoundTrip(t *testing.T) {
	t.Parallel()
	roundTrip(t, "ToxicDirection", toxicDirections, sockagentv1.ToxicDirection_name, sockagentv1.ToxicDirection_TOXIC_DIRECTION_UNSPECIFIED)
	in := []engine.Toxic{
		{Name: "a", Direction: engine.Upstream, Toxicity: 0.25, Kind: engine.ToxicLatency, Latency: time.Second, Jitter: time.Millisecond},
		{Name: "b", Direction: engine.Downstream, Toxicity: 1, Kind: engine.ToxicBandwidth, Rate: 12_500_000},
		{Name: "c", Direction: engine.Upstream, Toxicity: 0, Kind: engine.ToxicSlicer, AverageSize: 10, SizeVariation: 3, Delay: time.Millisecond},
		{Name: "d", Direction: engine.Upstream, Toxicity: 1, Kind: engine.ToxicResetPeer, After: time.Second, AfterBytes: 7},
		{Name: "e", Direction: engine.Upstream, Toxicity: 1, Kind: engine.ToxicTimeout, CloseAfter: time.Second},
		{Name: "f", Direction: engine.Upstream, Toxicity: 1, Kind: engine.ToxicLimitData, Bytes: 9},
		{Name: "g", Direction: engine.Upstream, Toxicity: 1, Kind: engine.ToxicLoss},
		{Name: "h", Direction: engine.Upstream, Toxicity: 1, Kind: engine.ToxicDuplicate},
		{Name: "i", Direction: engine.Upstream, Toxicity: 1, Kind: engine.ToxicReorder, Depth: 3, Delay: time.Second},
	}
	var ps []*sockagentv1.Toxic
	for _, tx := range in {
		ps = append(ps, toxicProto(tx))
	}
	out, err := toxicsOf("test", ps)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
	got, err := toxicOf("test", 0, &sockagentv1.Toxic{Direction: 99, Kind: &sockagentv1.Toxic_Loss{Loss: &sockagentv1.LossToxic{}}})
	if err != nil || got.Toxicity != 1 || got.Direction != 0 || got.Kind != engine.ToxicLoss {
		t.Errorf("defaults: %+v, %v; want toxicity 1, direction 0, loss", got, err)
	}
	for i, bad := range []*sockagentv1.Toxic{
		{Kind: &sockagentv1.Toxic_Latency{Latency: &sockagentv1.LatencyToxic{Jitter: &durationpb.Duration{Nanos: -1, Seconds: 1}}}},
		{Kind: &sockagentv1.Toxic_Slicer{Slicer: &sockagentv1.SlicerToxic{Delay: &durationpb.Duration{Nanos: -1, Seconds: 1}}}},
		{Kind: &sockagentv1.Toxic_ResetPeer{ResetPeer: &sockagentv1.ResetPeerToxic{After: &durationpb.Duration{Nanos: -1, Seconds: 1}}}},
		{Kind: &sockagentv1.Toxic_Timeout{Timeout: &sockagentv1.TimeoutToxic{CloseAfter: &durationpb.Duration{Nanos: -1, Seconds: 1}}}},
		{Kind: &sockagentv1.Toxic_Reorder{Reorder: &sockagentv1.ReorderToxic{Delay: &durationpb.Duration{Nanos: -1, Seconds: 1}}}},
	} {
		if _, err := toxicsOf("test", []*sockagentv1.Toxic{{}, bad}); engine.Reason(err) != contract.ReasonInvalidArgument || !strings.Contains(err.Error(), "test: toxics[1]") {
			t.Errorf("bad duration %d: %v", i, err)
		}
	}
	if proxyProto(nil) != nil || proxyProto(&engine.ServingInfo{}) != nil {
		t.Error("a socket that is not a proxy shows a proxy state")
	}
}
