package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Exit codes of Main.
const (
	ExitPass  = 0 // every row passed
	ExitFail  = 1 // a row failed, or the run could not start
	ExitUsage = 2 // bad flags
)

const usage = `Usage: sockbench [--quick] [--only REGEX] [--seconds N] [-o table|json|markdown]

Sockbench measures sockagent's performance figures, each beside a baseline measured in the
same run (raw Go TCP/UDP, iperf3, a bare gRPC server, a bare Go client), and prints one
table: figure, value, baseline, value, ratio, target, result. An agent, the baselines and
their peers run in this process on 127.0.0.1; the sockctl row builds sockctl with go build,
so run it from the source tree (.ci/bench installs iperf3 and runs it).

Rows (--only matches the key or the figure):
%s
Exit status: 0 every row passed; 1 a row failed; 2 bad flags.

Flags:
`

// Main runs sockbench with args (without the program name), printing the report to stdout and
// progress to stderr, and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("sockbench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "short smoke run: 0.3s per throughput side (unless --seconds), fewer iterations")
	only := fs.String("only", "", "run only the rows whose key or figure matches `REGEX`")
	seconds := fs.Float64("seconds", 3, "how long each side of a throughput row runs, in `N` seconds")
	output := fs.StringP("output", "o", "table", "report format: table, json or markdown")
	fs.Usage = func() {
		var rows strings.Builder
		for _, d := range defs() {
			fmt.Fprintf(&rows, "  %-9s %s vs %s: %s\n", d.key, d.figure, d.baseline, d.target)
		}
		fmt.Fprintf(stderr, usage, rows.String())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return ExitPass
		}
		fmt.Fprintf(stderr, "sockbench: %v (see sockbench --help)\n", err)
		return ExitUsage
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sockbench: "+format+" (see sockbench --help)\n", a...)
		return ExitUsage
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q: sockbench takes flags only", fs.Arg(0))
	}
	cfg := Config{Quick: *quick, Progress: stderr}
	if fs.Changed("seconds") || !*quick {
		if *seconds <= 0 || *seconds > 600 || *seconds != *seconds {
			return usageErr("--seconds %v: give a duration from above 0 up to 600", *seconds)
		}
		cfg.Seconds = time.Duration(*seconds * float64(time.Second))
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return usageErr("--only %q is not a regular expression: %v", *only, err)
		}
		cfg.Only = re
		n := 0
		for _, d := range defs() {
			if selected(re, d) {
				n++
			}
		}
		if n == 0 {
			return usageErr("--only %q matches none of the rows: %s", *only, strings.Join(Keys(), ", "))
		}
	}
	write := map[string]func(io.Writer, *Report) error{"table": WriteTable, "json": WriteJSON, "markdown": WriteMarkdown}[*output]
	if write == nil {
		return usageErr("-o %q: give table, json or markdown", *output)
	}

	rep, err := Run(ctx, cfg)
	if rep != nil {
		if werr := write(stdout, rep); werr != nil {
			fmt.Fprintf(stderr, "sockbench: write the report: %v\n", werr)
			return ExitFail
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "sockbench: %v\n", err)
		return ExitFail
	}
	if !rep.Pass {
		return ExitFail
	}
	return ExitPass
}
