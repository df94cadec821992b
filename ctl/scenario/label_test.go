package scenario

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// label, looking up each given argument once, says what joining the action and the values of
// labelArgs in order says, for any mix of arguments.
func TestLabelMatchesListOrder(t *testing.T) {
	keys := append([]string{"data", "timeout", "count"}, labelArgs[:]...)
	values := []string{"", "tcp", "127.0.0.1:80", "${lis.local_address}"}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		s := &Step{Action: "dial", Args: Args{}}
		for range rng.IntN(len(keys) + 1) {
			s.Args[keys[rng.IntN(len(keys))]] = Scalar{Raw: values[rng.IntN(len(values))]}
		}
		parts := []string{s.Action}
		for _, k := range labelArgs {
			if v, ok := s.Args[k]; ok {
				parts = append(parts, v.Raw)
			}
		}
		if got, want := s.Label(), strings.Join(parts, " "); got != want {
			t.Fatalf("Label(%v) = %q, want %q", s.Args, got, want)
		}
	}
}
