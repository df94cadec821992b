package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// SoakConfig configures Soak.
type SoakConfig struct {
	// WarmUp runs the load before the baseline is taken, so that the agent's pools, stacks and
	// threads have grown to what the load needs; Load is the measured run.
	WarmUp, Load time.Duration
	// Interval is the time between samples.
	Interval time.Duration
	// Ramp is how long the load takes to reach its steady state: the killed clients' sockets
	// pile up until their leases and the agent's idle timeout reclaim them as fast as new
	// clients leave them. Samples before it are shown but not part of the trend.
	Ramp time.Duration
	// Settle bounds how long the agent may take after the load to reclaim the sockets of the
	// killed clients (session leases, idle reaping) and come back to its baseline.
	Settle time.Duration
	// Workers run open/use/close cycles; a quarter as many (at least one) run Attach streams,
	// and as many again scenario loops.
	Workers int
	// Client, if set, makes a separate client process (see SoakClient) that holds sockets, a
	// session, a pending Recv and an Attach stream, writes "ready" on its stdout and waits; Soak
	// kills each with SIGKILL once it is ready, one after another.
	Client func(ctx context.Context) *exec.Cmd
	// Progress receives a line per sample.
	Progress io.Writer
}

// Sample is the agent's resources at one time, from GetInfo.
type Sample struct {
	At         time.Duration // since the measured load began
	RSS        int64
	FDs        int
	Threads    int
	Goroutines int
	Sockets    int
}

// Metric is one figure a soak watches, with its bounds.
type Metric struct {
	Name string
	Unit string
	// Value reads the figure from a sample.
	Value func(Sample) float64
	// MaxSlope bounds its trend during the load, in Unit per minute: the least-squares slope
	// over the load's samples.
	MaxSlope float64
	// Tolerance bounds it after the load: at most the baseline plus this.
	Tolerance float64
}

// Metrics are the figures Soak judges. The slopes allow the noise of a load whose sockets,
// calls and clients come and go every millisecond (and a thread the Go runtime adds once,
// which a short soak sees as a slope); a leak of one socket, file or goroutine every two
// seconds of load exceeds them, and any leak that outlives the load fails the return to
// baseline (the Go runtime never ends a thread, so threads count there too).
var Metrics = []Metric{
	{"rss", "MiB", func(s Sample) float64 { return float64(s.RSS) / (1 << 20) }, 4, 24},
	{"fds", "", func(s Sample) float64 { return float64(s.FDs) }, 30, 2},
	{"threads", "", func(s Sample) float64 { return float64(s.Threads) }, 6, 4},
	{"goroutines", "", func(s Sample) float64 { return float64(s.Goroutines) }, 30, 4},
	{"open sockets", "", func(s Sample) float64 { return float64(s.Sockets) }, 30, 0},
}

// SoakResult is what a soak measured.
type SoakResult struct {
	Baseline Sample   // after the warm-up, the agent idle
	Samples  []Sample // during the measured load
	Ramp     time.Duration
	After    Sample // after the load, once settled (or at the Settle bound)
	Settled  time.Duration
	// Counts of what the load did in the measured run.
	Cycles, Attaches, Scenarios, Kills int64
}

// Slope is the least-squares slope of m over the samples, per minute.
func Slope(m Metric, samples []Sample) float64 {
	n := float64(len(samples))
	if n < 2 {
		return 0
	}
	var st, sy float64
	for _, s := range samples {
		st += s.At.Minutes()
		sy += m.Value(s)
	}
	mt, my := st/n, sy/n
	var num, den float64
	for _, s := range samples {
		dt := s.At.Minutes() - mt
		num += dt * (m.Value(s) - my)
		den += dt * dt
	}
	if den == 0 {
		return 0
	}
	return num / den
}

// Trend is the samples the trend is judged on: those taken after the ramp.
func (r SoakResult) Trend() []Sample {
	for i, s := range r.Samples {
		if s.At >= r.Ramp {
			return r.Samples[i:]
		}
	}
	return nil
}

