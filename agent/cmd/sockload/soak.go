package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"text/tabwriter"
	"time"

	"github.com/sockagent/sockagent/agent/internal/load"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Bounds of the soak's flags: below them a soak has too few samples to show a trend, or the
// agent too little time to reclaim the killed clients' sockets (their session's lease and
// the idle timeout sockload gives the agent it starts).
const (
	minSoak         = 10 * time.Second
	maxSoak         = 24 * time.Hour
	minSettle       = 2 * soakIdleTimeout
	soakIdleTimeout = 5 * time.Second
	minInterval     = 100 * time.Millisecond
)

func checkSoak(c load.SoakConfig) error {
	switch {
	case c.Load < minSoak || c.Load > maxSoak:
		return fmt.Errorf("-soak %s: give %s to %s", c.Load, minSoak, maxSoak)
	case c.Ramp < 0 || c.Ramp > c.Load/2:
		return fmt.Errorf("-soak-ramp %s: give 0 to half of -soak (%s)", c.Ramp, c.Load/2)
	case c.Interval < minInterval || c.Interval > (c.Load-c.Ramp)/5:
		return fmt.Errorf("-soak-interval %s: give %s to a fifth of -soak after -soak-ramp (%s), so the trend has at least 5 samples", c.Interval, minInterval, (c.Load-c.Ramp)/5)
	case c.WarmUp < 0 || c.WarmUp > c.Load:
		return fmt.Errorf("-soak-warmup %s: give 0 to -soak (%s)", c.WarmUp, c.Load)
	case c.Settle < minSettle || c.Settle > 10*time.Minute:
		return fmt.Errorf("-soak-settle %s: give %s to 10m", c.Settle, minSettle)
	}
	return nil
}

// runSoak runs the soak against the agent of -agent or one it starts, prints the figures, and
// judges them: exit 0 when every metric held, 1 otherwise.
func runSoak(ctx context.Context, o options, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, o.soak.WarmUp+o.soak.Load+o.soak.Settle+o.timeout)
	defer cancel()
	o.agentArgs = append(o.agentArgs, "--idle-timeout", soakIdleTimeout.String())
	target := o.agentAddr
	if target == "" {
		p, err := startAgent(ctx, o)
		if err != nil {
			fmt.Fprintln(stderr, "sockload:", err)
			return 1
		}
		defer p.stop()
		target = p.addr
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "sockload: the soak's clients run this program again:", err)
		return 1
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(stderr, "sockload:", err)
		return 1
	}
	defer conn.Close()
	cfg := o.soak
	cfg.Workers = o.workers
	cfg.Progress = stderr
	cfg.Client = func(ctx context.Context) *exec.Cmd {
		cmd := exec.CommandContext(ctx, self)
		cmd.Env = append(os.Environ(), clientEnv+"="+target)
		dieWithParent(cmd)
		return cmd
	}
	r, err := load.Soak(ctx, conn, cfg)
	printSoak(stdout, o, r)
	if err != nil {
		fmt.Fprintln(stderr, "sockload: soak:", err)
		return 1
	}
	if errs := load.Judge(r); len(errs) > 0 {
		fmt.Fprintln(stderr, "sockload: soak failed:", errors.Join(errs...))
		return 1
	}
	return 0
}

func printSoak(w io.Writer, o options, r load.SoakResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	s := o.soak.Load.Seconds()
	fmt.Fprintln(tw, "figure\tvalue")
	fmt.Fprintf(tw, "soak\t%s of load after %s of warm-up, a sample every %s (%d after the %s ramp judged), %d cycle workers\n", o.soak.Load, o.soak.WarmUp, o.soak.Interval, len(r.Trend()), o.soak.Ramp, o.workers)
	fmt.Fprintf(tw, "  open/use/close cycles\t%d (%.0f/s)\n", r.Cycles, float64(r.Cycles)/s)
	fmt.Fprintf(tw, "  Attach streams\t%d (%.0f/s)\n", r.Attaches, float64(r.Attaches)/s)
	fmt.Fprintf(tw, "  scenario loops in sessions\t%d (%.0f/s)\n", r.Scenarios, float64(r.Scenarios)/s)
	fmt.Fprintf(tw, "  client processes killed with SIGKILL\t%d\n", r.Kills)
	fmt.Fprintf(tw, "  settled after the load in\t%.1fs\n", r.Settled.Seconds())
	for _, m := range load.Metrics {
		peak := m.Value(r.Baseline)
		for _, x := range r.Samples {
			peak = max(peak, m.Value(x))
		}
		fmt.Fprintf(tw, "%s\tbaseline %s, peak %s, after %s (at most +%s); slope %+.2f%s/min (at most %.2f)\n", m.Name,
			num(m.Value(r.Baseline), m.Unit), num(peak, m.Unit), num(m.Value(r.After), m.Unit), num(m.Tolerance, m.Unit),
			load.Slope(m, r.Trend()), m.Unit, m.MaxSlope)
	}
}

func num(v float64, unit string) string {
	if unit == "" {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// soakClient is the process a soak kills: it connects to the agent at addr and runs
// load.SoakClient, at most a minute, should nobody kill it.
func soakClient(addr string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err == nil {
		defer conn.Close()
		err = load.SoakClient(ctx, conn, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "sockload soak client:", err)
		return 1
	}
	return 0
}
