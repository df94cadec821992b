package engine

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// TestValidateToxics: each refusal names the toxic and what to give; defaults are filled in.
func TestValidateToxics(t *testing.T) {
	t.Parallel()
	up := func(k ToxicKind) Toxic { return Toxic{Direction: Upstream, Toxicity: 1, Kind: k} }
	with := func(tx Toxic, f func(*Toxic)) Toxic { f(&tx); return tx }
	for _, tc := range []struct {
		name     string
		toxics   []Toxic
		datagram bool
		want     string // "" accepts
	}{
		{"latency", []Toxic{with(up(ToxicLatency), func(x *Toxic) { x.Latency, x.Jitter = time.Second, time.Second })}, false, ""},
		{"latency max", []Toxic{with(up(ToxicLatency), func(x *Toxic) { x.Latency = time.Minute })}, false, ""},
		{"latency over", []Toxic{with(up(ToxicLatency), func(x *Toxic) { x.Latency = time.Minute + 1 })}, false, `toxic "latency_upstream": latency 1m0.000000001s out of range`},
		{"latency negative", []Toxic{with(up(ToxicLatency), func(x *Toxic) { x.Latency = -1 })}, false, "latency -1ns out of range"},
		{"jitter over latency", []Toxic{with(up(ToxicLatency), func(x *Toxic) { x.Latency, x.Jitter = time.Second, time.Second+1 })}, false, "jitter 1.000000001s out of range"},
		{"jitter negative", []Toxic{with(up(ToxicLatency), func(x *Toxic) { x.Jitter = -1 })}, false, "jitter -1ns out of range"},
		{"bandwidth zero", []Toxic{up(ToxicBandwidth)}, false, "bytes_per_second is required"},
		{"bandwidth", []Toxic{with(up(ToxicBandwidth), func(x *Toxic) { x.Rate = 1 })}, true, ""},
		{"slicer zero", []Toxic{up(ToxicSlicer)}, false, "average_size is required"},
		{"slicer variation", []Toxic{with(up(ToxicSlicer), func(x *Toxic) { x.AverageSize, x.SizeVariation = 5, 5 })}, false, "size_variation 5 out of range"},
		{"slicer variation ok", []Toxic{with(up(ToxicSlicer), func(x *Toxic) { x.AverageSize, x.SizeVariation, x.Delay = 5, 4, time.Second })}, false, ""},
		{"slicer delay", []Toxic{with(up(ToxicSlicer), func(x *Toxic) { x.AverageSize, x.Delay = 5, time.Second+1 })}, false, "delay 1.000000001s out of range"},
		{"slicer delay negative", []Toxic{with(up(ToxicSlicer), func(x *Toxic) { x.AverageSize, x.Delay = 5, -1 })}, false, "delay -1ns out of range"},
		{"reset negative", []Toxic{with(up(ToxicResetPeer), func(x *Toxic) { x.After = -1 })}, false, "after -1ns is negative"},
		{"reset", []Toxic{up(ToxicResetPeer)}, false, ""},
		{"timeout negative", []Toxic{with(up(ToxicTimeout), func(x *Toxic) { x.CloseAfter = -1 })}, false, "close_after -1ns is negative"},
		{"timeout", []Toxic{up(ToxicTimeout)}, false, ""},
		{"limit zero", []Toxic{up(ToxicLimitData)}, false, "bytes is required"},
		{"limit", []Toxic{with(up(ToxicLimitData), func(x *Toxic) { x.Bytes = 1 })}, false, ""},
		{"reorder depth", []Toxic{with(up(ToxicReorder), func(x *Toxic) { x.Depth = 65 })}, true, "depth 65 out of range"},
		{"reorder depth max", []Toxic{with(up(ToxicReorder), func(x *Toxic) { x.Depth, x.Delay = 64, 10*time.Second })}, true, ""},
		{"reorder delay", []Toxic{with(up(ToxicReorder), func(x *Toxic) { x.Delay = 10*time.Second + 1 })}, true, "delay 10.000000001s out of range"},
		{"reorder delay negative", []Toxic{with(up(ToxicReorder), func(x *Toxic) { x.Delay = -1 })}, true, "delay -1ns out of range"},
		{"loss on a stream", []Toxic{up(ToxicLoss)}, false, "loss applies to UDP proxies"},
		{"duplicate on a stream", []Toxic{up(ToxicDuplicate)}, false, "duplicate applies to UDP proxies"},
		{"reorder on a stream", []Toxic{up(ToxicReorder)}, false, "reorder applies to UDP proxies"},
		{"slicer on UDP", []Toxic{with(up(ToxicSlicer), func(x *Toxic) { x.AverageSize = 1 })}, true, "slicer applies to stream proxies"},
		{"timeout on UDP", []Toxic{up(ToxicTimeout)}, true, "timeout applies to stream proxies"},
		{"reset on UDP", []Toxic{up(ToxicResetPeer)}, true, "reset_peer applies to stream proxies"},
		{"limit on UDP", []Toxic{with(up(ToxicLimitData), func(x *Toxic) { x.Bytes = 1 })}, true, "limit_data applies to stream proxies"},
		{"loss", []Toxic{up(ToxicLoss), with(up(ToxicDuplicate), func(x *Toxic) { x.Direction = Downstream })}, true, ""},
		{"no kind", []Toxic{{Direction: Upstream, Toxicity: 1}}, false, "a kind is required"},
		{"kind out of range", []Toxic{{Direction: Upstream, Toxicity: 1, Kind: ToxicReorder + 1}}, true, "a kind is required"},
		{"no direction", []Toxic{{Toxicity: 1, Kind: ToxicLoss, Name: "x"}}, true, `toxic "x": direction is required`},
		{"direction out of range", []Toxic{{Toxicity: 1, Kind: ToxicLoss, Name: "x", Direction: Downstream + 1}}, true, "direction is required"},
		{"toxicity over", []Toxic{with(up(ToxicLoss), func(x *Toxic) { x.Toxicity = 1.01 })}, true, "toxicity 1.01 out of range"},
		{"toxicity negative", []Toxic{with(up(ToxicLoss), func(x *Toxic) { x.Toxicity = -0.01 })}, true, "toxicity -0.01 out of range"},
		{"toxicity NaN", []Toxic{with(up(ToxicLoss), func(x *Toxic) { x.Toxicity = math.NaN() })}, true, "toxicity NaN out of range"},
		{"toxicity zero", []Toxic{with(up(ToxicLoss), func(x *Toxic) { x.Toxicity = 0 })}, true, ""},
		{"same name", []Toxic{up(ToxicLoss), up(ToxicLoss)}, true, `toxic "loss_upstream": the name is used twice`},
		{"names differ", []Toxic{up(ToxicLoss), with(up(ToxicLoss), func(x *Toxic) { x.Name = "second" })}, true, ""},
		{"long name", []Toxic{with(up(ToxicLoss), func(x *Toxic) { x.Name = strings.Repeat("n", 129) })}, true, "give at most 128 printable characters"},
		{"name max", []Toxic{with(up(ToxicLoss), func(x *Toxic) { x.Name = strings.Repeat("n", 128) })}, true, ""},
		{"control in name", []Toxic{with(up(ToxicLoss), func(x *Toxic) { x.Name = "a\nb" })}, true, "printable"},
		{"DEL in name", []Toxic{with(up(ToxicLoss), func(x *Toxic) { x.Name = "a\x7fb" })}, true, "printable"},
		{"too many", make([]Toxic, 33), true, "33 toxics; give at most 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ValidateToxics(tc.toxics, tc.datagram)
			if tc.want == "" {
				if err != nil || len(got) != len(tc.toxics) {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if Reason(err) != "INVALID_ARGUMENT" || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want INVALID_ARGUMENT with %q", err, tc.want)
			}
		})
	}
}