// Judge says which metrics trended upward past their slope during the load (after the ramp),
// or did not come back to the baseline after it; nil when all held.
func Judge(r SoakResult) []error {
	var errs []error
	trend := r.Trend()
	if len(trend) < 5 {
		errs = append(errs, fmt.Errorf("%d samples after the ramp: too few to judge a trend; sample more often or load longer", len(trend)))
	}
	for _, m := range Metrics {
		if s := Slope(m, trend); s > m.MaxSlope {
			errs = append(errs, fmt.Errorf("%s grew %.2f%s a minute during the load (least squares over %d samples after the ramp), more than %.2f", m.Name, s, m.Unit, len(trend), m.MaxSlope))
		}
		if b, a := m.Value(r.Baseline), m.Value(r.After); a > b+m.Tolerance {
			errs = append(errs, fmt.Errorf("%s %.1f%s after the load, baseline %.1f%s: more than %.1f above it", m.Name, a, m.Unit, b, m.Unit, m.Tolerance))
		}
	}
	return errs
}

// settledAt reports whether every metric of s is back within its tolerance of base.
func settledAt(base, s Sample) bool {
	for _, m := range Metrics {
		if m.Value(s) > m.Value(base)+m.Tolerance {
			return false
		}
	}
	return true
}

// ReadSample reads the agent's resources from GetInfo.
func ReadSample(ctx context.Context, ac sockagentv1.AgentServiceClient) (Sample, error) {
	r, err := ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{Process: true})
	if err != nil {
		return Sample{}, fmt.Errorf("get info: %w", err)
	}
	p := r.GetProcess()
	if p == nil {
		return Sample{}, errors.New("get info: the agent reports no process stats (GetInfoRequest.process); it is older than this sockload")
	}
	return Sample{RSS: int64(p.GetRssBytes()), FDs: int(p.GetOpenFiles()), Threads: int(p.GetThreads()),
		Goroutines: int(p.GetGoroutines()), Sockets: int(r.GetOpenSockets())}, nil
}

// Soak runs the mixed load against the agent behind conn: a warm-up, a baseline, the measured
// load with a sample every Interval, and the return to baseline. It returns the figures; Judge
// says whether they held. An error means the load itself failed (wrong bytes, an RPC error).
func Soak(ctx context.Context, conn grpc.ClientConnInterface, cfg SoakConfig) (r SoakResult, err error) {
	ac := sockagentv1.NewAgentServiceClient(conn)
	if _, err := ReadSample(ctx, ac); err != nil {
		return r, err
	}
	if _, err := runMixed(ctx, conn, cfg, cfg.WarmUp); err != nil {
		return r, fmt.Errorf("warm-up: %w", err)
	}
	if r.Baseline, err = settle(ctx, ac, cfg.Settle, func(s Sample) bool { return s.Sockets == 0 }); err != nil {
		return r, fmt.Errorf("after the warm-up: %w", err)
	}
	if r.Baseline.Sockets != 0 {
		return r, fmt.Errorf("%d sockets still open %s after the warm-up: the agent did not reclaim the killed clients' sockets", r.Baseline.Sockets, cfg.Settle)
	}
	// A quiet moment more, so the baseline is not taken while the last closes unwind.
	if r.Baseline, err = settle(ctx, ac, time.Second, func(Sample) bool { return false }); err != nil {
		return r, err
	}
	fmt.Fprintf(cfg.Progress, "soak: baseline %s\n", r.Baseline)
	r.Ramp = cfg.Ramp
	start := time.Now()
	stopSampling := make(chan struct{})
	sampled := make(chan error, 1)
	go func() {
		sampled <- sample(ctx, ac, cfg, start, &r.Samples, stopSampling)
	}()
	counts, lerr := runMixed(ctx, conn, cfg, cfg.Load)
	close(stopSampling)
	serr := <-sampled
	r.Cycles, r.Attaches, r.Scenarios, r.Kills = counts.cycles.Load(), counts.attaches.Load(), counts.scenarios.Load(), counts.kills.Load()
	if err := errors.Join(lerr, serr); err != nil {
		return r, err
	}
	end := time.Now()
	base := r.Baseline
	if r.After, err = settle(ctx, ac, cfg.Settle, func(s Sample) bool { return settledAt(base, s) }); err != nil {
		return r, err
	}
	r.Settled = time.Since(end)
	r.After.At = time.Since(start)
	return r, nil
}

func (s Sample) String() string {
	return fmt.Sprintf("rss %.1f MiB, fds %d, threads %d, goroutines %d, open sockets %d", float64(s.RSS)/(1<<20), s.FDs, s.Threads, s.Goroutines, s.Sockets)
}

