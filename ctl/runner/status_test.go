package runner

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(d)
}

func newFakeStatus(total, width int) (*Status, *bytes.Buffer, *fakeClock) {
	var out bytes.Buffer
	c := &fakeClock{}
	c.set(0)
	return NewStatus(NewTable(&out, nil), &out, total, width, c.now), &out, c
}

// The status line of a small run, byte for byte: drawn when a step starts, erased before
// each row and drawn again after it, held back (and drawn by Tick) when it was drawn less
// than StatusInterval ago, not drawn again when it would show the same, erased at the end.
func TestStatusBytes(t *testing.T) {
	t.Parallel()
	s, out, c := newFakeStatus(3, 80)
	const (
		cr, el = "\r", "\x1b[K"
		erase  = cr + el
		header = "STEP       AGENT      ACTION    RESULT  DURATION  DETAIL\n"
	)
	var want strings.Builder
	s.Start(StepReport{Index: "1", Name: "listen lis", Agent: "a", Action: "listen"})
	want.WriteString(cr + "[0s] 0/3 done, 0 failed, running: 1 listen lis" + el)
	c.set(50 * time.Millisecond)
	s.Row(StepReport{Index: "1", Name: "listen lis", Agent: "a", Action: "listen", Status: StatusPassed, DurationMS: 1.5, Message: "s1 listening"})
	want.WriteString(erase + header + "1          a          listen    ok         1.5ms  s1 listening\n") // 50ms after: held back
	c.set(120 * time.Millisecond)
	s.Tick()
	want.WriteString(cr + "[0s] 1/3 done, 0 failed" + el)
	c.set(130 * time.Millisecond)
	s.Start(StepReport{Index: "2.1", Name: "accept lis"})
	s.Start(StepReport{Index: "2.2", Name: "c1 \x1b[31mconnects"}) // control bytes shown escaped
	c.set(1300 * time.Millisecond)
	s.Tick()
	want.WriteString(cr + `[1s] 1/3 done, 0 failed, running: 2.1 accept lis, 2.2 c1 \x1b[31mconnects` + el)
	c.set(1500 * time.Millisecond)
	s.Row(StepReport{Index: "2.1", Agent: "a", Action: "accept", Status: StatusFailed, Reason: "TIMEOUT", DurationMS: 1000, Message: "no peer"})
	want.WriteString(erase + "2.1        a          accept    FAIL          1s  TIMEOUT: no peer\n")
	want.WriteString(cr + `[1s] 2/3 done, 1 failed, running: 2.2 c1 \x1b[31mconnects` + el)
	c.set(1700 * time.Millisecond)
	s.Tick() // shows the same: not drawn
	c.set(2100 * time.Millisecond)
	s.Tick() // the elapsed second changed
	want.WriteString(cr + `[2s] 2/3 done, 1 failed, running: 2.2 c1 \x1b[31mconnects` + el)
	c.set(2500 * time.Millisecond)
	s.Row(StepReport{Index: "2.2", Agent: "b", Action: "dial", Status: StatusSkipped, Message: "cancelled"})
	want.WriteString(erase + "2.2        b          dial      skip           -  cancelled\n")
	want.WriteString(cr + "[2s] 3/3 done, 1 failed" + el)
	s.Clear()
	want.WriteString(erase)
	s.Clear() // not drawn: nothing to erase
	if got := out.String(); got != want.String() {
		t.Errorf("terminal got\n%q\nwant\n%q", got, want.String())
	}
}

// A line longer than the terminal is cut to its width less one column (a full line would
// wrap, and the carriage return would then erase only its second half); beyond three
// running steps the rest are counted; the total grows when more steps run than were
// counted (an inventory's labels fan a step out wider).
func TestStatusLineFits(t *testing.T) {
	t.Parallel()
	s, out, c := newFakeStatus(1, 40)
	for i, name := range []string{"a", "b", "c", "d", "e"} {
		c.set(time.Duration(i) * time.Second)
		s.Start(StepReport{Index: name, Name: "x"})
	}
	got := out.String()
	lines := strings.Split(got, "\r")
	last := strings.TrimSuffix(lines[len(lines)-1], "\x1b[K")
	if want := "[4s] 0/5 done, 0 failed, running: a x,~"; last != want {
		t.Errorf("last line %q, want %q", last, want)
	}
	if n := len([]rune(last)); n != 39 {
		t.Errorf("line of %d columns on a terminal of 40", n)
	}
	wide, _, _ := newFakeStatus(1, 200)
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		wide.running = append(wide.running, StepReport{Index: name, Name: "x"})
	}
	if got, want := wide.line(wide.now()), "[0s] 0/5 done, 0 failed, running: a x, b x, c x, +2 more"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	wide.running = wide.running[:3]
	if got, want := wide.line(wide.now()), "[0s] 0/3 done, 0 failed, running: a x, b x, c x"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	if got := cut("héllo wörld", 5); got != "héll~" {
		t.Errorf("cut: %q", got)
	}
	if got := cut("héllo", 5); got != "héllo" {
		t.Errorf("cut: %q", got)
	}
	narrow, _, _ := newFakeStatus(1, 3) // narrower than any line: 20 columns are assumed
	if got := narrow.line(narrow.now()); len(got) != 19 {
		t.Errorf("line %q on a terminal of 3 columns: want 19 (20 less one)", got)
	}
}

// Every draws the line on its own while the run waits, and its stop erases the line and
// ends the ticker (goleak checks the goroutine).
func TestStatusEvery(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var out bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	})
	c := &fakeClock{}
	c.set(0)
	s := NewStatus(NewTable(w, nil), w, 2, 80, c.now)
	s.Start(StepReport{Index: "1", Name: "sleep"})
	c.set(3 * time.Second)
	stop := s.Every(time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		drawn := strings.Contains(out.String(), "[3s] 0/2 done")
		mu.Unlock()
		if drawn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ticker did not draw the line within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	if got := out.String(); !strings.HasSuffix(got, "\x1b[K\r\x1b[K") {
		t.Errorf("stop did not erase the line: %q", got)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// The line is drawn again once StatusInterval has passed since it was drawn, not before.
func TestStatusInterval(t *testing.T) {
	t.Parallel()
	s, out, c := newFakeStatus(2, 80)
	s.Start(StepReport{Index: "1", Name: "a"})
	c.set(StatusInterval - time.Nanosecond)
	s.Start(StepReport{Index: "2", Name: "b"})
	if got, want := out.String(), "\r[0s] 0/2 done, 0 failed, running: 1 a\x1b[K"; got != want {
		t.Errorf("before the interval: %q, want %q", got, want)
	}
	c.set(StatusInterval)
	s.Tick()
	if got, want := out.String(), "\r[0s] 0/2 done, 0 failed, running: 1 a\x1b[K\r[0s] 0/2 done, 0 failed, running: 1 a, 2 b\x1b[K"; got != want {
		t.Errorf("at the interval: %q, want %q", got, want)
	}
}
