package runner

import (
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Terminal control sequences of the status line: back to the line's start, and erase from
// the cursor to the end of the line.
const (
	carriageReturn = "\r"
	eraseLine      = "\x1b[K"
)

// StatusInterval is the shortest time between two drawings of the status line: a run of a
// thousand quick steps redraws it ten times a second, not a thousand.
const StatusInterval = 100 * time.Millisecond

// statusShown bounds the running steps the status line names; the rest are counted.
const statusShown = 3

// Status keeps a live status line on a terminal below the rows a Table prints as steps end:
// the elapsed time, steps done out of the total, failures, and the steps running now. Each
// row erases the line, is printed, and the line is drawn again under it, at most once per
// StatusInterval (Tick draws what was held back). Only for a terminal: the line is made of
// carriage returns and erase sequences, which a file or a pipe would keep.
type Status struct {
	mu      sync.Mutex
	table   *Table
	w       io.Writer
	width   int // of the terminal: a longer line would wrap, and \r would erase only its end
	now     func() time.Time
	start   time.Time
	total   int
	done    int
	failed  int
	running []StepReport // in the order they started
	drawn   bool         // the line is on the terminal
	last    time.Time    // when it was drawn
	shown   string       // what it showed
	buf     []byte
}

// NewStatus returns the status line of a run of total steps, drawn on w (a terminal width
// columns wide) below table's rows, which must write to w too. now is the clock (time.Now).
func NewStatus(table *Table, w io.Writer, total, width int, now func() time.Time) *Status {
	return &Status{table: table, w: w, width: max(width, 20), now: now, start: now(), total: total}
}

// Start notes that a step began (Config.OnStart).
func (s *Status) Start(r StepReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = append(s.running, r)
	s.draw()
}

// Row erases the line, prints the row of a step that ended (Config.OnStep), and draws the
// line again when StatusInterval has passed since it was last drawn.
func (s *Status) Row(r StepReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, run := range s.running {
		if run.Index == r.Index {
			s.running = append(s.running[:i], s.running[i+1:]...)
			break
		}
	}
	s.done++
	if r.Status == StatusFailed {
		s.failed++
	}
	s.erase()
	s.table.Row(r)
	s.draw()
}

// Tick draws the line if it changed (or its elapsed second did) and StatusInterval has
// passed since it was last drawn; a ticker calls it.
func (s *Status) Tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draw()
}

// Clear erases the line, for what follows the rows (the summary, diagnostics).
func (s *Status) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.erase()
}

// Every calls Tick every interval until the returned stop is called, which also erases the
// line.
func (s *Status) Every(interval time.Duration) (stop func()) {
	quit, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				s.Tick()
			}
		}
	}()
	return func() {
		close(quit)
		<-ended
		s.Clear()
	}
}

// erase takes the line off the terminal; the cursor stays at the start of its line.
func (s *Status) erase() {
	if !s.drawn {
		return
	}
	_, _ = io.WriteString(s.w, carriageReturn+eraseLine)
	s.drawn = false
}

// draw writes the line, unless it was drawn less than StatusInterval ago (the next Tick
// draws it), or the terminal shows it already.
func (s *Status) draw() {
	now := s.now()
	if now.Sub(s.last) < StatusInterval {
		return
	}
	line := s.line(now)
	if s.drawn && line == s.shown {
		return
	}
	b := append(s.buf[:0], carriageReturn...)
	b = append(append(b, line...), eraseLine...)
	s.buf = b
	_, _ = s.w.Write(b)
	s.drawn, s.last, s.shown = true, now, line
}

// line is the status line at now: "[12s] 3/10 done, 1 failed, running: 4.1 server
// accepts, 4.2 c1 connects, +2 more", cut to the terminal's width.
func (s *Status) line(now time.Time) string {
	b := make([]byte, 0, s.width+16)
	b = append(b, '[')
	b = strconv.AppendInt(b, int64(now.Sub(s.start)/time.Second), 10)
	b = append(b, "s] "...)
	b = strconv.AppendInt(b, int64(s.done), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(max(s.total, s.done+len(s.running))), 10)
	b = append(b, " done, "...)
	b = strconv.AppendInt(b, int64(s.failed), 10)
	b = append(b, " failed"...)
	for i, r := range s.running {
		if i == statusShown {
			b = append(b, ", +"...)
			b = strconv.AppendInt(b, int64(len(s.running)-i), 10)
			b = append(b, " more"...)
			break
		}
		if i == 0 {
			b = append(b, ", running: "...)
		} else {
			b = append(b, ", "...)
		}
		b = append(append(append(b, r.Index...), ' '), Printable(r.Name)...)
	}
	return cut(string(b), s.width-1)
}

// cut shortens s to n runes, its last one "~" when it was longer.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for range n - 1 {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i] + "~"
}
