package scenario

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Measurement steps (serve, probe, throughput) and the comparisons of their expectations.
//
// Units. Byte sizes (throughput bytes and size, serve chunk_size, the throughput bytes
// expectation) are whole numbers with an optional binary suffix: K, M, G, T (1K = 1024; KB,
// KiB and the like mean the same). Rates (throughput rate, the bits_per_second expectation)
// are bits per second with an optional SI suffix: k, M, G, T (1k = 1000), optionally followed
// by bit/s or bps. Durations are Go durations (2ms, 500us, 1s). A fraction (loss) is a number
// from 0 to 1 or a percentage (1%).
//
// A comparison is an operator and a value: "<= 2ms", ">= 1G", "< 0.01", "== 100"; a bare
// value means ==. The value is compared with the figure the step measured, both in the
// figure's unit; equal values satisfy <= and >=.

// figureKind is how a measured figure is written and shown.
type figureKind int

const (
	kindDuration figureKind = iota // nanoseconds
	kindFraction                   // 0..1
	kindCount                      // a whole number
	kindBytes                      // bytes, binary suffixes
	kindRate                       // bits per second, SI suffixes
)

// figureKinds are the expect keys that compare a measured figure, with their kind.
var figureKinds = map[string]figureKind{
	"rtt_min": kindDuration, "rtt_p50": kindDuration, "rtt_p90": kindDuration, "rtt_p99": kindDuration,
	"rtt_max": kindDuration, "rtt_mean": kindDuration, "rtt": kindDuration,
	"loss":     kindFraction,
	"received": kindCount, "errors": kindCount, "retransmits": kindCount,
	"bytes":           kindBytes,
	"bits_per_second": kindRate,
}

// ProbeFigures and ThroughputFigures are the figures (Outcome.Figures keys, and expect keys)
// of a probe and of a throughput step, in the order reports show them.
var (
	ProbeFigures      = []string{"rtt_min", "rtt_p50", "rtt_p90", "rtt_p99", "rtt_max", "rtt_mean", "loss", "received", "errors"}
	ThroughputFigures = []string{"bits_per_second", "bytes", "loss", "retransmits", "rtt", "errors"}
)

// IsFigure reports whether key names a measured figure, and whether it is a duration (whose
// Outcome.Figures value is in nanoseconds).
func IsFigure(key string) (figure, duration bool) {
	k, ok := figureKinds[key]
	return ok, ok && k == kindDuration
}

// comparison is a parsed expectation on a figure.
type comparison struct {
	op    string  // <=, <, >=, >, ==
	value float64 // in the figure's unit
	text  string  // the value as written, for messages
}

var operators = []string{"<=", ">=", "==", "<", ">"}

// parseComparison parses "OP VALUE" (or a bare VALUE, meaning ==) for figure key.
func parseComparison(key, raw string) (comparison, error) {
	s := strings.TrimSpace(raw)
	op := "=="
	for _, o := range operators {
		if rest, ok := strings.CutPrefix(s, o); ok {
			op, s = o, strings.TrimSpace(rest)
			break
		}
	}
	example := exampleOf(key)
	if s == "" {
		if raw == "" || strings.TrimSpace(raw) == "" {
			return comparison{}, fmt.Errorf("empty; write a comparison such as %s: %q", key, example)
		}
		return comparison{}, fmt.Errorf("%q has no value; write a comparison such as %s: %q", raw, key, example)
	}
	if strings.HasPrefix(s, "=") || strings.HasPrefix(s, "<") || strings.HasPrefix(s, ">") || strings.HasPrefix(s, "!") {
		return comparison{}, fmt.Errorf("%q: unknown operator; use <=, <, >=, > or == (a bare value means ==), such as %s: %q", raw, key, example)
	}
	v, err := parseFigure(key, s)
	if err != nil {
		return comparison{}, err
	}
	return comparison{op: op, value: v, text: s}, nil
}

// exampleOf is an example comparison for key.
func exampleOf(key string) string {
	switch figureKinds[key] {
	case kindDuration:
		return "<= 2ms"
	case kindFraction:
		return "<= 0.01"
	case kindBytes:
		return ">= 1G"
	case kindRate:
		return ">= 1G"
	}
	if key == "received" {
		return ">= 95"
	}
	return "== 0"
}

