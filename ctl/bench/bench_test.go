package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/bufpool"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Under .ci/cover the binaries the benchmark builds and starts are built with coverage
	// (GOFLAGS); go test points GOCOVERDIR at a directory it then ignores, so their counters go
	// where the script collects them.
	if d := os.Getenv("SOCKAGENT_GOCOVERDIR"); d != "" {
		_ = os.Setenv("GOCOVERDIR", d)
	}
	bufpool.Install() // as sockbench's main does
	goleak.VerifyTestMain(m)
}

var wantKeys = []string{"attach", "probe", "tls", "tcp", "udp", "sendrecv", "metrics", "events", "traces", "dialopts", "proxy", "proxytoxi", "proxylat", "proxylat99", "proxybw", "getinfo", "sockctl", "scenario", "matrix"}

// toxiproxyRows are the rows whose baseline is toxiproxy's.
var toxiproxyRows = []string{"proxytoxi", "proxylat", "proxylat99"}

// TestQuickRun runs every row in --quick mode in this process and checks that each produced a
// positive figure and baseline, with a ratio and verdict that follow from them, and that the
// three report formats render all of them. Pass or fail is not asserted: CI machines are noisy.
// Rows whose feature this build lacks answer Unimplemented and say so.
func TestQuickRun(t *testing.T) {
	// Benchmarks stay out of the normal test run: CI's benchmark smoke stage sets this.
	if os.Getenv("SOCKAGENT_BENCH_SMOKE") == "" {
		t.Skip("runs every benchmark row; set SOCKAGENT_BENCH_SMOKE=1 (CI's benchmark smoke stage does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := Run(ctx, Config{Quick: true, Progress: &progress})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	t.Logf("progress:\n%s", progress.String())
	if rep.Seconds != 300*time.Millisecond {
		t.Errorf("quick run: Seconds %s, want 300ms", rep.Seconds)
	}
	var keys []string
	for _, r := range rep.Rows {
		keys = append(keys, r.Key)
	}
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("rows %v, want %v", keys, wantKeys)
	}
	_, iperfErr := exec.LookPath("iperf3")
	allPass := true
	for _, r := range rep.Rows {
		allPass = allPass && r.Pass
		checkRow(t, r, iperfErr == nil)
	}
	if rep.Pass != allPass {
		t.Errorf("report pass %v, rows all pass %v", rep.Pass, allPass)
	}
	if rep.Machine.Cores <= 0 || rep.Machine.Go == "" || rep.Machine.Date == "" {
		t.Errorf("machine %+v", rep.Machine)
	}

	t.Run("table", func(t *testing.T) { checkTable(t, rep) })
	t.Run("markdown", func(t *testing.T) {
		var b bytes.Buffer
		if err := WriteMarkdown(&b, rep); err != nil {
			t.Fatal(err)
		}
		t.Logf("\n%s", b.String())
		checkMarkdown(t, b.String(), rep)
	})
	t.Run("json", func(t *testing.T) { checkJSON(t, rep) })
}

// checkRow checks one row of a quick run: a figure unless the feature is not in this build,
// a baseline (tcp's needs iperf3), and the ratio of the two.
func checkRow(t *testing.T, r Row, haveIperf bool) {
	t.Helper()
	switch {
	case r.Unimplemented:
		t.Logf("%s: not in this build: %s", r.Key, r.Error)
		if !strings.Contains(r.Error, "not implemented by this agent (Unimplemented)") || r.Value != 0 || r.Pass {
			t.Errorf("%s: unimplemented row: error %q, value %v, pass %v", r.Key, r.Error, r.Value, r.Pass)
		}
	case r.Error != "" || !r.Measured || r.Value < 0:
		t.Errorf("%s: figure %v: %s", r.Key, r.Value, r.Error)
	}
	if r.Key == "tcp" && !haveIperf {
		if r.BaselineError != errNoIperf3.Error() || r.Pass {
			t.Errorf("tcp without iperf3: baseline error %q, pass %v; want %q and a failure", r.BaselineError, r.Pass, errNoIperf3)
		}
		return
	}
	if slices.Contains(toxiproxyRows, r.Key) && r.BaselineError != "" && os.Getenv("CI") == "" {
		// Without CI, a machine that cannot build toxiproxy says so (CI must have it).
		if !strings.Contains(r.BaselineError, errToxiproxy.Error()+": ") {
			t.Errorf("%s: baseline error %q, want %q and why", r.Key, r.BaselineError, errToxiproxy)
		}
		t.Logf("%s: %s", r.Key, r.BaselineError)
		return
	}
	zero := slices.Contains([]string{"proxylat", "proxylat99"}, r.Key)
	if r.BaselineError != "" || r.BaselineValue < 0 || r.BaselineValue == 0 && !zero {
		t.Errorf("%s: baseline %v: %s", r.Key, r.BaselineValue, r.BaselineError)
	}
	if r.Value > 0 && r.BaselineValue > 0 {
		want := r.Value / r.BaselineValue
		switch {
		case !r.Paired && r.Ratio != want:
			t.Errorf("%s: ratio %v, want %v", r.Key, r.Ratio, want)
		case r.Paired && (r.Ratio < want/2 || r.Ratio > want*2):
			// The median of the rounds' ratios and the ratio of the medians differ by the
			// rounds' noise; a factor 2 is a bug, not noise.
			t.Errorf("%s: paired ratio %v, far from the medians' %v", r.Key, r.Ratio, want)
		}
	}
	if r.Paired != slices.Contains(pairedRows, r.Key) {
		t.Errorf("%s: paired %v, want %v", r.Key, r.Paired, !r.Paired)
	}
	checkCPU(t, r)
	t.Logf("%-9s %s", r.Key, summaryLine(r))
}

// pairedRows are the rows whose ratio is the median of paired ratios (alternate).
var pairedRows = []string{"sendrecv", "metrics", "events", "traces", "dialopts", "getinfo", "sockctl", "scenario"}

// cpuRows are the rows that report CPU per GB: the throughput rows.
var cpuRows = map[string]bool{"attach": true, "tcp": true, "udp": true}

// checkCPU checks a row's CPU figures: both sides' CPU per GB, within what two cores can
// spend moving bytes at loopback speeds, and their ratio, on the throughput rows; none on
// the others.
func checkCPU(t *testing.T, r Row) {
	t.Helper()
	if !cpuRows[r.Key] {
		if r.CPUPerGB != 0 || r.BaselineCPUPerGB != 0 || r.CPURatio != 0 {
			t.Errorf("%s: CPU figures %v %v %v on a row that moves no bytes", r.Key, r.CPUPerGB, r.BaselineCPUPerGB, r.CPURatio)
		}
		return
	}
	// Two cores for the whole span, at the slowest rate a quick run might see (10 MB/s), is
	// 200 s/GB; loopback TCP costs well above 0.01 s/GB.
	for _, v := range []float64{r.CPUPerGB, r.BaselineCPUPerGB} {
		if r.Value > 0 && r.BaselineValue > 0 && (v < 0.01 || v > 200) {
			t.Errorf("%s: CPU per GB %v s, want 0.01..200 (ours %v, baseline %v)", r.Key, v, r.CPUPerGB, r.BaselineCPUPerGB)
		}
	}
	if r.CPUPerGB > 0 && r.BaselineCPUPerGB > 0 {
		if want := r.CPUPerGB / r.BaselineCPUPerGB; r.CPURatio != want {
			t.Errorf("%s: CPU ratio %v, want %v", r.Key, r.CPURatio, want)
		}
	}
}

// checkTable checks the table report: the header, then one line per row with its figure and
// verdict.
func checkTable(t *testing.T, rep *Report) {
	var b bytes.Buffer
	if err := WriteTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
	lines := strings.Split(b.String(), "\n")
	if want := "CPU: " + rep.Machine.CPU + ", "; !strings.HasPrefix(lines[0], want) || !strings.HasSuffix(lines[0], " cores") {
		t.Errorf("first line %q, want %q... cores", lines[0], want)
	}
	if got := strings.Fields(lines[1]); !slices.Equal(got, header) {
		t.Fatalf("header %q, want %q", got, header)
	}
	for i, r := range rep.Rows {
		line := lines[2+i]
		if !strings.HasPrefix(line, r.Figure+" ") || !strings.HasSuffix(strings.TrimSpace(line), map[bool]string{true: "pass", false: "FAIL"}[r.Pass]) {
			t.Errorf("table line %d %q for row %s", 1+i, line, r.Key)
		}
	}
}

// checkJSON checks that the JSON report reads back as the report.
func checkJSON(t *testing.T, rep *Report) {
	var b bytes.Buffer
	if err := WriteJSON(&b, rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Rows) != len(rep.Rows) || back.Rows[0].Value != rep.Rows[0].Value || back.Rows[0].CPUPerGB != rep.Rows[0].CPUPerGB ||
		back.Rows[0].BaselineCPUPerGB != rep.Rows[0].BaselineCPUPerGB || back.Rows[0].CPURatio != rep.Rows[0].CPURatio ||
		back.Pass != rep.Pass || back.Machine != rep.Machine {
		t.Errorf("json round trip lost data:\n%s", b.String())
	}
}

// mdCells splits one Markdown table line into its cells (no escaped pipes in our cells).
func mdCells(line string) []string {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "|") || !strings.HasSuffix(line, "|") {
		return nil
	}
	parts := strings.Split(line[1:len(line)-1], "|")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// checkMarkdown parses a Markdown report: a header of 7 columns, the separator, one line per
// row with the row's figure and verdict, then the machine line.
func checkMarkdown(t *testing.T, md string, rep *Report) {
	t.Helper()
	var table []string
	machineLine := ""
	for line := range strings.SplitSeq(md, "\n") {
		if strings.HasPrefix(line, "|") {
			table = append(table, line)
		}
		if strings.HasPrefix(line, "Machine: ") {
			machineLine = line
		}
	}
	if len(table) != 2+len(rep.Rows) {
		t.Fatalf("%d table lines, want %d:\n%s", len(table), 2+len(rep.Rows), md)
	}
	head := mdCells(table[0])
	if len(head) != 10 || head[0] != "Figure" || head[5] != "CPU/GB" || head[9] != "Result" {
		t.Errorf("header cells %q", head)
	}
	if !strings.HasPrefix(md, "CPU: "+rep.Machine.CPU+", ") {
		t.Errorf("markdown does not start with the CPU model %q:\n%s", rep.Machine.CPU, md)
	}
	if !regexp.MustCompile(`^\|(---\|){10}$`).MatchString(table[1]) {
		t.Errorf("separator %q", table[1])
	}
	for i, r := range rep.Rows {
		c := mdCells(table[2+i])
		if len(c) != 10 || c[0] != r.Figure || c[2] != r.Baseline || !slices.Equal(c[5:8], r.cpuCells()) || c[8] != r.Target {
			t.Errorf("row %s: cells %q", r.Key, c)
			continue
		}
		want := "FAIL"
		if r.Pass {
			want = "pass"
		}
		if c[9] != want {
			t.Errorf("row %s: result %q, want %q", r.Key, c[9], want)
		}
	}
	m := rep.Machine
	for _, part := range []string{m.CPU, m.Kernel, m.Go, m.Date, "cores"} {
		if !strings.Contains(machineLine, part) {
			t.Errorf("machine line %q lacks %q", machineLine, part)
		}
	}
}

// TestMainOnlyMarkdown runs one cheap row through Main, as `sockbench --only getinfo -o
// markdown` would.
func TestMainOnlyMarkdown(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"--quick", "--only", "^getinfo$", "-o", "markdown"}, &stdout, &stderr)
	if code != ExitPass && code != ExitFail {
		t.Fatalf("exit %d, want 0 or 1; stderr:\n%s", code, stderr.String())
	}
	rows := 0
	for line := range strings.SplitSeq(stdout.String(), "\n") {
		if strings.HasPrefix(line, "| GetInfo p50 |") {
			rows++
		}
		if strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| Figure") && !strings.HasPrefix(line, "| GetInfo") {
			t.Errorf("unexpected row %q", line)
		}
	}
	if rows != 1 {
		t.Errorf("%d GetInfo rows, want 1:\n%s", rows, stdout.String())
	}
	if !strings.Contains(stderr.String(), "sockbench: getinfo") {
		t.Errorf("no progress on stderr: %q", stderr.String())
	}
	wantCode := ExitFail
	if strings.Contains(stdout.String(), "| pass |") {
		wantCode = ExitPass
	}
	if code != wantCode {
		t.Errorf("exit %d with report\n%s", code, stdout.String())
	}
}

