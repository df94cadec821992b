package scenario

import (
	"strings"
	"testing"
	"time"
)

// Every kind of toxic, in sockctl's form: what it reads, and that String writes it back as
// ParseToxic reads it.
func TestParseToxicKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spec  string
		want  Toxic
		canon string // String of the result
	}{
		{"latency=50ms,jitter=5ms", Toxic{Kind: ToxicLatency, Direction: DirectionDownstream, Latency: 50 * time.Millisecond, Jitter: 5 * time.Millisecond},
			"latency=50ms,jitter=5ms@downstream"},
		{"latency=1m@upstream", Toxic{Kind: ToxicLatency, Direction: DirectionUpstream, Latency: time.Minute}, "latency=1m0s@upstream"},
		{"latency=20ms,jitter=20ms", Toxic{Kind: ToxicLatency, Direction: DirectionDownstream, Latency: 20 * time.Millisecond, Jitter: 20 * time.Millisecond},
			"latency=20ms,jitter=20ms@downstream"},
		{"bandwidth=10M@downstream", Toxic{Kind: ToxicBandwidth, Direction: DirectionDownstream, BytesPerSecond: 1_250_000}, "bandwidth=10Mbit@downstream"},
		{"bandwidth=100Mbit", Toxic{Kind: ToxicBandwidth, Direction: DirectionDownstream, BytesPerSecond: 12_500_000}, "bandwidth=100Mbit@downstream"},
		{"bandwidth=12.5MB", Toxic{Kind: ToxicBandwidth, Direction: DirectionDownstream, BytesPerSecond: 12_500_000}, "bandwidth=100Mbit@downstream"},
		{"bandwidth=1B/s", Toxic{Kind: ToxicBandwidth, Direction: DirectionDownstream, BytesPerSecond: 1}, "bandwidth=8bit@downstream"},
		{"bandwidth=1KiB", Toxic{Kind: ToxicBandwidth, Direction: DirectionDownstream, BytesPerSecond: 1024}, "bandwidth=8192bit@downstream"},
		{"slicer=64,variation=16,delay=1ms", Toxic{Kind: ToxicSlicer, Direction: DirectionDownstream, AverageSize: 64, SizeVariation: 16, Delay: time.Millisecond},
			"slicer=64,variation=16,delay=1ms@downstream"},
		{"slicer=4294967295", Toxic{Kind: ToxicSlicer, Direction: DirectionDownstream, AverageSize: 4294967295}, "slicer=4294967295@downstream"},
		{"slicer=1K", Toxic{Kind: ToxicSlicer, Direction: DirectionDownstream, AverageSize: 1024}, "slicer=1024@downstream"},
		{"reset_peer=after:2s", Toxic{Kind: ToxicResetPeer, Direction: DirectionDownstream, After: 2 * time.Second}, "reset_peer=after:2s@downstream"},
		{"reset_peer=bytes:1000@upstream", Toxic{Kind: ToxicResetPeer, Direction: DirectionUpstream, AfterBytes: 1000}, "reset_peer=bytes:1000@upstream"},
		{"reset_peer", Toxic{Kind: ToxicResetPeer, Direction: DirectionDownstream}, "reset_peer@downstream"},
		{"timeout", Toxic{Kind: ToxicTimeout, Direction: DirectionDownstream}, "timeout@downstream"},
		{"timeout=5s", Toxic{Kind: ToxicTimeout, Direction: DirectionDownstream, CloseAfter: 5 * time.Second}, "timeout=5s@downstream"},
		{"limit_data=1000", Toxic{Kind: ToxicLimitData, Direction: DirectionDownstream, Bytes: 1000}, "limit_data=1000@downstream"},
		{"limit_data=1", Toxic{Kind: ToxicLimitData, Direction: DirectionDownstream, Bytes: 1}, "limit_data=1@downstream"},
		{"loss=0.1", Toxic{Kind: ToxicLoss, Direction: DirectionDownstream, Toxicity: 0.1, HasToxicity: true}, "loss,toxicity=0.1@downstream"},
		{"loss", Toxic{Kind: ToxicLoss, Direction: DirectionDownstream}, "loss@downstream"},
		{"loss,toxicity=25%", Toxic{Kind: ToxicLoss, Direction: DirectionDownstream, Toxicity: 0.25, HasToxicity: true}, "loss,toxicity=0.25@downstream"},
		{"duplicate=0.05@upstream", Toxic{Kind: ToxicDuplicate, Direction: DirectionUpstream, Toxicity: 0.05, HasToxicity: true}, "duplicate,toxicity=0.05@upstream"},
		{"reorder=depth:3", Toxic{Kind: ToxicReorder, Direction: DirectionDownstream, Depth: 3}, "reorder=depth:3@downstream"},
		{"reorder=depth:64,delay=10s", Toxic{Kind: ToxicReorder, Direction: DirectionDownstream, Depth: 64, Delay: 10 * time.Second}, "reorder=depth:64,delay=10s@downstream"},
		{"reorder", Toxic{Kind: ToxicReorder, Direction: DirectionDownstream}, "reorder@downstream"},
		{"latency=10ms,toxicity=0.5,name=slow", Toxic{Kind: ToxicLatency, Direction: DirectionDownstream, Latency: 10 * time.Millisecond, Toxicity: 0.5, HasToxicity: true, Name: "slow"},
			"latency=10ms,toxicity=0.5,name=slow@downstream"},
		{"toxicity=0,latency=10ms", Toxic{Kind: ToxicLatency, Direction: DirectionDownstream, Latency: 10 * time.Millisecond, HasToxicity: true}, "latency=10ms,toxicity=0@downstream"},
		{"latency=10ms,toxicity=1", Toxic{Kind: ToxicLatency, Direction: DirectionDownstream, Latency: 10 * time.Millisecond, Toxicity: 1, HasToxicity: true}, "latency=10ms,toxicity=1@downstream"},
		{" latency = 10ms , direction=upstream", Toxic{Kind: ToxicLatency, Direction: DirectionUpstream, Latency: 10 * time.Millisecond}, "latency=10ms@upstream"},
		// The default name is not written back; another is.
		{"timeout,name=timeout_downstream", Toxic{Kind: ToxicTimeout, Direction: DirectionDownstream, Name: "timeout_downstream"}, "timeout@downstream"},
		{"timeout,name=timeout_upstream", Toxic{Kind: ToxicTimeout, Direction: DirectionDownstream, Name: "timeout_upstream"}, "timeout,name=timeout_upstream@downstream"},
	} {
		got, err := ParseToxic(tc.spec)
		if err != nil {
			t.Errorf("ParseToxic(%q): %v", tc.spec, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseToxic(%q) = %+v, want %+v", tc.spec, got, tc.want)
		}
		if s := got.String(); s != tc.canon {
			t.Errorf("ParseToxic(%q).String() = %q, want %q", tc.spec, s, tc.canon)
		}
		back, err := ParseToxic(got.String())
		if err != nil || back.String() != got.String() {
			t.Errorf("ParseToxic(%q) = %+v, %v; want %+v back", got.String(), back, err, got)
		}
	}
}

