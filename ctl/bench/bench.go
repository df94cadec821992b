// Package bench is sockbench: it measures sockagent's performance figures that have targets,
// each beside a baseline measured in the same run on the same machine, and reports one table of figure,
// baseline, ratio, target and pass/fail.
//
// Everything runs in this process over real TCP loopback (127.0.0.1): an agent (agent.New,
// served on 127.0.0.1:0), a plain grpc-go server with only the health service (the bare unary
// baseline), raw Go TCP and UDP peers, and iperf3 (the only other program, besides the
// sockctl and bare-client binaries the sockctl row builds with `go build`).
//
// The rows, by key (--only matches the key or the figure):
//
//	attach    Attach relay throughput, caller -> agent socket -> raw TCP reader, vs raw Go TCP
//	          single stream in the same 64 KiB chunks: >= 0.5x, and CPU per GB <= 2.5x
//	probe     Probe TCP echo round trip p50 against an agent-served echo vs a raw Go ping-pong
//	          p50 (64 B): <= 1.3x
//	tcp       Throughput single-stream TCP send to an agent-served discard vs iperf3 single
//	          stream: >= 0.8x
//	udp       Throughput UDP receive from an agent-served source, datagrams received per second,
//	          vs a Go sender blasting 1400 B datagrams at a Go receiver: >= 0.5x
//	sendrecv  Send+Recv of 64 B on an open socket pair, p50, vs a bare gRPC unary call p50: <= 1.9x
//	metrics   the same Send+Recv on an agent with metrics on (scraped every second) vs one with
//	          them off: <= 1.05x
//	traces    the same Send+Recv through the tracing hooks with traces off vs no hooks: <= 1.02x;
//	          the note gives it with traces on, to an in-process exporter
//	getinfo   GetInfo p50 vs a bare gRPC unary call p50: <= 1.1x
//	sockctl   one `sockctl info` invocation, wall time p50, vs a bare Go binary making the same
//	          call: <= 1.2x
//	scenario  a 1,000-step scenario through the built `sockctl run` vs a bare Go client binary
//	          making the same RPCs (bareclient), each its own process: <= 1.2x; the note gives
//	          the same inside this process (ctl.Main vs bareclient.Scenario)
//	matrix    a 20 x 20 TCP matrix over in-process agents, one Sweep per source (as sockctl
//	          matrix and a scenario's matrix step run it), vs one Probe RPC per cell: <= 0.8x
//
// Latencies alternate figure and baseline per iteration (or per round of a Probe), so machine
// noise hits both alike; throughputs run the baseline and then the figure, back to back, each
// for Config.Seconds. Throughput rows also report the CPU time (user + system) each side spent
// per GB moved: this process's getrusage delta for the sides that run in it (each phase runs
// alone), the processes' own CPU time for iperf3's. CPU per byte varies much less between
// machines and loads than a rate on shared cores does.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/ctl/localagent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Config says what to run and for how long.
type Config struct {
	// Quick runs short smoke versions: fewer iterations, and Seconds 0.3s unless set.
	Quick bool
	// Only selects the rows whose key or figure it matches; nil runs every row.
	Only *regexp.Regexp
	// Seconds is how long each side of a throughput row runs; 0 means 3s (0.3s with Quick).
	Seconds time.Duration
	// Progress gets one line per row as it starts and ends; nil discards them.
	Progress io.Writer
}

