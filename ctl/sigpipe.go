package ctl

import (
	"os"
	"os/signal"
	"syscall"
)

// DieOfSIGPIPE ends the process by SIGPIPE, as the other commands of a pipeline whose reader
// went away end: with SIGPIPE no longer notified, the Go runtime lets the next write to the
// broken standard output kill the process. When it does not (stdout is not a pipe any more),
// it returns, and the caller exits with ExitBrokenPipe.
func DieOfSIGPIPE() {
	signal.Reset(syscall.SIGPIPE)
	_, _ = os.Stdout.Write([]byte{'\n'})
}