// TestMainBadFlags: every bad command line exits 2 with a message naming the problem, and
// runs nothing.
func TestMainBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"--seconds", "0"}, "--seconds 0"},
		{[]string{"--seconds", "-1"}, "--seconds -1"},
		{[]string{"--seconds", "601"}, "--seconds 601"},
		{[]string{"--seconds", "three"}, `invalid argument "three"`},
		{[]string{"--only", "("}, "is not a regular expression"},
		{[]string{"--only", "nosuchrow"}, "matches none of the rows: attach, probe, tls, tcp, udp, sendrecv, metrics, events, traces, dialopts, proxy, proxytoxi, proxylat, proxylat99, proxybw, getinfo, sockctl, scenario, matrix"},
		{[]string{"-o", "yaml"}, `-o "yaml": give table, json or markdown`},
		{[]string{"run"}, `unexpected argument "run"`},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), tc.args, &stdout, &stderr)
		if code != ExitUsage || !strings.Contains(stderr.String(), tc.want) || stdout.Len() != 0 || strings.Contains(stderr.String(), "sockbench: attach") {
			t.Errorf("sockbench %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, stdout.String(), stderr.String(), tc.want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"--help"}, &stdout, &stderr); code != ExitPass || !strings.Contains(stderr.String(), "Usage: sockbench") {
		t.Errorf("--help: exit %d, stderr %q", code, stderr.String())
	}
}