// Row is one line of the table: our figure, its baseline from the same run, and the verdict.
type Row struct {
	// Key names the row for --only: attach, probe, tcp, udp, sendrecv, getinfo, sockctl,
	// scenario.
	Key string `json:"key"`
	// Figure says what was measured.
	Figure string `json:"figure"`
	// Value is the figure in Unit (0 when Error is set).
	Value float64 `json:"value"`
	// Measured says Value is a figure: rows whose figure is an error from an expected value
	// may measure 0.
	Measured bool `json:"measured"`
	// Unit of Value and BaselineValue: "bit/s", "datagram/s" or "s".
	Unit string `json:"unit"`
	// Baseline says what the figure is compared with.
	Baseline string `json:"baseline"`
	// BaselineValue is the baseline in Unit (0 when BaselineError is set).
	BaselineValue float64 `json:"baseline_value"`
	// Ratio is Value / BaselineValue, or with Paired the median of the rounds' own ratios
	// (0 when either side is missing).
	Ratio float64 `json:"ratio"`
	// Paired says Ratio is the median of the rounds' ratios, figure over baseline timed back to
	// back (the latency rows), which drift between rounds does not move; Value and
	// BaselineValue are then the two sides' medians, whose ratio differs a little.
	Paired bool `json:"paired,omitempty"`
	// Target is the condition to pass, as text: ">=0.15x", "<=1.3x", "<=5ms".
	Target string `json:"target"`
	// Pass says the target held (false when a side failed).
	Pass bool `json:"pass"`
	// Note adds what the table cannot say (a goal, how the figure was taken).
	Note string `json:"note,omitempty"`
	// Error says why the figure could not be measured.
	Error string `json:"error,omitempty"`
	// Unimplemented is set when the agent answered Unimplemented: the feature is not in this
	// build.
	Unimplemented bool `json:"unimplemented,omitempty"`
	// BaselineError says why the baseline could not be measured.
	BaselineError string `json:"baseline_error,omitempty"`
	// CPUPerGB is the CPU time (user + system) our path spent per GB (10^9 bytes) it moved, in
	// seconds, counting every process and goroutine the path runs in (for in-process paths,
	// this whole process while the phase ran alone); 0 when not measured (latency rows).
	CPUPerGB float64 `json:"cpu_s_per_gb,omitempty"`
	// BaselineCPUPerGB is the same for the baseline.
	BaselineCPUPerGB float64 `json:"baseline_cpu_s_per_gb,omitempty"`
	// CPURatio is CPUPerGB / BaselineCPUPerGB (0 when either is missing).
	CPURatio float64 `json:"cpu_ratio,omitempty"`
	// Elapsed is how long the row took, both sides.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Report is a whole run.
type Report struct {
	Machine Machine       `json:"machine"`
	Quick   bool          `json:"quick"`
	Seconds time.Duration `json:"seconds_ns"`
	Rows    []Row         `json:"rows"`
	// Pass is true when every row passed.
	Pass bool `json:"pass"`
}

// target is a row's pass condition: a ratio bound, or an absolute bound on the value.
type target struct {
	atLeast  bool    // >= limit; else <= limit
	absolute bool    // limit applies to the value itself (in the row's unit), not the ratio
	limit    float64 // a ratio, or a value in the row's unit
	// within, when set, makes the target a band around a ratio of 1: |ratio - 1| <= within
	// (atLeast, absolute and limit are unused).
	within float64
}

func (t target) String() string {
	if t.within > 0 {
		return "1x±" + trimFloat(t.within*100) + "%"
	}
	op := "<="
	if t.atLeast {
		op = ">="
	}
	if t.absolute { // seconds: the only absolute target is a wall time
		return op + trimFloat(t.limit*1e3) + "ms"
	}
	return op + trimFloat(t.limit) + "x"
}

func (t target) holds(value, ratio float64) bool {
	if t.within > 0 {
		return math.Abs(ratio-1) <= t.within+1e-12 // (0.97 - 1 is not -0.03 in floating point)
	}
	v := ratio
	if t.absolute {
		v = value
	}
	if t.atLeast {
		return v >= t.limit
	}
	return v <= t.limit
}

// result is what a row's measurement returns: both sides, each with its own error.
type result struct {
	value, base float64
	// ratio, when set, is the row's ratio, measured as such (alternate: the median of paired
	// ratios); else it is value / base.
	ratio        float64
	err, baseErr error
	note         string // appended to the row's note
	// cpu and baseCPU are CPU seconds per GB moved (throughput rows; 0: not measured).
	cpu, baseCPU float64
}

// def describes a row; run measures it.
type def struct {
	key, figure, baseline, unit string
	target                      target
	// cpuLimit, when set, is a second condition to pass: CPU per GB at most cpuLimit times
	// the baseline's.
	cpuLimit float64
	note     string
	timeout  func(cfg Config) time.Duration
	run      func(ctx context.Context, e *env) result
	// zero says 0 is a figure (an error of nothing), not a failure to measure.
	zero bool
}

// Keys lists the row keys in table order.
func Keys() []string {
	var ks []string
	for _, d := range defs() {
		ks = append(ks, d.key)
	}
	return ks
}

// selected says whether the row d is selected by only.
func selected(only *regexp.Regexp, d def) bool {
	return only == nil || only.MatchString(d.key) || only.MatchString(d.figure)
}

// errNoRows says --only selected nothing.
var errNoRows = errors.New("no row selected")

// Run measures the selected rows and returns the report. It fails only when the agent or the
// bare server could not be started, or when the agent was left with open sockets.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Seconds <= 0 {
		cfg.Seconds = 3 * time.Second
		if cfg.Quick {
			cfg.Seconds = 300 * time.Millisecond
		}
	}
	var ds []def
	for _, d := range defs() {
		if selected(cfg.Only, d) {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		return nil, fmt.Errorf("%w: --only %q matches none of the rows %s", errNoRows, cfg.Only, strings.Join(Keys(), ", "))
	}
	e, err := newEnv(cfg)
	if err != nil {
		return nil, err
	}
	rep := &Report{Machine: machine(), Quick: cfg.Quick, Seconds: cfg.Seconds, Pass: true}
	for _, d := range ds {
		if ctx.Err() != nil { // interrupted: the rest is reported, not run
			rep.Rows = append(rep.Rows, Row{Key: d.key, Figure: d.figure, Baseline: d.baseline, Unit: d.unit, Target: d.targetString(),
				Error: "not run: " + context.Cause(ctx).Error()})
			rep.Pass = false
			continue
		}
		row := e.runRow(ctx, d)
		rep.Rows = append(rep.Rows, row)
		rep.Pass = rep.Pass && row.Pass
	}
	if err := e.close(); err != nil {
		return rep, err
	}
	return rep, nil
}

