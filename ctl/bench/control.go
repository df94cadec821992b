package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/metrics"
	"github.com/sockagent/sockagent/ctl"
	"github.com/sockagent/sockagent/ctl/bench/bareclient"
	"github.com/sockagent/sockagent/ctl/localagent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// bareCheck makes one health Check on the plain grpc-go server.
func (e *env) bareCheck(ctx context.Context) error {
	r, err := e.bare.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("bare health Check: %w", err)
	}
	if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("bare health Check: %s, want SERVING", r.GetStatus())
	}
	return nil
}

// alternate runs fig and base in turn n times (after warm rounds), timing each call, and
// returns the medians in seconds, and as the ratio the median of the rounds' own ratios (fig
// over base, timed back to back): drift and noise that last longer than a round fall on both
// sides of it alike. Against the same call on both sides (an A/A run of the dialopts row),
// that ratio reads 0.998-1.002 where the ratio of the two medians reads 0.993-1.012. Which
// goes first swaps every round.
//
// In a round each side runs twice in a row and only its second call is timed. A call pays
// for the work its predecessor left running (gRPC's pings after a response, a writer's
// flush, a connection's close, a process's exit), and that predecessor must be of its own
// kind: when it is the other side's, whichever leaves more behind has it charged to the other.
// Timed straight after each other, a bare health Check costs a Send 6.7 µs more than Send's
// own Recv does (27.8 µs against 21.1 µs), and a Recv costs the Check 3.6 µs more than a
// Check does (26.5 µs against 22.9 µs): the rounds fell into two clusters (1.6x and 2.1x for
// Send+Recv), and their median ratio was whichever cluster's edge the noise picked. A failing
// side stops being run; the other goes on.
func alternate(ctx context.Context, n, warm int, fig, base func(context.Context) error) result {
	return alternateOn(ctx, time.Now, n, warm, fig, base)
}

// alternateOn is alternate timed by clock.
func alternateOn(ctx context.Context, clock func() time.Time, n, warm int, fig, base func(context.Context) error) result {
	var r result
	var fs, bs []time.Duration
	var ratios []float64
	// side runs f untimed, then timed; the time goes into into after the warm rounds.
	side := func(i int, f func(context.Context) error, err *error, into *[]time.Duration) time.Duration {
		if *err != nil {
			return 0
		}
		if *err = f(ctx); *err != nil {
			return 0
		}
		t0 := clock()
		*err = f(ctx)
		d := clock().Sub(t0)
		if *err != nil || i < warm {
			return 0
		}
		*into = append(*into, d)
		return d
	}
	for i := range warm + n {
		var f, b time.Duration
		if i%2 == 0 {
			f = side(i, fig, &r.err, &fs)
			b = side(i, base, &r.baseErr, &bs)
		} else {
			b = side(i, base, &r.baseErr, &bs)
			f = side(i, fig, &r.err, &fs)
		}
		if f > 0 && b > 0 {
			ratios = append(ratios, float64(f)/float64(b))
		}
		if ctx.Err() != nil {
			break
		}
	}
	r.value, r.base, r.ratio = median(fs).Seconds(), median(bs).Seconds(), median(ratios)
	return r
}

// tcpPair opens a listener, a connection to it and the accepted end on the agent; closeFn
// closes all three.
func (e *env) tcpPair(ctx context.Context) (cli, srv string, closeFn func(), err error) {
	return tcpPairOn(ctx, e.sc)
}

