// Package oneproc puts sockctl's one-shot commands on one P (runtime.GOMAXPROCS(1)) before the
// packages sockctl links are initialised. Every command but the busy ones makes an RPC or two
// and exits, and on one P spends less CPU (no idle P's spinning threads), which matters for a
// start-up budget of a few milliseconds. Set here, in a package with no dependency but the
// runtime's, it is set before almost every other package's init runs: set in main, after them,
// giving up the second P flushed what its cache held (~150 page faults, 3% of the command).
//
// sockctl's main imports it for this effect alone.
package oneproc

import (
	"os"
	"runtime"
	"slices"
)

// Busy are the commands that keep every CPU: they run agents in-process (run, demo) or move
// bytes both ways at once (attach, connect, throughput).
var Busy = []string{"run", "demo", "attach", "connect", "throughput"}

// OneShot reports whether args (the command line without the program's name) names none of
// the Busy commands.
func OneShot(args []string) bool {
	return !slices.ContainsFunc(args, func(a string) bool { return slices.Contains(Busy, a) })
}

func init() {
	if OneShot(os.Args[1:]) {
		runtime.GOMAXPROCS(1)
	}
}