// runRow runs one row within its timeout and fills in ratio and verdict.
func (e *env) runRow(ctx context.Context, d def) Row {
	row := Row{Key: d.key, Figure: d.figure, Baseline: d.baseline, Unit: d.unit, Target: d.targetString(), Note: d.note}
	e.progress("%-9s %s ...", d.key, d.figure)
	timeout := 2*time.Minute + 4*e.cfg.Seconds
	if d.timeout != nil {
		timeout = d.timeout(e.cfg)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	r := d.run(rctx, e)
	cancel()
	row.Elapsed = time.Since(start)
	if r.note != "" {
		row.Note = joinNote(row.Note, r.note)
	}
	switch {
	case r.err != nil:
		row.Error = describeErr(r.err)
		row.Unimplemented = status.Code(r.err) == codes.Unimplemented
	case r.value < 0 || r.value == 0 && !d.zero:
		row.Error = "measured nothing (0)"
	default:
		row.Value, row.Measured = r.value, true
	}
	switch {
	case r.baseErr != nil:
		row.BaselineError = describeErr(r.baseErr)
	case r.base < 0 || r.base == 0 && !d.zero:
		row.BaselineError = "measured nothing (0)"
	default:
		row.BaselineValue = r.base
	}
	if row.Value > 0 && row.BaselineValue > 0 {
		row.Ratio = row.Value / row.BaselineValue
		if r.ratio > 0 {
			row.Ratio, row.Paired = r.ratio, true
		}
	}
	fillCPU(&row, r)
	row.Pass = d.judge(row)
	verdict := "FAIL"
	if row.Pass {
		verdict = "pass"
	}
	e.progress("%-9s %s: %s (%s)", d.key, verdict, summaryLine(row), row.Elapsed.Round(time.Millisecond))
	return row
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// describeErr says what failed, plainly: Unimplemented becomes "not implemented by this agent".
func describeErr(err error) string {
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unimplemented:
			return "not implemented by this agent (Unimplemented): " + st.Message()
		case codes.OK:
		default:
			return st.Code().String() + ": " + st.Message()
		}
	}
	return err.Error()
}

