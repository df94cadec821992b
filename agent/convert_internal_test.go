package agent

import (
	"testing"

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
