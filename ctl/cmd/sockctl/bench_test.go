package main

// The cost of one sockctl invocation (issue 6, point 6: at most 5 ms wall): the built binary
// run as a process against an agent on TCP loopback, beside a baseline that makes the same
// single GetInfo call with grpc-go alone (testdata/bareinfo: no cobra, no output formatting),
// beside 'sockctl --help' (process start, package init and the command tree, no RPC), and beside
// testdata/nothing, a Go program that prints "ok": the floor of starting any Go process here.
//
//	go test -run='^$' -bench=. -benchtime=50x ./ctl/cmd/sockctl/
//
// Each iteration runs the four commands in turn, so machine noise hits them alike; the
// figures are medians.

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
)

// benchTargetWall is the bound on one sockctl invocation.
const benchTargetWall = 5 * time.Millisecond

var (
	benchBuildOnce sync.Once
	benchBuildDir  string
	benchBuildErr  error
)

// benchBinaries builds sockctl, testdata/bareinfo and testdata/nothing once per test process.
func benchBinaries(b *testing.B) (sockctl, bare, nothing string) {
	b.Helper()
	benchBuildOnce.Do(func() {
		benchBuildDir, benchBuildErr = os.MkdirTemp("", "sockctl-bench-")
		if benchBuildErr != nil {
			return
		}
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		for _, p := range [][2]string{{"sockctl", "."}, {"bareinfo", "./testdata/bareinfo"}, {"nothing", "./testdata/nothing"}} {
			out, err := exec.Command(goTool, "build", "-o", filepath.Join(benchBuildDir, p[0]), p[1]).CombinedOutput()
			if err != nil {
				benchBuildErr = &buildError{pkg: p[1], out: string(out), err: err}
				return
			}
		}
	})
	if benchBuildErr != nil {
		b.Fatal(benchBuildErr)
	}
	return filepath.Join(benchBuildDir, "sockctl"), filepath.Join(benchBuildDir, "bareinfo"), filepath.Join(benchBuildDir, "nothing")
}

type buildError struct {
	pkg, out string
	err      error
}

func (e *buildError) Error() string { return "go build " + e.pkg + ": " + e.err.Error() + "\n" + e.out }

func TestMain(m *testing.M) {
	code := m.Run()
	if benchBuildDir != "" {
		os.RemoveAll(benchBuildDir)
	}
	os.Exit(code)
}

// benchAgent serves an in-process agent on 127.0.0.1:0 until the benchmark ends.
func benchAgent(b *testing.B) string {
	b.Helper()
	a, err := agent.New(agent.Config{})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.Serve(lis)
	}()
	b.Cleanup(func() {
		a.Close()
		<-served
	})
	return lis.Addr().String()
}

// benchRun runs one process to its end and returns how long it took; it fails the benchmark
// unless the process exits 0 with want in its output.
func benchRun(b *testing.B, want string, name string, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "SOCKCTL_AGENT=") // the command line says which agent
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil || !strings.Contains(out.String(), want) {
		b.Fatalf("%s %s: %v, want exit 0 and %q in the output:\n%s", filepath.Base(name), strings.Join(args, " "), err, want, out.String())
	}
	return d
}

// BenchmarkRatioSockctlInfo: 'sockctl info' against a running agent, target p50 <= 5 ms wall;
// reported beside bareinfo (the same GetInfo with grpc-go alone) and 'sockctl --help'.
func BenchmarkRatioSockctlInfo(b *testing.B) {
	sockctl, bare, nothing := benchBinaries(b)
	addr := benchAgent(b)
	info := func() time.Duration { return benchRun(b, "hostname:", sockctl, "--agent", addr, "info") }
	baseline := func() time.Duration { return benchRun(b, "hostname:", bare, addr) }
	help := func() time.Duration { return benchRun(b, "Usage:", sockctl, "--help") }
	floor := func() time.Duration { return benchRun(b, "ok", nothing) }
	for range 3 { // page cache, agent connections
		info()
		baseline()
		help()
		floor()
	}
	var ti, tb, th, tf []time.Duration
	for b.Loop() {
		ti, tb, th, tf = append(ti, info()), append(tb, baseline()), append(th, help()), append(tf, floor())
	}
	p50i, p50b, p50h, p50f := benchMedian(ti), benchMedian(tb), benchMedian(th), benchMedian(tf)
	ratio := float64(p50i) / float64(p50b)
	b.ReportMetric(float64(p50i.Microseconds()), "sockctl-info-p50-us")
	b.ReportMetric(float64(p50b.Microseconds()), "bare-client-p50-us")
	b.ReportMetric(float64(p50h.Microseconds()), "sockctl-help-p50-us")
	b.ReportMetric(float64(p50f.Microseconds()), "go-process-p50-us")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(float64(p50i)/float64(benchTargetWall), "of-5ms")
	verdict := "PASS"
	if p50i > benchTargetWall {
		verdict = "FAIL"
	}
	b.Logf("sockctl info p50=%s (target <= %s: %s)  bare grpc-go client p50=%s  ratio=%.2fx  sockctl --help p50=%s  empty Go process p50=%s  (n=%d)",
		p50i.Round(10*time.Microsecond), benchTargetWall, verdict, p50b.Round(10*time.Microsecond), ratio,
		p50h.Round(10*time.Microsecond), p50f.Round(10*time.Microsecond), len(ti))
}

func benchMedian(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
