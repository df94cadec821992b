package load

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// samples makes n samples every 2s, each metric from f(i).
func samples(n int, f func(i int) Sample) []Sample {
	out := make([]Sample, n)
	for i := range out {
		out[i] = f(i)
		out[i].At = time.Duration(i) * 2 * time.Second
	}
	return out
}

func TestSlope(t *testing.T) {
	fds := Metrics[1]
	// Noise symmetric about the middle has no trend, however large.
	flat := samples(30, func(i int) Sample { return Sample{FDs: 80 + (min(i, 29-i)%3-1)*40} })
	if s := Slope(fds, flat); s < -1e-9 || s > 1e-9 {
		t.Errorf("slope of a flat noisy series %.2f/min, want 0", s)
	}
	// One fd every 2 s is 30 a minute, exactly.
	leak := samples(30, func(i int) Sample { return Sample{FDs: 80 + i} })
	if s := Slope(fds, leak); s < 29.999 || s > 30.001 {
		t.Errorf("slope of +1 every 2s %.3f/min, want 30", s)
	}
	if s := Slope(fds, leak[:1]); s != 0 {
		t.Errorf("slope of one sample %.2f, want 0", s)
	}
}

// TestJudge: a steady load that returns to its baseline passes; a leak of a socket (and its
// file) every second, a slow goroutine leak that outlives the load, RSS that keeps growing,
// and a thread more after the load each fail, naming the metric.
func TestJudge(t *testing.T) {
	base := Sample{RSS: 20 << 20, FDs: 11, Threads: 10, Goroutines: 9}
	steady := func(int) Sample {
		return Sample{RSS: 23 << 20, FDs: 80, Threads: 11, Goroutines: 15, Sockets: 70}
	}
	tests := []struct {
		name  string
		load  func(i int) Sample
		after Sample
		want  []string // substrings of the errors, in order; none: passes
	}{
		{"steady", steady, Sample{RSS: 22 << 20, FDs: 11, Threads: 11, Goroutines: 9}, nil},
		{"a socket a second", func(i int) Sample {
			s := steady(i)
			s.FDs += 2 * i
			s.Sockets += 2 * i
			return s
		}, Sample{RSS: 22 << 20, FDs: 11, Threads: 10, Goroutines: 9}, []string{"fds grew 60.00 a minute", "open sockets grew 60.00 a minute"}},
		{"goroutines left after", steady, Sample{RSS: 22 << 20, FDs: 11, Threads: 10, Goroutines: 14},
			[]string{"goroutines 14.0 after the load, baseline 9.0: more than 4.0 above it"}},
		{"sockets left after", steady, Sample{RSS: 22 << 20, FDs: 12, Threads: 10, Goroutines: 9, Sockets: 1},
			[]string{"open sockets 1.0 after the load, baseline 0.0: more than 0.0 above it"}},
		{"memory", func(i int) Sample {
			s := steady(i)
			s.RSS += int64(i) << 18 // 256 KiB every 2 s: 7.5 MiB a minute
			return s
		}, Sample{RSS: 50 << 20, FDs: 11, Threads: 10, Goroutines: 9},
			[]string{"rss grew 7.50MiB a minute", "rss 50.0MiB after the load, baseline 20.0MiB: more than 24.0 above it"}},
		{"threads", steady, Sample{RSS: 22 << 20, FDs: 11, Threads: 15, Goroutines: 9},
			[]string{"threads 15.0 after the load, baseline 10.0: more than 4.0 above it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := SoakResult{Baseline: base, Samples: samples(30, tt.load), Ramp: 10 * time.Second, After: tt.after}
			errs := Judge(r)
			if len(errs) != len(tt.want) {
				t.Fatalf("Judge = %v, want %d errors: %q", errs, len(tt.want), tt.want)
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tt.want[i]) {
					t.Errorf("error %d %q, want it to contain %q", i, e, tt.want[i])
				}
			}
		})
	}
	// The ramp is left out of the trend: a climb in its first 10 s is not a leak.
	r := SoakResult{Baseline: base, Ramp: 10 * time.Second, After: Sample{RSS: 22 << 20, FDs: 11, Threads: 11, Goroutines: 9},
		Samples: samples(30, func(i int) Sample {
			s := steady(i)
			if i < 5 {
				s.FDs, s.Sockets = 11+15*i, 15*i
			}
			return s
		})}
	if errs := Judge(r); errs != nil {
		t.Errorf("a ramp in the first 10s judged as a trend: %v", errs)
	}
	r.Ramp = 0
	if errs := Judge(r); len(errs) != 2 {
		t.Errorf("without the ramp left out, want the fds and sockets trends: %v", errs)
	}
	if errs := Judge(SoakResult{Samples: samples(4, steady), Baseline: base, After: base}); len(errs) != 1 || !strings.Contains(errs[0].Error(), "4 samples after the ramp: too few") {
		t.Errorf("4 samples: %v", errs)
	}
}