// sample appends a sample every cfg.Interval until stop is closed.
func sample(ctx context.Context, ac sockagentv1.AgentServiceClient, cfg SoakConfig, start time.Time, out *[]Sample, stop <-chan struct{}) error {
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		s, err := ReadSample(ctx, ac)
		if err != nil {
			return err
		}
		s.At = time.Since(start)
		*out = append(*out, s)
		fmt.Fprintf(cfg.Progress, "soak: %6.1fs %s\n", s.At.Seconds(), s)
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// settle polls the agent every 250 ms until ok holds or bound passes, and returns the last
// sample.
func settle(ctx context.Context, ac sockagentv1.AgentServiceClient, bound time.Duration, ok func(Sample) bool) (Sample, error) {
	deadline := time.Now().Add(bound)
	for {
		s, err := ReadSample(ctx, ac)
		if err != nil || ok(s) || time.Now().After(deadline) {
			return s, err
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(250 * time.Millisecond): // polling interval; ok decides
		}
	}
}

// mixCounts counts what runMixed did.
type mixCounts struct{ cycles, attaches, scenarios, kills atomic.Int64 }

// runMixed runs every kind of load at once for d, then stops them and waits for them.
func runMixed(ctx context.Context, conn grpc.ClientConnInterface, cfg SoakConfig, d time.Duration) (*mixCounts, error) {
	var c mixCounts
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	deadline := time.Now().Add(d)
	running := func() bool { return lctx.Err() == nil && time.Now().Before(deadline) }
	sc := sockagentv1.NewSocketServiceClient(conn)
	ssc := sockagentv1.NewSessionServiceClient(conn)
	var wg sync.WaitGroup
	fail := func(err error) { cancel(err) }
	few := max(1, cfg.Workers/4)
	for w := range cfg.Workers {
		wg.Go(func() {
			if err := cycleLoop(lctx, sc, w, running, &c.cycles); err != nil {
				fail(fmt.Errorf("cycles: %w", err))
			}
		})
	}
	for w := range few {
		wg.Go(func() {
			if err := attachLoop(lctx, sc, w, running, &c.attaches); err != nil {
				fail(fmt.Errorf("attach: %w", err))
			}
		})
		wg.Go(func() {
			if err := scenarioLoop(lctx, sc, ssc, w, running, &c.scenarios); err != nil {
				fail(fmt.Errorf("scenario: %w", err))
			}
		})
	}
	if cfg.Client != nil {
		wg.Go(func() {
			if err := killLoop(lctx, cfg.Client, running, &c.kills); err != nil {
				fail(fmt.Errorf("killed clients: %w", err))
			}
		})
	}
	wg.Wait()
	if err := context.Cause(lctx); err != nil && !errors.Is(err, context.Canceled) {
		return &c, err
	}
	return &c, ctx.Err()
}

// cycleLoop runs open/use/close cycles (see RunCycles) on its own listener while running.
func cycleLoop(ctx context.Context, sc sockagentv1.SocketServiceClient, w int, running func() bool, n *atomic.Int64) error {
	r, err := sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer sc.Close(context.WithoutCancel(ctx), &sockagentv1.CloseRequest{SocketId: r.GetSocket().GetSocketId()})
	for i := w << 20; running(); i++ {
		if err := cycle(ctx, sc, r.GetSocket(), i); err != nil {
			return ignoreStop(ctx, err)
		}
		n.Add(1)
	}
	return nil
}

// ignoreStop is nil when ctx ended (the load was stopped, or another loop failed first).
func ignoreStop(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// attachLoop: the agent dials a listener of this process, an Attach stream carries bytes to
// it and its echo back, the peer's EOF ends the stream, and the socket is closed.
func attachLoop(ctx context.Context, sc sockagentv1.SocketServiceClient, w int, running func() bool, n *atomic.Int64) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	for i := 0; running(); i++ {
		if err := attachOnce(ctx, sc, ln, fmt.Appendf(nil, "attach %d.%d", w, i)); err != nil {
			return ignoreStop(ctx, err)
		}
		n.Add(1)
	}
	return nil
}

func attachOnce(ctx context.Context, sc sockagentv1.SocketServiceClient, ln net.Listener, msg []byte) error {
	d, err := sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: ln.Addr().String(), Timeout: dur(10 * time.Second)})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	id := d.GetSocket().GetSocketId()
	defer sc.Close(context.WithoutCancel(ctx), &sockagentv1.CloseRequest{SocketId: id})
	peer, err := ln.Accept()
	if err != nil {
		return err
	}
	echoed := make(chan error, 1)
	go func() { // the peer echoes what it reads, then closes
		defer peer.Close()
		_ = peer.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(peer, io.LimitReader(peer, int64(len(msg))))
		echoed <- err
	}()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := sc.Attach(sctx)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	if err := st.Send(&sockagentv1.AttachRequest{SocketId: id, Data: msg, CloseWrite: true}); err != nil {
		return fmt.Errorf("attach send: %w", err)
	}
	_ = st.CloseSend()
	var got []byte
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("attach recv: %w", err)
		}
		got = append(got, r.GetData()...)
	}
	if err := <-echoed; err != nil {
		return fmt.Errorf("peer echo: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("attach echoed %q, sent %q", got, msg)
	}
	return nil
}

