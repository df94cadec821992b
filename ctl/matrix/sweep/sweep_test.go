package sweep

import (
	"testing"
	"time"

	"github.com/sockagent/sockagent/ctl/matrix/spec"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

func TestSweepDeadline(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pr      spec.Probe
		targets []string
		want    time.Duration
	}{
		// Defaults: 1 round of (2 x 1s + 100ms), 2 hosts at 100/s, 5s.
		{spec.Probe{}, []string{"10.0.0.1:1", "10.0.0.1:2", "10.0.0.2:1"}, 2100*time.Millisecond + 20*time.Millisecond + 5*time.Second},
		// 3 targets at concurrency 2: 2 rounds of (3 x 200ms + 2 x 10ms); 3 hosts at 1000/s.
		{spec.Probe{Concurrency: 2, Timeout: 200 * time.Millisecond, Attempts: 3, Spacing: 10 * time.Millisecond, Pace: 1000}, []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"}, 2*620*time.Millisecond + 3*time.Millisecond + 5*time.Second},
	}
	for _, c := range cases {
		r := sweepRequest(c.targets)
		if got := Deadline(r, c.pr); got != c.want {
			t.Errorf("%+v %v: %s, want %s", c.pr, c.targets, got, c.want)
		}
	}
}

func sweepRequest(addrs []string) *sockagentv1.SweepRequest {
	r := &sockagentv1.SweepRequest{}
	for _, a := range addrs {
		r.Targets = append(r.Targets, &sockagentv1.SweepTarget{Network: "tcp", Address: a})
	}
	return r
}
