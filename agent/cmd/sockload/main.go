// Command sockload measures what one sockagent holds: concurrent TCP connections (and the
// agent's memory per connection), concurrent blocking calls, and open/use/close cycles (and
// whether they leave the agent's fds, memory and goroutines where they started). It prints a
// table of figures and exits 1 if a property failed.
//
//	go run ./agent/cmd/sockload                      # builds and starts its own sockagent
//	go run ./agent/cmd/sockload -conns 2000 -cycles 5000
//	go run ./agent/cmd/sockload -print-policy > /tmp/load-policy.yaml
//	sockagent --policy /tmp/load-policy.yaml &
//	go run ./agent/cmd/sockload -agent 127.0.0.1:7700  # an agent on this host, by its pid
//
//	go run ./agent/cmd/sockload -soak 10m             # a soak instead: mixed load, sampled, judged
//
// The soak runs open/use/close cycles, Attach streams, scenario loops in sessions, and client
// processes that hold sockets, a session, a pending Recv and an Attach stream and are killed
// with SIGKILL, all at once; it samples the agent's RSS, open files, threads, goroutines and
// open sockets (GetInfo) every -soak-interval and fails when one trends upward past its
// stated slope (load.Metrics) or does not come back to its baseline after the load.
//
// Traffic goes to loopback only (127.0.0.0/8). Every phase is bounded in count and by -timeout.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/bufpool"
	"github.com/sockagent/sockagent/agent/internal/load"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// clientEnv, when set to an agent's address, makes this program a soak client (see
// load.SoakClient) instead of sockload: the soak starts itself again with it and kills it.
const clientEnv = "SOCKLOAD_SOAK_CLIENT"

func main() {
	if addr := os.Getenv(clientEnv); addr != "" {
		os.Exit(soakClient(addr, os.Stdout, os.Stderr))
	}
	// The agent this process runs and its gRPC clients use the pool sockagent's main
	// installs, so that the in-process figures match the process's.
	bufpool.Install()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	conns, blocking, cycles, inproc, workers int
	agentAddr, bin                           string
	timeout                                  time.Duration
	soak                                     load.SoakConfig
	agentArgs                                []string // more sockagent flags, when sockload starts it
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sockload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.conns, "conns", 10000, "concurrent TCP connections the agent holds (0 skips)")
	fs.IntVar(&o.blocking, "blocking", 1000, "concurrent blocking calls: Recv, then Accept (0 skips)")
	fs.IntVar(&o.cycles, "cycles", 100000, "open/use/close cycles against the agent process (0 skips)")
	fs.IntVar(&o.inproc, "inproc-cycles", 20000, "cycles against an in-process agent, to count its goroutines (0 skips)")
	fs.IntVar(&o.workers, "workers", 32, "concurrent workers opening connections and running cycles")
	fs.StringVar(&o.agentAddr, "agent", "", "use the agent serving plaintext on this loopback HOST:PORT (found by the pid GetInfo gives; its policy must allow the counts: see -print-policy); default: start one")
	printPolicy := fs.Bool("print-policy", false, "print the policy (sockagent --policy FILE) that allows the counts, and exit")
	fs.StringVar(&o.bin, "sockagent", "", "sockagent binary to start (default: go build it into a temporary directory)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound of the whole run (with -soak: beyond the soak's own time)")
	fs.DurationVar(&o.soak.Load, "soak", 0, "run a soak of this long instead of the other phases (see the package doc)")
	fs.DurationVar(&o.soak.WarmUp, "soak-warmup", 10*time.Second, "load before the soak's baseline is taken")
	fs.DurationVar(&o.soak.Interval, "soak-interval", 2*time.Second, "time between the soak's samples")
	fs.DurationVar(&o.soak.Ramp, "soak-ramp", 15*time.Second, "the start of the soak's load, left out of the trend: the killed clients' sockets pile up until the agent reclaims them as fast")
	fs.DurationVar(&o.soak.Settle, "soak-settle", 30*time.Second, "how long the agent may take after the soak to come back to its baseline (an agent given with -agent needs --idle-timeout below it)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sockload [flags]\n\nMeasures what one sockagent holds and prints a table of figures; exit 1 if a property\nfailed, 2 for wrong flags. Loopback only.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || o.conns < 0 || o.blocking < 0 || o.cycles < 0 || o.inproc < 0 || o.workers < 1 {
		fmt.Fprintln(stderr, "sockload: counts must be 0 or more, -workers 1 or more, and no arguments")
		return 2
	}
	if o.soak.Load != 0 {
		if err := checkSoak(o.soak); err != nil {
			fmt.Fprintln(stderr, "sockload:", err)
			return 2
		}
		return runSoak(ctx, o, stdout, stderr)
	}
	if *printPolicy {
		fmt.Fprint(stdout, load.PolicyYAML(policySize(o)))
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	t := &table{w: tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0), progress: stderr}
	fmt.Fprintln(t.w, "figure\tvalue")
	t.row("machine", fmt.Sprintf("%d cores, %s, %s/%s, %s", runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, runtime.Version()))
	err := measure(ctx, o, t)
	t.w.Flush()
	if err != nil {
		fmt.Fprintln(stderr, "sockload:", err)
		return 1
	}
	return 0
}

