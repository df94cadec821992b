package scenario

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseComparison(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key, raw string
		op       string
		value    float64
		err      string
	}{
		{key: "rtt_p99", raw: "<= 2ms", op: "<=", value: 2e6},
		{key: "rtt_p99", raw: "<=2ms", op: "<=", value: 2e6},
		{key: "rtt_p99", raw: " < 500us ", op: "<", value: 500e3},
		{key: "rtt_p99", raw: "< 500µs", op: "<", value: 500e3},
		{key: "rtt_p50", raw: "1m30s", op: "==", value: 90e9},
		{key: "rtt", raw: "> 0", op: ">", value: 0},
		{key: "rtt_p99", raw: "<= 2xs", err: `unknown unit "xs" in "2xs": want a duration such as 2ms, 500us or 1s`},
		{key: "rtt_p99", raw: "<= 2", err: `"2" has no unit: want a duration such as 2ms, 500us or 1s`},
		{key: "rtt_p99", raw: "<=", err: `"<=" has no value; write a comparison such as rtt_p99: "<= 2ms"`},
		{key: "rtt_p99", raw: "", err: `empty; write a comparison such as rtt_p99: "<= 2ms"`},
		{key: "rtt_p99", raw: "=< 2ms", err: `"=< 2ms": unknown operator; use <=, <, >=, > or == (a bare value means ==), such as rtt_p99: "<= 2ms"`},
		{key: "rtt_p99", raw: "!= 2ms", err: `unknown operator`},
		{key: "loss", raw: "<= 0.01", op: "<=", value: 0.01},
		{key: "loss", raw: "<= 1%", op: "<=", value: 0.01},
		{key: "loss", raw: "0", op: "==", value: 0},
		{key: "loss", raw: "1.5", err: `"1.5" is more than 1`},
		{key: "loss", raw: "1 ppm", err: `unknown unit "ppm" in "1 ppm"`},
		{key: "bits_per_second", raw: ">= 1G", op: ">=", value: 1e9},
		{key: "bits_per_second", raw: ">= 500M", op: ">=", value: 500e6},
		{key: "bits_per_second", raw: "> 10k", op: ">", value: 10e3},
		{key: "bits_per_second", raw: "> 9.4Gbit/s", op: ">", value: 9.4e9},
		{key: "bits_per_second", raw: "> 2.5 Mbps", op: ">", value: 2.5e6},
		{key: "bits_per_second", raw: "> 1000", op: ">", value: 1000},
		{key: "bits_per_second", raw: ">= 1GB", err: `unknown unit "GB" in "1GB": want bits per second such as 1G, 500M or 10k (k = 1000)`},
		{key: "bytes", raw: ">= 1G", op: ">=", value: 1 << 30},
		{key: "bytes", raw: ">= 64MiB", op: ">=", value: 64 << 20},
		{key: "bytes", raw: "512K", op: "==", value: 512 << 10},
		{key: "bytes", raw: "1.5K", op: "==", value: 1536},
		{key: "bytes", raw: "1.5", err: `"1.5" is not a whole number of bytes`},
		{key: "received", raw: ">= 95", op: ">=", value: 95},
		{key: "errors", raw: "0", op: "==", value: 0},
		{key: "retransmits", raw: "< 1k", err: `want a whole number such as 1024, got "1k"`},
	}
	for _, tt := range tests {
		c, err := parseComparison(tt.key, tt.raw)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s %q: error %v, want %q", tt.key, tt.raw, err, tt.err)
			}
		case err != nil:
			t.Errorf("%s %q: %v", tt.key, tt.raw, err)
		case c.op != tt.op || c.value != tt.value:
			t.Errorf("%s %q = %s %v, want %s %v", tt.key, tt.raw, c.op, c.value, tt.op, tt.value)
		}
	}
}