// TestCells: how rows print when a side failed, and how targets read and judge.
func TestCells(t *testing.T) {
	r := Row{Key: "attach", Figure: "attach relay throughput", Baseline: "raw Go TCP 1 stream", Unit: "bit/s", Target: ">=0.15x",
		Error: "not implemented by this agent (Unimplemented): Attach", Unimplemented: true, BaselineValue: 2.2e10}
	if got, want := r.cells(), []string{"attach relay throughput", "unimplemented", "raw Go TCP 1 stream", "22.0 Gbit/s", "-", "-", "-", "-", ">=0.15x", "FAIL"}; !slices.Equal(got, want) {
		t.Errorf("cells %q, want %q", got, want)
	}
	if got := r.notes(); len(got) != 1 || got[0] != "attach: not implemented by this agent (Unimplemented): Attach" {
		t.Errorf("notes %q", got)
	}
	r = Row{Figure: "sockctl info wall p50", Unit: "s", Value: 0.0042, BaselineError: "boom", Target: "<=5ms", Pass: true}
	if got, want := r.cells(), []string{"sockctl info wall p50", "4.20ms", "", "error", "-", "-", "-", "-", "<=5ms", "pass"}; !slices.Equal(got, want) {
		t.Errorf("cells %q, want %q", got, want)
	}
	for _, tc := range []struct {
		t            target
		value, ratio float64
		str          string
		holds        bool
	}{
		{target{atLeast: true, limit: 0.15}, 1, 0.15, ">=0.15x", true},
		{target{atLeast: true, limit: 0.15}, 1, 0.149, ">=0.15x", false},
		{target{limit: 1.3}, 1, 1.31, "<=1.3x", false},
		{target{limit: 2}, 1, 2, "<=2x", true},
		{target{absolute: true, limit: 0.005}, 0.0049, 9, "<=5ms", true},
		{target{absolute: true, limit: 0.005}, 0.0051, 0.1, "<=5ms", false},
		{target{within: 0.03}, 1, 0.97, "1x±3%", true},
		{target{within: 0.03}, 1, 1.03, "1x±3%", true},
		{target{within: 0.03}, 1, 0.969, "1x±3%", false},
		{target{within: 0.03}, 1, 1.031, "1x±3%", false},
	} {
		if tc.t.String() != tc.str || tc.t.holds(tc.value, tc.ratio) != tc.holds {
			t.Errorf("%+v: %q holds(%v, %v) = %v; want %q %v", tc.t, tc.t.String(), tc.value, tc.ratio, tc.t.holds(tc.value, tc.ratio), tc.str, tc.holds)
		}
	}
	r = Row{Figure: "latency toxic 20ms: echo p50 error", Unit: "s", Measured: true, Target: "<=1ms", Pass: true}
	if got, want := r.cells(), []string{r.Figure, "0.00µs", "", "0.00µs", "-", "-", "-", "-", "<=1ms", "pass"}; !slices.Equal(got, want) {
		t.Errorf("a measured 0: cells %q, want %q", got, want)
	}
	for _, tc := range []struct {
		v    float64
		unit string
		want string
	}{
		{4.1e9, "bit/s", "4.10 Gbit/s"}, {950e6, "bit/s", "950 Mbit/s"}, {290e3, "datagram/s", "290k dgram/s"},
		{1.2e6, "datagram/s", "1.20M dgram/s"}, {41e-6, "s", "41.0µs"}, {0.0635, "s", "63.5ms"},
	} {
		if got := formatValue(tc.v, tc.unit); got != tc.want {
			t.Errorf("formatValue(%v, %s) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
}

// TestInterrupted: a cancelled run reports every selected row as not run, and fails.
func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := Run(ctx, Config{Quick: true, Only: regexp.MustCompile("^(getinfo|scenario)$")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pass || len(rep.Rows) != 2 {
		t.Fatalf("pass %v, %d rows; want a failure with 2 rows", rep.Pass, len(rep.Rows))
	}
	for _, r := range rep.Rows {
		if r.Error != "not run: context canceled" || r.Pass {
			t.Errorf("%s: error %q pass %v", r.Key, r.Error, r.Pass)
		}
	}
}

// The cached toxiproxy binary is named after toxiproxyVersion: it must be the version the
// nested module builds.
func TestToxiproxyVersion(t *testing.T) {
	t.Parallel()
	mod, err := os.ReadFile("toxiproxy/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if want := "github.com/Shopify/toxiproxy/v2 " + toxiproxyVersion; !strings.Contains(string(mod), want) {
		t.Errorf("toxiproxy/go.mod does not require %s:\n%s", want, mod)
	}
}

// Without a toxiproxy to run, the baseline says so, why, and what to do.
func TestToxiproxyUnavailable(t *testing.T) {
	t.Setenv(envToxiproxy, "/nonexistent/toxiproxy-server")
	_, err := toxiproxyBinary(context.Background(), ".", func(string, ...any) {})
	if err == nil || !strings.HasPrefix(err.Error(), "toxiproxy baseline unavailable: $SOCKBENCH_TOXIPROXY: ") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("err = %v", err)
	}
	t.Setenv(envToxiproxy, "")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	_, err = toxiproxyBinary(context.Background(), t.TempDir(), func(string, ...any) {})
	if err == nil || !strings.Contains(err.Error(), "toxiproxy baseline unavailable: ctl/bench/toxiproxy/go.mod not found in ") ||
		!strings.Contains(err.Error(), "run sockbench in the sockagent repository, or set $SOCKBENCH_TOXIPROXY") {
		t.Errorf("err = %v", err)
	}
}