// table collects rows, printed aligned at the end; each is also logged to progress (stderr)
// as it is measured.
type table struct {
	w        *tabwriter.Writer
	progress io.Writer
}

func (t *table) row(figure, value string) {
	fmt.Fprintf(t.w, "%s\t%s\n", figure, value)
	fmt.Fprintf(t.progress, "sockload: %s: %s\n", strings.TrimSpace(figure), value)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func measure(ctx context.Context, o options, t *table) error {
	target := o.agentAddr
	if target == "" {
		p, err := startAgent(ctx, o)
		if err != nil {
			return err
		}
		defer p.stop()
		target = p.addr
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	sc, ac := sockagentv1.NewSocketServiceClient(conn), sockagentv1.NewAgentServiceClient(conn)
	info, err := ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		return fmt.Errorf("agent %s: %w", target, err)
	}
	proc := load.Proc(info.GetPid())
	if _, err := proc.Snap(); err != nil {
		return fmt.Errorf("agent %s (pid %d) must run on this host: %w", target, info.GetPid(), err)
	}
	t.row("agent", fmt.Sprintf("sockagent %s pid %d at %s, open-file limit %d", info.GetVersion(), info.GetPid(), target, info.GetLimits().GetOpenFilesSoft()))

	if o.conns > 0 {
		h, err := load.HoldConns(ctx, sc, ac, proc, o.conns, o.workers)
		if err != nil {
			return fmt.Errorf("hold %d connections: %w", o.conns, err)
		}
		t.row("connections held at once", fmt.Sprint(h.Conns))
		t.row("  opened and accepted in", fmt.Sprintf("%.2fs (%.0f/s, one Accept RPC each, %d workers)", h.Connect.Seconds(), float64(h.Conns)/h.Connect.Seconds(), o.workers))
		t.row("  each used both ways in", fmt.Sprintf("%.2fs (a Send and a Recv RPC per connection)", h.Check.Seconds()))
		t.row("  agent RSS idle -> holding", fmt.Sprintf("%s -> %s", mib(h.Before.RSS), mib(h.After.RSS)))
		t.row("  agent RSS per connection", fmt.Sprintf("%.1f KiB", h.PerConn()/1024))
		t.row("  agent fds idle -> holding", fmt.Sprintf("%d -> %d", h.Before.FDs, h.After.FDs))
		if err := settled(ctx, t, proc, h.Before.FDs, "  agent fds after closing all"); err != nil {
			return err
		}
	}
	if o.blocking > 0 {
		b, err := load.BlockingCalls(ctx, sc, o.blocking, o.workers)
		if err != nil {
			return fmt.Errorf("%d blocking calls: %w", o.blocking, err)
		}
		t.row("concurrent blocking Recv", fmt.Sprintf("%d pending at once (pending_calls) %.2fs after the first was sent", b.MaxPending, b.RecvPending.Seconds()))
		t.row("  all returned their own peer's bytes in", fmt.Sprintf("%.0f ms after the peers wrote", ms(b.RecvDone)))
		t.row("concurrent blocking Accept", fmt.Sprintf("%d pending at once, each returned a distinct dialed connection %.0f ms after the dials began", b.Calls, ms(b.AcceptDone)))
	}
	if o.cycles > 0 {
		before, err := proc.Snap()
		if err != nil {
			return err
		}
		c, err := load.RunCycles(ctx, sc, o.cycles, o.workers)
		if err != nil {
			return fmt.Errorf("cycles: %w", err)
		}
		t.row("open/use/close cycles (agent process)", fmt.Sprintf("%d in %.1fs: %.0f cycles/s (%d workers; Dial, Accept, Send, Recv, Close x2 = 6 RPCs each)", c.Cycles, c.Elapsed.Seconds(), c.PerSecond(), o.workers))
		if err := settled(ctx, t, proc, before.FDs, "  agent fds before -> after"); err != nil {
			return err
		}
		after, err := proc.Snap()
		if err != nil {
			return err
		}
		t.row("  agent RSS before -> after", fmt.Sprintf("%s -> %s", mib(before.RSS), mib(after.RSS)))
		t.row("  agent threads before -> after", fmt.Sprintf("%d -> %d", before.Threads, after.Threads))
		n, err := load.OpenSockets(ctx, ac)
		if err != nil {
			return err
		}
		t.row("  agent open sockets after", fmt.Sprint(n))
		if n != 0 {
			return fmt.Errorf("%d sockets open in the agent after the cycles, want 0", n)
		}
	}
	if o.inproc > 0 {
		if err := inprocCycles(ctx, o, t); err != nil {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// settled waits (at most 10s) for the agent's fd count to come back to want and prints it.
func settled(ctx context.Context, t *table, proc load.Proc, want int, figure string) error {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := load.Settle(sctx, want, proc.FDs)
	if err != nil {
		return err
	}
	t.row(figure, fmt.Sprintf("%d -> %d", want, got))
	if got > want {
		return fmt.Errorf("agent has %d fds 10s after closing, %d before", got, want)
	}
	return nil
}

// inprocCycles runs cycles against an agent in this process, served on 127.0.0.1:0, and
// compares the process's goroutines before and after: a process agent does not tell its own.
func inprocCycles(ctx context.Context, o options, t *table) error {
	pol, err := policy.Parse("sockload", []byte(load.PolicyYAML(4*o.workers+16)))
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Config{Logger: slog.New(slog.DiscardHandler), Policy: pol})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.Serve(lis)
	}()
	defer func() {
		a.Close()
		<-served
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	sc := sockagentv1.NewSocketServiceClient(conn)
	// One cycle first, so the connection's and the server's own goroutines exist already.
	if _, err := load.RunCycles(ctx, sc, 1, 1); err != nil {
		return fmt.Errorf("in-process cycles: %w", err)
	}
	before := runtime.NumGoroutine()
	c, err := load.RunCycles(ctx, sc, o.inproc, o.workers)
	if err != nil {
		return fmt.Errorf("in-process cycles: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	after, _ := load.Settle(sctx, before, func() (int, error) { return runtime.NumGoroutine(), nil })
	t.row("open/use/close cycles (in-process agent)", fmt.Sprintf("%d in %.1fs: %.0f cycles/s (agent and load share the process)", c.Cycles, c.Elapsed.Seconds(), c.PerSecond()))
	t.row("  goroutines before -> after", fmt.Sprintf("%d -> %d", before, after))
	if after > before {
		return fmt.Errorf("%d goroutines 10s after the cycles, %d before", after, before)
	}
	if n := a.NumSockets(); n != 0 {
		return fmt.Errorf("%d sockets open in the in-process agent after the cycles, want 0", n)
	}
	return nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// policySize is how many sockets and blocking calls the agent must allow one caller.
func policySize(o options) int { return max(o.conns, 2*o.blocking, 2*o.workers) + 64 }

// agentProc is a sockagent process started by sockload.
type agentProc struct {
	cmd  *exec.Cmd
	addr string
	dir  string
	done chan struct{}
}

var servingRE = regexp.MustCompile(`msg=serving.*addr=(\S+)`)

// startAgent builds (unless -sockagent) and starts sockagent on 127.0.0.1:0 with a policy
// that allows the counts asked for, and waits for its "serving" log line.
func startAgent(ctx context.Context, o options) (*agentProc, error) {
	dir, err := os.MkdirTemp("", "sockload-")
	if err != nil {
		return nil, err
	}
	p := &agentProc{dir: dir, done: make(chan struct{})}
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(dir, "sockagent")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/sockagent/sockagent/agent/cmd/sockagent").CombinedOutput()
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("go build sockagent: %v\n%s", err, out)
		}
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(load.PolicyYAML(policySize(o))), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p.cmd = exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--policy", pol}, o.agentArgs...)...)
	dieWithParent(p.cmd)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		var head []string
		for sc.Scan() { // every line is read, so the agent never blocks on a full pipe
			if !found {
				if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
					found = true
					addr <- m[1]
				} else if len(head) < 20 {
					head = append(head, sc.Text())
				}
			}
		}
		if !found {
			fmt.Fprintln(os.Stderr, strings.Join(head, "\n"))
		}
		_ = p.cmd.Wait()
	}()
	select {
	case p.addr = <-addr:
		return p, nil
	case <-p.done:
		err = errors.New("sockagent exited before serving")
	case <-time.After(20 * time.Second):
		err = errors.New("sockagent not serving after 20s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.stop()
	return nil, err
}

// stop sends SIGTERM, kills after 15s, and removes the temporary directory.
func (p *agentProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	os.RemoveAll(p.dir)
}
