package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestAlternateOrder: after the warm rounds each side runs n times, which goes first swaps
// every round, and a side that fails is not run again while the other goes on.
func TestAlternateOrder(t *testing.T) {
	var order strings.Builder
	side := func(name string, failAt int) func(context.Context) error {
		calls := 0
		return func(context.Context) error {
			calls++
			order.WriteString(name)
			if calls == failAt {
				return errors.New(name + " failed")
			}
			return nil
		}
	}
	r := alternate(t.Context(), 3, 1, side("f", 0), side("b", 0))
	if got := order.String(); got != "fbbffbbf" {
		t.Errorf("order %q, want fbbffbbf (warm round, then swapped every round)", got)
	}
	if r.err != nil || r.baseErr != nil || r.value <= 0 || r.base <= 0 {
		t.Errorf("result %+v", r)
	}
	order.Reset()
	r = alternate(t.Context(), 3, 0, side("f", 2), side("b", 0))
	if got := order.String(); got != "fbbfb" {
		t.Errorf("order %q with fig failing at its 2nd call, want fbbfb", got)
	}
	if r.err == nil || r.baseErr != nil {
		t.Errorf("errors %v / %v, want the fig's only", r.err, r.baseErr)
	}
}

// TestAlternatePairedRatio: the ratio is the median of the rounds' own ratios, not the ratio
// of the medians: rounds of 10/5, 20/40 and 30/15 give 2 (the medians' ratio would be 20/15).
func TestAlternatePairedRatio(t *testing.T) {
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	side := func(durations ...time.Duration) func(context.Context) error {
		i := 0
		return func(context.Context) error {
			now = now.Add(durations[i])
			i++
			return nil
		}
	}
	r := alternateOn(t.Context(), clock, 3, 0, side(10, 20, 30), side(5, 40, 15))
	if r.ratio != 2 || r.value != 20e-9 || r.base != 15e-9 {
		t.Errorf("ratio %v, medians %v and %v; want 2, 20ns and 15ns", r.ratio, r.value, r.base)
	}
	// A side that fails leaves its rounds out of the ratio: only the rounds that timed both
	// count (zeros or infinities would move the median).
	failing := func(at int, durations ...time.Duration) func(context.Context) error {
		next := side(durations...)
		calls := 0
		return func(ctx context.Context) error {
			if calls++; calls == at {
				return errors.New("failed")
			}
			return next(ctx)
		}
	}
	if r := alternateOn(t.Context(), clock, 5, 0, failing(4, 10, 20, 30), side(5, 40, 15, 1, 1)); r.ratio != 2 {
		t.Errorf("figure failing at its 4th call: ratio %v, want 2 (of the first three rounds)", r.ratio)
	}
	if r := alternateOn(t.Context(), clock, 5, 0, side(5, 5, 30, 1, 1), failing(4, 10, 10, 15)); r.ratio != 0.5 {
		t.Errorf("baseline failing at its 4th call: ratio %v, want 0.5 (of the first three rounds)", r.ratio)
	}
}
