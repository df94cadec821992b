package engine

import (
	"errors"
	"testing"
)

// A served socket's error count and last error are read without a lock (GetSocket while the
// socket serves): whoever sees the count grow must see a message with it. TestServe-
// EchoesOfOneAgentDoNotLoop once read errors 1 with an empty last error, when fail counted
// before it stored the message.
func TestServeFailMessageBeforeCount(t *testing.T) {
	t.Parallel()
	for i := range 2000 {
		sv := &server{}
		go sv.fail(errors.New("boom"))
		for {
			in := sv.info()
			if in.Errors == 0 {
				continue
			}
			if in.LastError == "" {
				t.Fatalf("round %d: errors %d with no last error", i, in.Errors)
			}
			break
		}
	}
}