// scenarioLoop is a scenario's life in a session, as sockctl run drives one: open a session,
// listen, dial, accept, send and receive both ways, exchange datagrams, and end the session,
// which closes every socket in it.
func scenarioLoop(ctx context.Context, sc sockagentv1.SocketServiceClient, ssc sockagentv1.SessionServiceClient, w int, running func() bool, n *atomic.Int64) error {
	for i := 0; running(); i++ {
		if err := scenarioOnce(ctx, sc, ssc, fmt.Sprintf("soak-%d-%d", w, i)); err != nil {
			return ignoreStop(ctx, err)
		}
		n.Add(1)
	}
	return nil
}

func scenarioOnce(ctx context.Context, sc sockagentv1.SocketServiceClient, ssc sockagentv1.SessionServiceClient, name string) error {
	ses, err := ssc.OpenSession(ctx, &sockagentv1.OpenSessionRequest{Ttl: dur(10 * time.Second), Name: name})
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	sid := ses.GetSession().GetSessionId()
	defer ssc.CloseSession(context.WithoutCancel(ctx), &sockagentv1.CloseSessionRequest{SessionId: sid})
	in := metadata.AppendToOutgoingContext(ctx, contract.SessionHeader, sid)
	lis, err := sc.Listen(in, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	cli, err := sc.Dial(in, &sockagentv1.DialRequest{Network: "tcp", Address: lis.GetSocket().GetLocalAddress(), Timeout: dur(10 * time.Second)})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	srv, err := sc.Accept(in, &sockagentv1.AcceptRequest{SocketId: lis.GetSocket().GetSocketId(), Timeout: dur(10 * time.Second)})
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	if err := sendRecv(ctx, sc, cli.GetSocket().GetSocketId(), srv.GetSocket().GetSocketId(), []byte("Hello, "+name)); err != nil {
		return err
	}
	if err := sendRecv(ctx, sc, srv.GetSocket().GetSocketId(), cli.GetSocket().GetSocketId(), []byte("Bye, "+name)); err != nil {
		return err
	}
	a, err := sc.Bind(in, &sockagentv1.BindRequest{Network: "udp4", Address: "127.0.0.1:0"})
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	b, err := sc.Bind(in, &sockagentv1.BindRequest{Network: "udp4", Address: "127.0.0.1:0"})
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	msg := []byte("datagram " + name)
	if _, err := sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: a.GetSocket().GetSocketId(), Address: b.GetSocket().GetLocalAddress(), Data: msg}); err != nil {
		return fmt.Errorf("sendto: %w", err)
	}
	got, err := sc.RecvFrom(ctx, &sockagentv1.RecvFromRequest{SocketId: b.GetSocket().GetSocketId(), MaxBytes: 1024, Timeout: dur(10 * time.Second)})
	if err != nil {
		return fmt.Errorf("recvfrom: %w", err)
	}
	if !bytes.Equal(got.GetData(), msg) || got.GetAddress() != a.GetSocket().GetLocalAddress() {
		return fmt.Errorf("recvfrom: %q from %s, want %q from %s", got.GetData(), got.GetAddress(), msg, a.GetSocket().GetLocalAddress())
	}
	if _, err := ssc.CloseSession(ctx, &sockagentv1.CloseSessionRequest{SessionId: sid}); err != nil {
		return fmt.Errorf("close session: %w", err)
	}
	return nil
}