// parseFigure parses a value of figure key in its unit.
func parseFigure(key, s string) (float64, error) {
	switch figureKinds[key] {
	case kindDuration:
		d, err := parseMeasuredDuration(s)
		return float64(d), err
	case kindFraction:
		return parseFraction(s)
	case kindBytes:
		n, err := ParseBytes(s)
		return float64(n), err
	case kindRate:
		return ParseBitRate(s)
	}
	n, err := parseUint(s)
	return float64(n), err
}

// splitNumber splits s into its leading decimal number and the rest (the unit).
func splitNumber(s string) (float64, string, bool) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	if i == 0 {
		return 0, s, false
	}
	v, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0, s, false
	}
	return v, strings.TrimSpace(s[i:]), true
}

func parseMeasuredDuration(s string) (time.Duration, error) {
	const want = "want a duration such as 2ms, 500us or 1s"
	if _, unit, ok := splitNumber(s); ok && unit != "" && !slices.Contains([]string{"ns", "us", "µs", "μs", "ms", "s", "m", "h"}, unit) {
		if d, err := time.ParseDuration(s); err == nil && d >= 0 { // 1m30s
			return d, nil
		}
		return 0, fmt.Errorf("unknown unit %q in %q: %s", unit, s, want)
	} else if ok && unit == "" && s != "0" {
		return 0, fmt.Errorf("%q has no unit: %s", s, want)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s, got %q", want, s)
	}
	return d, nil
}

func parseFraction(s string) (float64, error) {
	const want = "want a fraction from 0 to 1 such as 0.01, or a percentage such as 1%"
	v, unit, ok := splitNumber(s)
	switch {
	case !ok:
		return 0, fmt.Errorf("%s, got %q", want, s)
	case unit == "%":
		v /= 100
	case unit != "":
		return 0, fmt.Errorf("unknown unit %q in %q: %s", unit, s, want)
	}
	if v > 1 {
		return 0, fmt.Errorf("%q is more than 1: %s", s, want)
	}
	return v, nil
}

// ParseBytes parses a byte size: a whole number with an optional binary suffix K, M, G or T
// (1K = 1024; KB, KiB, MB, MiB, ... mean the same): 1G, 64M, 512K, 1500.
func ParseBytes(s string) (uint64, error) {
	const want = "want a byte count such as 1500, 512K, 64M or 1G (K = 1024)"
	v, unit, ok := splitNumber(strings.TrimSpace(s))
	if !ok {
		return 0, fmt.Errorf("%s, got %q", want, s)
	}
	mult := 1.0
	u := strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "i")
	switch u {
	case "":
		if unit == "iB" {
			return 0, fmt.Errorf("unknown unit %q in %q: %s", unit, s, want)
		}
	case "K", "k":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	case "T":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("unknown unit %q in %q: %s", unit, s, want)
	}
	n := v * mult
	if n >= math.MaxUint64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if n != math.Trunc(n) {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	return uint64(n), nil
}

// ParseBitRate parses a rate in bits per second: a number with an optional SI suffix k, M,
// G or T (1k = 1000), optionally followed by bit/s or bps: 1G, 500M, 10k, 9.4Gbit/s.
func ParseBitRate(s string) (float64, error) {
	const want = "want bits per second such as 1G, 500M or 10k (k = 1000)"
	v, unit, ok := splitNumber(strings.TrimSpace(s))
	if !ok {
		return 0, fmt.Errorf("%s, got %q", want, s)
	}
	u := unit
	for _, suffix := range []string{"bit/s", "bits/s", "bps", "b/s"} {
		if x, ok := strings.CutSuffix(unit, suffix); ok {
			u = strings.TrimSpace(x)
			break
		}
	}
	mult := 1.0
	switch u {
	case "":
	case "k", "K":
		mult = 1e3
	case "M":
		mult = 1e6
	case "G":
		mult = 1e9
	case "T":
		mult = 1e12
	default:
		return 0, fmt.Errorf("unknown unit %q in %q: %s", unit, s, want)
	}
	return v * mult, nil
}

// FormatBitRate shows bits per second with an SI prefix and three significant digits:
// "9.41 Gbit/s", "850 Mbit/s", "12.0 kbit/s".
func FormatBitRate(bps float64) string {
	units := []string{"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"}
	i := 0
	for i < len(units)-1 && math.Abs(bps) >= 1000 {
		bps /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", bps, units[0])
	}
	return sig3(bps) + " " + units[i]
}