// TestValidateToxicsDefaults: names default to kind_direction, a reorder without depth or
// delay gets 1 and 100ms, and 32 toxics are accepted.
func TestValidateToxicsDefaults(t *testing.T) {
	t.Parallel()
	got, err := ValidateToxics([]Toxic{{Direction: Downstream, Toxicity: 1, Kind: ToxicReorder}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if g := got[0]; g.Name != "reorder_downstream" || g.Depth != 1 || g.Delay != 100*time.Millisecond {
		t.Errorf("got %+v, want name reorder_downstream, depth 1, delay 100ms", g)
	}
	if g := got[0].String(); g != "reorder_downstream (reorder, downstream)" {
		t.Errorf("String %q", g)
	}
	many := make([]Toxic, 32)
	for i := range many {
		many[i] = Toxic{Name: fmt.Sprint("t", i), Direction: Upstream, Toxicity: 1, Kind: ToxicLoss}
	}
	if _, err := ValidateToxics(many, true); err != nil {
		t.Errorf("32 toxics: %v", err)
	}
	for k := ToxicLatency; k <= ToxicReorder+1; k++ {
		if k.String() == "" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if ToxicKind(0).String() != "unknown" || ToxicDirection(0).String() != "unknown" {
		t.Error("unknown kinds and directions are named unknown")
	}
}

// TestDrawAndPace: toxicity 0 never applies and 1 always does; jitter stays within its
// bounds; slicer pieces within average+-variation; the pacer spaces writes n/rate apart and
// keeps its schedule when late but not after idleness.
func TestDrawAndPace(t *testing.T) {
	t.Parallel()
	for range 1000 {
		if hits(0) || !hits(1) {
			t.Fatal("toxicity 0 applied, or 1 did not")
		}
		if d := delay(50*time.Millisecond, 5*time.Millisecond); d < 45*time.Millisecond || d > 55*time.Millisecond {
			t.Fatalf("delay %v out of [45ms, 55ms]", d)
		}
		if n := pieceSize(&Toxic{AverageSize: 10, SizeVariation: 3}); n < 7 || n > 13 {
			t.Fatalf("piece %d out of [7, 13]", n)
		}
	}
	if d := delay(50*time.Millisecond, 0); d != 50*time.Millisecond {
		t.Errorf("delay without jitter %v", d)
	}
	if n := pieceSize(&Toxic{AverageSize: 10}); n != 10 {
		t.Errorf("piece without variation %d", n)
	}
	half := 0
	for range 2000 {
		if hits(0.5) {
			half++
		}
	}
	if half < 1000-112 || half > 1000+112 {
		t.Errorf("toxicity 0.5 hit %d of 2000", half)
	}
	set := &toxicSet{toxics: []Toxic{
		{Direction: Upstream, Toxicity: 1, Kind: ToxicLatency, Latency: time.Second},
		{Direction: Downstream, Toxicity: 0, Kind: ToxicBandwidth, Rate: 5},
		{Direction: Downstream, Toxicity: 1, Kind: ToxicLimitData, Bytes: 5},
	}}
	if st := drawStream(set, Upstream); !st.hasLatency || st.latency != time.Second || st.empty() {
		t.Errorf("upstream drew %+v", st)
	}
	if st := drawStream(set, Downstream); st.rate != 0 || st.limit == nil || st.hasLatency {
		t.Errorf("downstream drew %+v", st)
	}
	if st := (streamToxics{}); !st.empty() {
		t.Error("no toxics is not empty")
	}

	var p ratePacer
	t0 := time.Unix(1000, 0)
	if at := p.reserve(t0, 1000, 1000, true); !at.Equal(t0.Add(time.Second)) {
		t.Errorf("first reserve at %v, want t0+1s", at.Sub(t0))
	}
	// Woken 300ms late, not idle: the schedule holds, so the next write is due at once.
	if at := p.reserve(t0.Add(1300*time.Millisecond), 500, 1000, false); !at.Equal(t0.Add(1500 * time.Millisecond)) {
		t.Errorf("late reserve at %v, want t0+1.5s", at.Sub(t0))
	}
	// Idle since then: a new schedule from now.
	if at := p.reserve(t0.Add(5*time.Second), 100, 1000, true); !at.Equal(t0.Add(5100 * time.Millisecond)) {
		t.Errorf("reserve after idleness at %v, want t0+5.1s", at.Sub(t0))
	}
	// Idle but ahead of the schedule: it holds.
	if at := p.reserve(t0.Add(5*time.Second), 100, 1000, true); !at.Equal(t0.Add(5200 * time.Millisecond)) {
		t.Errorf("reserve ahead at %v, want t0+5.2s", at.Sub(t0))
	}
	for _, tc := range []struct {
		rate uint64
		want int
	}{{1, 1}, {99, 1}, {100, 1}, {1000, 10}, {12_500_000, 125_000}, {1 << 40, 1 << 20}} {
		if got := paceSize(tc.rate); got != tc.want {
			t.Errorf("paceSize(%d) = %d, want %d", tc.rate, got, tc.want)
		}
	}
}