// rpcErr prefixes err with the RPC's name, keeping its gRPC status code (Unimplemented above all).
func rpcErr(rpc string, err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK {
		return status.Errorf(st.Code(), "%s: %s", rpc, st.Message())
	}
	return fmt.Errorf("%s: %w", rpc, err)
}

// env is what the rows share: the agent and its clients, the bare server, a temp directory.
type env struct {
	cfg   Config
	agent *localagent.Agent
	addr  string // the agent's 127.0.0.1:PORT
	conn  *grpc.ClientConn
	sc    sockagentv1.SocketServiceClient
	mc    sockagentv1.MeasureServiceClient
	ac    sockagentv1.AgentServiceClient

	bareSrv    *grpc.Server
	bareServed chan struct{}
	bareConn   *grpc.ClientConn
	bare       healthpb.HealthClient

	tmp string // binaries and scenario files; removed by close

	built    bool // buildBinaries ran: bin and buildErr hold its result
	bin      binaries
	buildErr error

	toxiStarted bool       // toxiproxyOnce ran: toxi and toxiErr hold its result
	toxi        *toxiproxy // stopped by close
	toxiErr     error
	lat         *latencyFigures // the latency rows' figures, once measured
}

// serveOn starts serve on a new 127.0.0.1:0 listener and returns its address.
func serveOn(serve func(net.Listener) error) (string, chan struct{}, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen on 127.0.0.1:0: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = serve(lis)
	}()
	return lis.Addr().String(), done, nil
}

func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func newEnv(cfg Config) (_ *env, err error) {
	e := &env{cfg: cfg}
	defer func() {
		if err != nil {
			_ = e.close()
		}
	}()
	if e.tmp, err = os.MkdirTemp("", "sockbench-"); err != nil {
		return nil, fmt.Errorf("temp directory: %w", err)
	}
	if e.agent, err = localagent.Start(agent.Config{}); err != nil {
		return nil, err
	}
	e.addr = e.agent.Addr()
	if e.conn, err = dial(e.addr); err != nil {
		return nil, fmt.Errorf("connect to the in-process agent at %s: %w", e.addr, err)
	}
	e.sc = sockagentv1.NewSocketServiceClient(e.conn)
	e.mc = sockagentv1.NewMeasureServiceClient(e.conn)
	e.ac = sockagentv1.NewAgentServiceClient(e.conn)

	e.bareSrv = grpc.NewServer()
	healthpb.RegisterHealthServer(e.bareSrv, health.NewServer())
	var bareAddr string
	if bareAddr, e.bareServed, err = serveOn(e.bareSrv.Serve); err != nil {
		return nil, fmt.Errorf("serve the bare gRPC server: %w", err)
	}
	if e.bareConn, err = dial(bareAddr); err != nil {
		return nil, fmt.Errorf("connect to the bare gRPC server at %s: %w", bareAddr, err)
	}
	e.bare = healthpb.NewHealthClient(e.bareConn)
	return e, nil
}

// close stops everything env started and reports sockets the rows left open in the agent.
func (e *env) close() error {
	var errs []error
	if e.toxi != nil {
		e.toxi.close()
	}
	if e.agent != nil {
		if n := e.agent.NumSockets(); n != 0 {
			errs = append(errs, fmt.Errorf("the rows left %d socket(s) open in the agent (a sockbench bug)", n))
		}
	}
	if e.conn != nil {
		e.conn.Close()
	}
	if e.agent != nil {
		_ = e.agent.Close()
	}
	if e.bareConn != nil {
		e.bareConn.Close()
	}
	if e.bareSrv != nil {
		e.bareSrv.Stop()
		if e.bareServed != nil {
			<-e.bareServed
		}
	}
	if e.tmp != "" {
		if err := os.RemoveAll(e.tmp); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (e *env) progress(format string, args ...any) {
	if e.cfg.Progress != nil {
		fmt.Fprintf(e.cfg.Progress, "sockbench: "+format+"\n", args...)
	}
}

// iterations picks a count by mode.
func (e *env) iterations(full, quick int) int {
	if e.cfg.Quick {
		return quick
	}
	return full
}
