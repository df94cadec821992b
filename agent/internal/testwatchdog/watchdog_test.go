package testwatchdog

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a writer the watchdog's timer goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An armed watchdog fires after its deadline, not before, with status 1 and a message.
func TestArmFires(t *testing.T) {
	var w syncBuffer
	codes := make(chan int, 1)
	start := time.Now()
	stop, err := Arm("50ms", &w, func(c int) { codes <- c })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case c := <-codes:
		if c != 1 {
			t.Errorf("exit status %d, want 1", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watchdog did not fire within 5s of a 50ms deadline")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("fired after %v, before its 50ms deadline", d)
	}
	want := "testwatchdog: the tests still run after 50ms (SOCKAGENT_TEST_WATCHDOG): taken as a hang, failing\n"
	if got := w.String(); got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

// A stopped watchdog never fires; an empty setting arms nothing; a bad one is an error that
// says what is wanted.
func TestArmStopAndBadValues(t *testing.T) {
	var w syncBuffer
	fired := make(chan int, 1)
	stop, err := Arm("30ms", &w, func(c int) { fired <- c })
	if err != nil {
		t.Fatal(err)
	}
	stop()
	noop, err := Arm("", &w, func(c int) { fired <- c })
	if err != nil || noop == nil {
		t.Fatalf("empty setting: %v", err)
	}
	noop()
	// A later watchdog that does fire bounds the wait: if the stopped one fired too, it would
	// be first.
	_, err = Arm("120ms", &w, func(c int) { fired <- c + 100 })
	if err != nil {
		t.Fatal(err)
	}
	if c := <-fired; c != 101 {
		t.Errorf("a stopped or empty watchdog fired (status %d)", c)
	}
	for _, v := range []string{"0s", "-1s", "soon"} {
		_, err := Arm(v, &w, func(int) {})
		if err == nil || !strings.Contains(err.Error(), `SOCKAGENT_TEST_WATCHDOG="`+v+`": want a positive duration such as 30s`) {
			t.Errorf("Arm(%q): %v", v, err)
		}
	}
}