// Every way a spec can be wrong: the message names the token, says what is allowed, and
// shows an example in the form it was written in.
func TestParseToxicErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spec string
		want []string // parts of the message
	}{
		{"", []string{"empty key", "such as latency=50ms,jitter=5ms"}},
		{"@upstream", []string{"empty key"}},
		{"latency=5ms,,jitter=1ms", []string{"empty key"}},
		{"jitter=5ms", []string{`no kind of toxic in "jitter=5ms"`, "latency, bandwidth, slicer, reset_peer, timeout, limit_data, loss, duplicate, reorder", "such as latency=50ms,jitter=5ms"}},
		{"latncy=5ms", []string{"no kind of toxic"}},
		{"latency=5ms,bandwidth=1M", []string{"latency and bandwidth are two toxics", "latency=50ms,jitter=5ms and bandwidth=100Mbit"}},
		{"latency=5ms,latency=6ms", []string{"latency given twice"}},
		{"latency=5ms,jitter=1ms,jitter=2ms", []string{"jitter given twice"}},
		{"latency", []string{"latency needs a value: a delay such as 50ms (at most 1m), such as latency=50ms,jitter=5ms"}},
		{"latency=", []string{"latency needs a value"}},
		{"latency=5x", []string{`latency=5x: want a duration`, "latency takes a delay such as 50ms", "such as latency=50ms,jitter=5ms"}},
		{"latency=-5ms", []string{"latency=-5ms: want a duration of 0 or more"}},
		{"latency=61s", []string{"latency=61s: more than 1m0s"}},
		{"latency=5ms,jitter=6ms", []string{"jitter=6ms is more than latency=5ms", "such as latency=50ms,jitter=5ms"}},
		{"latency=5ms,jitter", []string{"jitter needs a value, such as latency=50ms,jitter=5ms"}},
		{"latency=5ms,jitter=x", []string{"jitter=x: want a duration", "such as latency=50ms,jitter=5ms"}},
		{"latency=5ms,jiter=1ms", []string{`unknown key "jiter"; did you mean "jitter"?`, "latency takes jitter, toxicity, name, direction"}},
		{"latency=5ms,variation=1", []string{"variation applies to slicer, not to latency (latency takes jitter, toxicity, name, direction)"}},
		{"latency=5ms,delay=1ms", []string{"delay applies to slicer or reorder, not to latency"}},
		{"bandwidth", []string{"bandwidth needs a value: a rate such as 100Mbit, 12.5MB or 100M (no unit: bit/s), such as bandwidth=100Mbit"}},
		{"bandwidth=fast", []string{"bandwidth=fast: want a rate", `got "fast"`}},
		{"bandwidth=10Mbyte", []string{`unknown unit "Mbyte" in "10Mbyte"`}},
		{"bandwidth=4bit", []string{`"4bit" is less than 1 byte (8 bits) per second`}},
		{"bandwidth=0", []string{"less than 1 byte"}},
		{"bandwidth=1e30", []string{"unknown unit"}},
		{"bandwidth=99999999999999999999T", []string{"too large"}},
		{"slicer=0", []string{"slicer=0: a piece has at least 1 byte; slicer takes the mean piece size", "such as slicer=64,variation=16,delay=1ms"}},
		{"slicer=big", []string{"slicer=big: want a byte count"}},
		{"slicer=8G", []string{`"8G" is more than 4G`}},
		{"slicer=64,variation=64", []string{"variation=64 is not less than slicer=64", "such as slicer=64,variation=16,delay=1ms"}},
		{"slicer=64,variation=8G", []string{"variation=8G:", "more than 4G"}},
		{"slicer=64,delay=2s", []string{"delay=2s: at most 1s between pieces"}},
		{"reset_peer=2s", []string{"reset_peer=2s: no after: or bytes:; reset_peer takes after:DURATION or bytes:N", "such as reset_peer=after:2s"}},
		{"reset_peer=at:2s", []string{`reset_peer=at:2s: "at" is neither after nor bytes`}},
		{"reset_peer=after:soon", []string{"reset_peer=after:soon: want a duration"}},
		{"reset_peer=bytes:many", []string{"reset_peer=bytes:many: want a byte count"}},
		{"timeout=forever", []string{"timeout=forever: want a duration", "such as timeout=5s"}},
		{"limit_data", []string{"limit_data needs a value"}},
		{"limit_data=0", []string{"limit_data=0: at least 1 byte", "such as limit_data=1000"}},
		{"limit_data=lots", []string{"limit_data=lots: want a byte count"}},
		{"loss=2", []string{`loss=2: "2" is more than 1`, "such as loss=0.1"}},
		{"loss=x", []string{"loss=x: want a fraction"}},
		{"loss=0.1,toxicity=0.5", []string{"loss and toxicity both give the rate of loss; give one, such as loss=0.1"}},
		{"duplicate=0.1,toxicity=0.5", []string{"duplicate and toxicity both give the rate of duplicate"}},
		{"reorder=3", []string{"reorder=3: no depth:", "such as reorder=depth:3"}},
		{"reorder=depth:65", []string{`depth "65" is not a whole number from 1 to 64`}},
		{"reorder=depth:x", []string{`depth "x" is not a whole number`}},
		{"reorder,delay=11s", []string{"delay=11s: a datagram is held at most 10s, such as reorder=depth:3,delay=100ms"}},
		{"reorder,delay=x", []string{"delay=x: want a duration", "such as reorder=depth:3,delay=100ms"}},
		{"latency=5ms,toxicity=1.5", []string{`toxicity=1.5: "1.5" is more than 1`, "such as latency=50ms,toxicity=0.5"}},
		{"latency=5ms,toxicity", []string{"toxicity needs a value, such as latency=50ms,toxicity=0.5"}},
		{"latency=5ms@sideways", []string{`direction=sideways: want upstream or downstream, got "sideways"`, "such as latency=50ms,direction=upstream"}},
		{"latency=5ms@up@down", []string{`want upstream or downstream, got "up@down"`}},
		{"latency=5ms,direction=up", []string{`want upstream or downstream, got "up"`}},
		{"latency=5ms,name=a=b", []string{"name=a=b: want a name without ',', '@' or '='", "such as latency=50ms,name=slow_replies"}},
		{"timeout,bogus=1", []string{`unknown key "bogus" (timeout takes toxicity, name, direction), such as timeout=5s`}},
	} {
		_, err := ParseToxic(tc.spec)
		if err == nil {
			t.Errorf("ParseToxic(%q) accepted it", tc.spec)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseToxic(%q) = %q, want it to say %q", tc.spec, err, w)
			}
		}
	}
}