func TestCheckFigures(t *testing.T) {
	t.Parallel()
	probe := Outcome{Figures: map[string]float64{
		"rtt_min": 10e3, "rtt_p50": 41e3, "rtt_p90": 60e3, "rtt_p99": float64(3200 * time.Microsecond), "rtt_max": 5e6, "rtt_mean": 50e3,
		"loss": 0.01, "received": 99, "errors": 1,
	}, Duration: time.Second}
	tput := Outcome{Figures: map[string]float64{"bits_per_second": 9.41e9, "bytes": 1 << 30, "loss": 0, "retransmits": 3, "rtt": 40e3, "errors": 0}}
	tests := []struct {
		name   string
		expect []string
		out    Outcome
		want   []string
	}{
		{name: "rtt_p99 over", expect: []string{"rtt_p99", "<= 2ms"}, out: probe, want: []string{"rtt_p99 3.2ms, want <= 2ms"}},
		{name: "rtt_p99 under", expect: []string{"rtt_p99", "<= 5ms"}, out: probe},
		{name: "boundary <= equal", expect: []string{"rtt_p99", "<= 3.2ms"}, out: probe},
		{name: "boundary >= equal", expect: []string{"rtt_p99", ">= 3200us"}, out: probe},
		{name: "boundary < equal", expect: []string{"rtt_p99", "< 3.2ms"}, out: probe, want: []string{"rtt_p99 3.2ms, want < 3.2ms"}},
		{name: "boundary > equal", expect: []string{"rtt_p50", "> 41us"}, out: probe, want: []string{"rtt_p50 41µs, want > 41us"}},
		{name: "bare value is ==", expect: []string{"received", "99"}, out: probe},
		{name: "bare value differs", expect: []string{"received", "100"}, out: probe, want: []string{"received 99, want == 100"}},
		{name: "loss percent equal", expect: []string{"loss", "<= 1%"}, out: probe},
		{name: "loss fraction over", expect: []string{"loss", "< 0.01"}, out: probe, want: []string{"loss 0.01, want < 0.01"}},
		{name: "errors", expect: []string{"errors", "== 0"}, out: probe, want: []string{"errors 1, want == 0"}},
		{name: "several in key order", expect: []string{"within", "1ms", "errors", "0", "rtt_min", "> 1ms"}, out: probe, want: []string{
			"within: took 1s, want <= 1ms", "rtt_min 10µs, want > 1ms", "errors 1, want == 0"}},
		{name: "rate ok", expect: []string{"bits_per_second", ">= 1G"}, out: tput},
		{name: "rate low", expect: []string{"bits_per_second", ">= 10G"}, out: tput, want: []string{"bits_per_second 9.41 Gbit/s, want >= 10G"}},
		{name: "bytes compare", expect: []string{"bytes", ">= 1G"}, out: tput},
		{name: "bytes below", expect: []string{"bytes", "> 1G"}, out: tput, want: []string{"bytes 1073741824, want > 1G"}},
		{name: "rtt", expect: []string{"rtt", "<= 10us"}, out: tput, want: []string{"rtt 40µs, want <= 10us"}},
		{name: "not measured", expect: []string{"rtt_p99", "<= 1ms"}, out: tput, want: []string{"rtt_p99: not measured by this step, want <= 1ms"}},
		{name: "bad value at run time", expect: []string{"loss", "<= lots"}, out: tput, want: []string{`r.yaml:7:10: loss: want a fraction from 0 to 1 such as 0.01, or a percentage such as 1%, got "lots"`}},
		{name: "failed step", expect: []string{"rtt_p99", "<= 1ms"}, out: Outcome{Reason: "CONNECTION_REFUSED", Err: "refused"}, want: []string{"failed: CONNECTION_REFUSED: refused"}},
		{name: "error expected", expect: []string{"error", "CONNECTION_REFUSED"}, out: Outcome{Reason: "CONNECTION_REFUSED", Figures: map[string]float64{"received": 0}}},
		{name: "bytes without figures is exact", expect: []string{"bytes", "13"}, out: Outcome{Bytes: 13}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := resolved(tt.expect...)
			if got := Check(&r, tt.out); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Check = %q\nwant    %q", got, tt.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		got, want string
	}{
		{FormatBitRate(9.41e9), "9.41 Gbit/s"},
		{FormatBitRate(9.414e9), "9.41 Gbit/s"},
		{FormatBitRate(850e6), "850 Mbit/s"},
		{FormatBitRate(12e3), "12.0 kbit/s"},
		{FormatBitRate(999), "999 bit/s"},
		{FormatBitRate(9.9999e6), "10.0 Mbit/s"},
		{FormatBitRate(99.99e6), "100 Mbit/s"},
		{FormatBitRate(0), "0 bit/s"},
		{FormatBytes(512), "512 B"},
		{FormatBytes(64 << 20), "64.0 MiB"},
		{FormatBytes(1 << 30), "1.00 GiB"},
		{FormatFigure("rtt_p50", 41_234), "41µs"},
		{FormatFigure("rtt_p99", 3_245_678), "3.246ms"},
		{FormatFigure("loss", 0.0123456), "0.01235"},
		{FormatFigure("received", 100), "100"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseBytesAndRate(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]uint64{"1G": 1 << 30, "64M": 64 << 20, "512K": 512 << 10, "512k": 512 << 10, "1500": 1500, "2GiB": 2 << 30, "1T": 1 << 40} {
		if got, err := ParseBytes(s); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "G", "-1", "1Q", "1iB", "1e3"} {
		if _, err := ParseBytes(s); err == nil {
			t.Errorf("ParseBytes(%q) accepted", s)
		}
	}
	for s, want := range map[string]float64{"1G": 1e9, "500M": 500e6, "10k": 1e4, "10K": 1e4, "1.5Gbit/s": 1.5e9, "100": 100, "2 Mbps": 2e6} {
		if got, err := ParseBitRate(s); err != nil || got != want {
			t.Errorf("ParseBitRate(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "fast", "1GB", "1Gi"} {
		if _, err := ParseBitRate(s); err == nil {
			t.Errorf("ParseBitRate(%q) accepted", s)
		}
	}
}
