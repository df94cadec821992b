package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestAlternateOrder: after the warm rounds each side runs n times, each time twice in a row
// (the first untimed), which goes first swaps every round, and a side that fails is not run
// again while the other goes on.
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
	if got := order.String(); got != "ffbbbbffffbbbbff" {
		t.Errorf("order %q, want ffbbbbffffbbbbff (warm round, then swapped every round, each side twice)", got)
	}
	if r.err != nil || r.baseErr != nil || r.value <= 0 || r.base <= 0 {
		t.Errorf("result %+v", r)
	}
	order.Reset()
	r = alternate(t.Context(), 3, 0, side("f", 3), side("b", 0))
	if got := order.String(); got != "ffbbbbfbb" {
		t.Errorf("order %q with fig failing at its 3rd call, want ffbbbbfbb", got)
	}
	if r.err == nil || r.baseErr != nil {
		t.Errorf("errors %v / %v, want the fig's only", r.err, r.baseErr)
	}
}

// TestAlternateLeadIn: a call that leaves work behind (base: 10, and 6 more for whatever call
// comes next) charges it to its own side only: the timed fig always follows a fig, the timed
// base a base. Without the lead-in, the rounds whose fig followed a base read 26/16 and the
// others 20/10, and neither is the ratio of what each costs in a loop of its own (20/16).
func TestAlternateLeadIn(t *testing.T) {
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	debt := time.Duration(0)
	call := func(cost, leaves time.Duration) func(context.Context) error {
		return func(context.Context) error {
			now = now.Add(cost + debt)
			debt = leaves
			return nil
		}
	}
	r := alternateOn(t.Context(), clock, 5, 1, call(20, 0), call(10, 6))
	if r.ratio != 1.25 || r.value != 20e-9 || r.base != 16e-9 {
		t.Errorf("ratio %v, medians %v and %v; want 1.25, 20ns and 16ns", r.ratio, r.value, r.base)
	}
}

// TestAlternatePairedRatio: the ratio is the median of the rounds' own ratios, not the ratio
// of the medians: rounds of 10/5, 20/40 and 30/15 give 2 (the medians' ratio would be 20/15).
// Each duration is given twice: the untimed lead-in call, then the timed one.
func TestAlternatePairedRatio(t *testing.T) {
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	side := func(durations ...time.Duration) func(context.Context) error {
		i := 0
		return func(context.Context) error {
			now = now.Add(durations[i/2])
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
	if r := alternateOn(t.Context(), clock, 5, 0, failing(8, 10, 20, 30, 1), side(5, 40, 15, 1, 1)); r.ratio != 2 {
		t.Errorf("figure failing at its 8th call: ratio %v, want 2 (of the first three rounds)", r.ratio)
	}
	if r := alternateOn(t.Context(), clock, 5, 0, side(5, 5, 30, 1, 1), failing(8, 10, 10, 15, 1)); r.ratio != 0.5 {
		t.Errorf("baseline failing at its 8th call: ratio %v, want 0.5 (of the first three rounds)", r.ratio)
	}
}