func sendRecv(ctx context.Context, sc sockagentv1.SocketServiceClient, from, to string, msg []byte) error {
	if _, err := sc.Send(ctx, &sockagentv1.SendRequest{SocketId: from, Data: msg}); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	r, err := sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: to, ExactBytes: uint32(len(msg)), Timeout: dur(10 * time.Second)})
	if err != nil {
		return fmt.Errorf("recv: %w", err)
	}
	if !bytes.Equal(r.GetData(), msg) {
		return fmt.Errorf("recv %q, sent %q", r.GetData(), msg)
	}
	return nil
}

// killEvery paces the killed clients: each leaves a session for SoakClientTTL, and a caller
// may hold 64 sessions (the default limits.sessions) with the scenario loops' besides.
const killEvery = 250 * time.Millisecond

// killLoop starts a client process, waits (at most 10 s) for it to say it is ready, kills it
// with SIGKILL, and starts the next killEvery after the last, while running.
func killLoop(ctx context.Context, client func(context.Context) *exec.Cmd, running func() bool, n *atomic.Int64) error {
	pace := time.NewTicker(killEvery)
	defer pace.Stop()
	for running() {
		if err := killOnce(ctx, client); err != nil {
			return ignoreStop(ctx, err)
		}
		n.Add(1)
		select {
		case <-pace.C:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

func killOnce(ctx context.Context, client func(context.Context) *exec.Cmd) error {
	cmd := client(ctx)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start client: %w", err)
	}
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line == "ready\n"
	}()
	var ok bool
	select {
	case ok = <-ready:
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	werr := cmd.Wait()
	if !ok && ctx.Err() == nil {
		return fmt.Errorf("client not ready within 10s (%v): %s", werr, stderr.Bytes())
	}
	return nil
}

// SoakClientTTL is the lease of a soak client's session: the agent reclaims its sockets this
// long after the client is killed.
const SoakClientTTL = 2 * time.Second

// SoakClient is the body of a client process that Soak kills: in a session of SoakClientTTL it
// holds a listener, a connection both ways, a pending Recv on one end and an Attach stream on
// the other (nothing is written, so both stay pending); outside any session a UDP socket (the agent's idle reaping reclaims it). Then it writes
// "ready\n" to out and waits until ctx ends, which in a soak it never sees: it is killed.
func SoakClient(ctx context.Context, conn grpc.ClientConnInterface, out io.Writer) error {
	sc := sockagentv1.NewSocketServiceClient(conn)
	ssc := sockagentv1.NewSessionServiceClient(conn)
	ses, err := ssc.OpenSession(ctx, &sockagentv1.OpenSessionRequest{Ttl: dur(SoakClientTTL), Name: "soak client"})
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	in := metadata.AppendToOutgoingContext(ctx, contract.SessionHeader, ses.GetSession().GetSessionId())
	lis, err := sc.Listen(in, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	cli, err := sc.Dial(in, &sockagentv1.DialRequest{Network: "tcp", Address: lis.GetSocket().GetLocalAddress(), Timeout: dur(10 * time.Second)})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	srv, err := sc.Accept(in, &sockagentv1.AcceptRequest{SocketId: lis.GetSocket().GetSocketId(), Timeout: dur(10 * time.Second)})
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	if _, err := sc.Bind(ctx, &sockagentv1.BindRequest{Network: "udp4", Address: "127.0.0.1:0"}); err != nil {
		return fmt.Errorf("bind outside a session: %w", err)
	}
	recv := make(chan error, 1)
	go func() {
		_, err := sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: srv.GetSocket().GetSocketId(), MaxBytes: 1024, Timeout: dur(time.Minute)})
		recv <- err
	}()
	st, err := sc.Attach(ctx)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	if err := st.Send(&sockagentv1.AttachRequest{SocketId: cli.GetSocket().GetSocketId()}); err != nil {
		return fmt.Errorf("attach send: %w", err)
	}
	fmt.Fprintln(out, "ready")
	select {
	case <-ctx.Done():
		return nil
	case err := <-recv:
		if ctx.Err() != nil { // the Recv ended because ctx did
			return nil
		}
		return fmt.Errorf("recv returned before the client was killed: %v", err)
	}
}