// tcpPairOn is tcpPair on the agent sc reaches.
func tcpPairOn(ctx context.Context, sc sockagentv1.SocketServiceClient) (cli, srv string, closeFn func(), err error) {
	var ids []string
	closeFn = func() {
		for _, id := range ids {
			closeSocketOn(sc, id)
		}
	}
	defer func() {
		if err != nil {
			closeFn()
		}
	}()
	l, err := sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		return "", "", nil, rpcErr("Listen", err)
	}
	ids = append(ids, l.GetSocket().GetSocketId())
	d, err := sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: l.GetSocket().GetLocalAddress(), Timeout: durationpb.New(closeBudget)})
	if err != nil {
		return "", "", nil, rpcErr("Dial", err)
	}
	ids = append(ids, d.GetSocket().GetSocketId())
	a, err := sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: l.GetSocket().GetSocketId(), Timeout: durationpb.New(closeBudget)})
	if err != nil {
		return "", "", nil, rpcErr("Accept", err)
	}
	ids = append(ids, a.GetSocket().GetSocketId())
	return d.GetSocket().GetSocketId(), a.GetSocket().GetSocketId(), closeFn, nil
}

// sendRecv sends payload on cli and receives exactly it on srv.
func sendRecv(ctx context.Context, sc sockagentv1.SocketServiceClient, cli, srv string, payload []byte) error {
	if _, err := sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: payload}); err != nil {
		return rpcErr("Send", err)
	}
	r, err := sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: srv, ExactBytes: uint32(len(payload)), Timeout: durationpb.New(closeBudget)})
	if err != nil {
		return rpcErr("Recv", err)
	}
	if !bytes.Equal(r.GetData(), payload) {
		return fmt.Errorf("recv got %q, want %q", r.GetData(), payload)
	}
	return nil
}

// metricsRow alternates Send+Recv on the bench's agent (metrics off) with the same on a second
// in-process agent whose metrics are on, scraped meanwhile as Prometheus would.
func metricsRow(ctx context.Context, e *env) result {
	on, err := localagent.Start(agent.Config{Metrics: metrics.New})
	if err != nil {
		return result{err: err}
	}
	defer on.Close()
	conn, err := dial(on.Addr())
	if err != nil {
		return result{err: err}
	}
	defer conn.Close()
	onSC := sockagentv1.NewSocketServiceClient(conn)
	onCli, onSrv, closeOn, err := tcpPairOn(ctx, onSC)
	if err != nil {
		return result{err: err}
	}
	defer closeOn()
	cli, srv, closeOff, err := e.tcpPair(ctx)
	if err != nil {
		return result{err: err}
	}
	defer closeOff()
	// A scrape a second, as a Prometheus would: its cost lands on the agent between calls.
	scrapeCtx, stopScrape := context.WithCancel(ctx)
	defer stopScrape()
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-scrapeCtx.Done():
				return
			case <-tick.C:
				rec := httptest.NewRecorder()
				on.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			}
		}
	}()
	payload := pattern(pingSize)
	return alternate(ctx, e.iterations(2000, 200), 20,
		func(ctx context.Context) error { return sendRecv(ctx, onSC, onCli, onSrv, payload) },
		func(ctx context.Context) error { return sendRecv(ctx, e.sc, cli, srv, payload) })
}

func sendRecvRow(ctx context.Context, e *env) result {
	cli, srv, closeFn, err := e.tcpPair(ctx)
	if err != nil {
		return result{err: err}
	}
	defer closeFn()
	payload := pattern(pingSize)
	return alternate(ctx, e.iterations(2000, 200), 20,
		func(ctx context.Context) error { return sendRecv(ctx, e.sc, cli, srv, payload) },
		e.bareCheck)
}

func getInfoRow(ctx context.Context, e *env) result {
	return alternate(ctx, e.iterations(2000, 200), 20,
		func(ctx context.Context) error {
			r, err := e.ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
			if err != nil {
				return rpcErr("GetInfo", err)
			}
			if r.GetInstanceId() == "" {
				return fmt.Errorf("GetInfo: no instance_id")
			}
			return nil
		},
		e.bareCheck)
}

// modulePath is the module sockbench builds sockctl from.
const modulePath = "github.com/sockagent/sockagent"