// FormatBytes shows a byte count with a binary prefix: "512 B", "64.0 MiB", "1.00 GiB".
func FormatBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, i := float64(n), 0
	for i < len(units)-1 && v >= 1024 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return sig3(v) + " " + units[i]
}

// sig3 shows v (1 <= v < 1000) with three significant digits.
func sig3(v float64) string {
	for _, f := range []string{"%.2f", "%.1f"} {
		if s := fmt.Sprintf(f, v); len(s) <= 4 { // 9.41, 85.0 (9.999 rounds to 10.00: one digit less)
			return s
		}
	}
	return fmt.Sprintf("%.0f", v)
}

// FormatFigure shows a measured figure of key as reports do: durations rounded to the
// microsecond (3.246ms, 41µs; 1.5s above a second), rates as bit/s with a prefix, loss as a fraction, counts whole.
func FormatFigure(key string, v float64) string {
	switch figureKinds[key] {
	case kindDuration:
		d := time.Duration(v)
		if d >= time.Second {
			return d.Round(time.Millisecond).String()
		}
		return d.Round(time.Microsecond).String()
	case kindRate:
		return FormatBitRate(v)
	case kindFraction:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// holds reports whether measured v satisfies c.
func (c comparison) holds(v float64) bool {
	switch c.op {
	case "<=":
		return v <= c.value
	case "<":
		return v < c.value
	case ">=":
		return v >= c.value
	case ">":
		return v > c.value
	}
	return v == c.value
}

// checkFigure compares figure key of o with the comparison written raw; "" means it holds.
func checkFigure(e Resolved, key string, o Outcome) string {
	c, err := parseComparison(key, e.String(key))
	if err != nil {
		return e.bad(key, "%v", err).Error()
	}
	v, ok := o.Figures[key]
	if !ok {
		return fmt.Sprintf("%s: not measured by this step, want %s %s", key, c.op, c.text)
	}
	if c.holds(v) {
		return ""
	}
	return fmt.Sprintf("%s %s, want %s %s", key, FormatFigure(key, v), c.op, c.text)
}

// measureLiteral checks a literal argument of a measurement action where it differs from the
// other actions'; ok is false when key is not such an argument.
func measureLiteral(action, key, raw string) (ok bool, err error) {
	if spec, _ := Action(action); !spec.Measure {
		return false, nil
	}
	oneOf := func(xs ...string) error {
		if !slices.Contains(xs, raw) {
			return fmt.Errorf("%s takes %s %s; got %q", action, key, orList(xs), raw)
		}
		return nil
	}
	switch key {
	case "behaviour":
		return true, oneOf("echo", "discard", "source", "proxy")
	case "mode":
		return true, oneOf("connect", "echo", "tls")
	case "direction":
		return true, oneOf("send", "receive")
	case "bytes", "size", "chunk_size":
		_, err := ParseBytes(raw)
		return true, err
	case "rate":
		_, err := ParseBitRate(raw)
		return true, err
	case "count", "warmup", "streams", "max_connections":
		_, err := parseUint(raw)
		return true, err
	case "interval", "upstream_timeout":
		_, err := parseDuration(raw)
		return true, err
	}
	return false, nil
}

// Bytes returns the value of key as a byte size such as 64K or 1G (0 when absent).
func (r Resolved) Bytes(key string) (uint64, error) {
	v, ok := r.Args[key]
	if !ok {
		return 0, nil
	}
	n, err := ParseBytes(v.Raw)
	if err != nil {
		return 0, r.bad(key, "%v", err)
	}
	return n, nil
}

// BitRate returns the value of key as bits per second such as 500M (0 when absent).
func (r Resolved) BitRate(key string) (float64, error) {
	v, ok := r.Args[key]
	if !ok {
		return 0, nil
	}
	n, err := ParseBitRate(v.Raw)
	if err != nil {
		return 0, r.bad(key, "%v", err)
	}
	return n, nil
}

// HasFigures reports whether expect compares any measured figure (rtt_p99, loss, ...).
func HasFigures(expect Args) bool {
	for k := range expect {
		if _, ok := figureKinds[k]; ok {
			return true
		}
	}
	return false
}
