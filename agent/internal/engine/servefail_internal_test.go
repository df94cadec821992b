package engine

import (
	"errors"
	"runtime"
	"testing"
)

// A served socket's error count and last error are read without a lock (GetSocket while the
// socket serves): whoever sees the count grow must see a message with it. TestServe-
// EchoesOfOneAgentDoNotLoop once read errors 1 with an empty last error, when fail counted
// before it stored the message.
func TestServeFailMessageBeforeCount(t *testing.T) {
	t.Parallel()
	// It spins, which slows every mutant of the files it does not guard (serve.go is not in
	// the mutation areas).
	stepAsideInMutation(t, "a race hunt of serve.go")
	for i := range 2000 {
		sv := &server{}
		go sv.fail(errors.New("boom"))
		for spins := 1; ; spins++ {
			in := sv.info()
			if in.Errors == 0 {
				if spins%1000 == 0 {
					runtime.Gosched() // fail has not started: the other P is busy, let it run here
				}
				continue
			}
			if in.LastError == "" {
				t.Fatalf("round %d: errors %d with no last error", i, in.Errors)
			}
			break
		}
	}
}
