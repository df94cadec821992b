package engine

import (
	"testing"
	"time"
)

func TestProbeStats(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // reversed: Stats sorts
	}
	for _, tc := range []struct {
		in                      []time.Duration
		min, p50, p90, p99, max time.Duration // in ms
		mean                    time.Duration
	}{
		{ms(hundred...), 1, 50, 90, 99, 100, 50500 * time.Microsecond},
		{ms(7), 7, 7, 7, 7, 7, 7 * time.Millisecond},
		{ms(3, 1, 2), 1, 2, 3, 3, 3, 2 * time.Millisecond},
		{ms(4, 1, 3, 2), 1, 2, 4, 4, 4, 2500 * time.Microsecond},
	} {
		st := Stats(tc.in)
		want := LatencyStats{Samples: len(tc.in), Min: tc.min * time.Millisecond, P50: tc.p50 * time.Millisecond, P90: tc.p90 * time.Millisecond,
			P99: tc.p99 * time.Millisecond, Max: tc.max * time.Millisecond, Mean: tc.mean}
		if st != want {
			t.Errorf("Stats(%v) = %+v, want %+v", tc.in, st, want)
		}
	}
	if st := Stats(nil); st != (LatencyStats{}) {
		t.Errorf("Stats(nil) = %+v, want zero", st)
	}
}