// moduleRoot finds the sockagent source tree around the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 64 {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			line, _, _ := strings.Cut(string(data), "\n")
			if strings.TrimSpace(line) == "module "+modulePath {
				return dir, nil
			}
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("not inside the sockagent source tree (no go.mod of %s above the working directory); run sockbench from the repository, it builds sockctl with go build", modulePath)
}

// binaries are the programs the sockctl row runs.
type binaries struct {
	sockctl, bare, bareScenario, nothing string
}

// buildBinaries builds sockctl, the bare clients and the empty program into e.tmp, once.
func (e *env) buildBinaries(ctx context.Context) (binaries, error) {
	if e.built {
		return e.bin, e.buildErr
	}
	e.bin, e.buildErr = e.build(ctx)
	e.built = true
	return e.bin, e.buildErr
}

func (e *env) build(ctx context.Context) (binaries, error) {
	pkgs := []string{"./ctl/cmd/sockctl", "./ctl/bench/testdata/bareinfo", "./ctl/bench/testdata/barescenario", "./ctl/bench/testdata/nothing"}
	b := binaries{filepath.Join(e.tmp, "sockctl"), filepath.Join(e.tmp, "bareinfo"), filepath.Join(e.tmp, "barescenario"), filepath.Join(e.tmp, "nothing")}
	root, err := moduleRoot()
	if err != nil {
		return b, err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return b, fmt.Errorf("go not found in PATH: the sockctl row builds sockctl with go build")
	}
	e.progress("%-9s go build %s", "sockctl", strings.Join(pkgs, " "))
	// Built as the README says to build binaries to install: static (CGO_ENABLED=0: no
	// dynamic loader and libc to map at every start) and without DWARF and the symbol table
	// (-s -w: a smaller file, fewer page faults at every start).
	cmd := exec.CommandContext(ctx, goBin, append([]string{"build", "-ldflags=-s -w", "-o", e.tmp + string(filepath.Separator)}, pkgs...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return b, fmt.Errorf("go build in %s: %w\n%s", root, err, out)
	}
	return b, nil
}

// runBinary returns a func running bin with args to its exit (alternate times it).
func runBinary(bin string, args ...string) func(context.Context) error {
	return func(ctx context.Context) error {
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		dieWithParent(cmd)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return nil
	}
}

// sockctlRow alternates `sockctl --agent ADDR info` with a bare Go binary making the same
// GetInfo call, timing each process from start to exit; the note gives the floor, an empty Go
// program's wall time.
func sockctlRow(ctx context.Context, e *env) result {
	bin, err := e.buildBinaries(ctx)
	if err != nil {
		return result{err: err, baseErr: err}
	}
	n := e.iterations(30, 3)
	r := alternate(ctx, n, 2, runBinary(bin.sockctl, "--agent", e.addr, "info"), runBinary(bin.bare, e.addr))
	if floor := alternate(ctx, n, 1, runBinary(bin.nothing), func(context.Context) error { return nil }); floor.err == nil {
		r.note = "an empty Go program takes " + formatSeconds(floor.value) + " here"
	}
	return r
}

// scenarioPairs is how many send+recv pairs the scenario has: with listen, dial, accept and
// three closes, 1,000 steps.
const scenarioPairs = 497

// writeScenario writes the 1,000-step scenario for the agent at addr.
func writeScenario(path, addr string) error {
	data := string(pattern(pingSize))
	s := fmt.Sprintf(`name: sockbench 1000 steps
agents: {a: %q}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: a, dial: {network: tcp, address: "${lis.local_address}", timeout: 5s}, as: cli}
  - {on: a, accept: {socket: lis, timeout: 5s}, as: srv}
  - repeat:
      count: %d
      steps:
        - {on: a, send: {socket: cli, data: %q}}
        - {on: a, recv: {socket: srv, exact_bytes: %d, timeout: 5s}, expect: {data: %q}}
  - {on: a, close: {socket: cli}}
  - {on: a, close: {socket: srv}}
  - {on: a, close: {socket: lis}}
`, addr, scenarioPairs, data, pingSize, data)
	return os.WriteFile(path, []byte(s), 0o644)
}

// runScenario runs the scenario file through sockctl's own entry point, in this process.
func runScenario(path string) func(context.Context) error {
	return func(ctx context.Context) error {
		var out, errb bytes.Buffer
		if code := ctl.Main(ctx, []string{"run", path}, nil, &out, &errb); code != ctl.ExitOK {
			return fmt.Errorf("sockctl run %s: exit %d: %s%s", path, code, tail(out.String(), 5), strings.TrimSpace(errb.String()))
		}
		return nil
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// scenarioRow alternates `sockctl run` of the scenario with the bare client, both as
// processes of their own (the built sockctl binary and barescenario), as sockctl meets an
// agent; the note gives the same alternation inside this process (ctl.Main and
// bareclient.Scenario), where the runner shares the agent's runtime: its garbage collections
// stop the agent too, and the two share this process's two Ps.
func scenarioRow(ctx context.Context, e *env) result {
	path := filepath.Join(e.tmp, "scenario-1000.yaml")
	if err := writeScenario(path, e.addr); err != nil {
		return result{err: err}
	}
	bin, err := e.buildBinaries(ctx)
	if err != nil {
		return result{err: err, baseErr: err}
	}
	payload := pattern(pingSize)
	r := alternate(ctx, e.iterations(21, 1), e.iterations(2, 0),
		runBinary(bin.sockctl, "run", path), runBinary(bin.bareScenario, e.addr, strconv.Itoa(scenarioPairs), string(payload)))
	in := alternate(ctx, e.iterations(21, 1), e.iterations(2, 0), runScenario(path),
		func(ctx context.Context) error { return bareclient.Scenario(ctx, e.addr, scenarioPairs, payload) })
	if in.err == nil && in.baseErr == nil {
		r.note = fmt.Sprintf("in one process with the agent: %s vs %s, %.2fx", formatSeconds(in.value), formatSeconds(in.base), in.ratio)
	}
	return r
}

// benchOptions are the socket options of the dialopts row: one of each kind the kernel
// takes before connect and after.
func benchOptions() *sockagentv1.SocketOptions {
	return &sockagentv1.SocketOptions{
		NoDelay: proto.Bool(true), Ttl: proto.Uint32(64), RecvBuffer: proto.Uint32(128 << 10),
		Keepalive: &sockagentv1.Keepalive{Enabled: proto.Bool(true), Idle: durationpb.New(30 * time.Second),
			Interval: durationpb.New(5 * time.Second), Count: proto.Uint32(3)},
	}
}

// dialClose dials peer from the agent with opts (nil: none) and closes the socket.
func (e *env) dialClose(ctx context.Context, peer string, opts *sockagentv1.SocketOptions) error {
	d, err := e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: peer, Timeout: durationpb.New(closeBudget), Options: opts})
	if err != nil {
		return rpcErr("Dial", err)
	}
	if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: d.GetSocket().GetSocketId()}); err != nil {
		return rpcErr("Close", err)
	}
	return nil
}

func dialOptionsRow(ctx context.Context, e *env) result {
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{err: err}
	}
	defer peer.Close()
	go func() { // takes and closes every connection until the listener closes
		for {
			c, err := peer.Accept()
			if err != nil {
				return
			}
			// With a FIN, not a reset: a reset can reach the agent's socket before its connect
			// has returned, and fail the Dial.
			_ = c.Close()
		}
	}()
	addr, opts := peer.Addr().String(), benchOptions()
	// 5000 pairs: a Dial+Close varies more than a unary call (a TCP handshake, a close), and
	// the difference looked for is a few microseconds in 150.
	return alternate(ctx, e.iterations(5000, 200), 20,
		func(ctx context.Context) error { return e.dialClose(ctx, addr, opts) },
		func(ctx context.Context) error { return e.dialClose(ctx, addr, nil) })
}