// A scenario's toxic errors show examples as YAML maps.
func TestToxicOfYAMLExamples(t *testing.T) {
	t.Parallel()
	_, err := ToxicOf([]ToxicPair{{"latency", "5ms"}, {"jitter", "6ms"}}, FormYAML)
	if err == nil || !strings.Contains(err.Error(), "such as {latency: 50ms, jitter: 5ms}") {
		t.Errorf("ToxicOf = %v, want the example as a YAML map", err)
	}
}

func TestParseBandwidth(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]uint64{
		"100M": 12_500_000, "100Mbit": 12_500_000, "100Mbit/s": 12_500_000, "100Mbps": 12_500_000, "100Mb": 12_500_000,
		"12.5MB": 12_500_000, "12.5MB/s": 12_500_000, "12.5MBps": 12_500_000, "1k": 125, "1K": 125, "1kB": 1000,
		"1G": 125_000_000, "1T": 125_000_000_000, "8": 1, "15": 1, "16bits/s": 2, "1MiB": 1 << 20, "1Gi": 1 << 27, "2Ti": 1 << 38, "1Ki": 128,
	} {
		got, err := ParseBandwidth(in)
		if err != nil || got != want {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[uint64]string{1: "8bit", 125: "1kbit", 12_500_000: "100Mbit", 125_000_000: "1Gbit", 125_000_000_000: "1Tbit",
		1250_000_000_000: "10Tbit", 3: "24bit", 1 << 20: "8388608bit", 1<<64 - 1: "18446744073709551615B", 1 << 61: "2305843009213693952B", 1<<61 - 1: "18446744073709551608bit"} {
		if got := FormatBandwidth(in); got != want {
			t.Errorf("FormatBandwidth(%d) = %q, want %q", in, got, want)
		}
	}
}

// Resolved.Toxics reads the toxics in file order up to the first gap; a value that ${...}
// made wrong is an error at the toxic's place.
func TestResolvedToxics(t *testing.T) {
	t.Parallel()
	r := Resolved{Path: "f.yaml", Args: Args{
		"toxics.0": {Pos: Pos{Line: 3, Col: 5}}, "toxics.0.latency": {Raw: "5ms"}, "toxics.0.name": {Raw: "a"},
		"toxics.1": {Pos: Pos{Line: 4, Col: 5}}, "toxics.1.timeout": {},
		"toxics.3": {Pos: Pos{Line: 5, Col: 5}}, "toxics.3.loss": {},
	}}
	ts, err := r.Toxics()
	if err != nil || len(ts) != 2 || ts[0].String() != "latency=5ms,name=a@downstream" || ts[1].String() != "timeout@downstream" {
		t.Fatalf("Toxics() = %v, %v", ts, err)
	}
	if ts, err := (Resolved{Args: Args{}}).Toxics(); err != nil || ts != nil {
		t.Errorf("no toxics: %v, %v", ts, err)
	}
	r.Args["toxics.1.jitter"] = Scalar{Raw: "1ms"}
	_, err = r.Toxics()
	if err == nil || err.Error() != "f.yaml:4:5: toxics.1: jitter applies to latency, not to timeout (timeout takes toxicity, name, direction)" {
		t.Errorf("err = %v", err)
	}
}
