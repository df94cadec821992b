package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
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
