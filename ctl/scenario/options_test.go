package scenario

import (
	"slices"
	"testing"
)

// Resolved.Options gives the options in contract order; Indexed the N-keyed values in order,
// up to the first gap.
func TestResolvedOptionsAndGroups(t *testing.T) {
	r := Resolved{Args: Args{
		"options.ttl": {Raw: "5"}, "options.no_delay": {Raw: "true"}, "options.multicast_loop": {Raw: "false"},
		"join.0": {Raw: "239.1.1.1"}, "join.1": {Raw: "239.1.1.2%eth0"}, "join.3": {Raw: "after a gap"},
		"network": {Raw: "tcp"},
	}}
	if got, want := r.Options(), []string{"no_delay=true", "ttl=5", "multicast_loop=false"}; !slices.Equal(got, want) {
		t.Errorf("Options() = %v, want %v", got, want)
	}
	if got, want := r.Indexed(JoinPrefix), []string{"239.1.1.1", "239.1.1.2%eth0"}; !slices.Equal(got, want) {
		t.Errorf("Indexed(join.) = %v, want %v", got, want)
	}
	if got := r.Indexed(LeavePrefix); got != nil {
		t.Errorf("Indexed(leave.) = %v, want none", got)
	}
}
