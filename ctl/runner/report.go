package runner

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/ctl/scenario"
)

// Report is the result of one run; `sockctl run -o json` prints it as is. Field names are
// stable.
type Report struct {
	Name        string          `json:"name"`
	File        string          `json:"file"`
	Passed      int             `json:"passed"`
	Failed      int             `json:"failed"`
	Skipped     int             `json:"skipped"`
	DurationMS  float64         `json:"duration_ms"`
	Interrupted bool            `json:"interrupted,omitempty"`
	Unreachable []string        `json:"unreachable,omitempty"`
	Agents      []AgentReport   `json:"agents"`
	Steps       []StepReport    `json:"steps"`
	Cleanup     []CleanupReport `json:"cleanup"`
}

// AgentReport is one agent of the run.
type AgentReport struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// StepReport is one action step's result.
type StepReport struct {
	Index      string  `json:"index"` // "3", "4.2" (parallel), "5[0].1" (repeat iteration 0)
	Name       string  `json:"name"`
	Line       int     `json:"line"`
	Agent      string  `json:"agent"`
	Action     string  `json:"action"`
	Detail     string  `json:"detail,omitempty"` // the action with its arguments expanded
	Status     string  `json:"status"`           // passed, failed, skipped
	Reason     string  `json:"reason,omitempty"` // ErrorInfo reason, or AGENT_UNAVAILABLE, STEP_TIMEOUT, EXPECTATION_FAILED, SCENARIO_ERROR
	Message    string  `json:"message,omitempty"`
	Socket     string  `json:"socket,omitempty"` // id of the socket the step created
	Alias      string  `json:"alias,omitempty"`
	DurationMS float64 `json:"duration_ms"`
	// StartMS is when the step's call began, in milliseconds since the run started; 0 for a
	// step that did not get that far (skipped, or its references did not resolve).
	StartMS float64 `json:"start_ms,omitempty"`
	// LocalAddress and RemoteAddress are the addresses of the socket the step created or
	// acted on; RemoteAddress is, for a step that made no connected socket, the address it
	// dialled, sent to or measured. The HTML report finds the agent at the other end by them.
	LocalAddress  string `json:"local_address,omitempty"`
	RemoteAddress string `json:"remote_address,omitempty"`
	// Figures are what a probe or throughput step measured (keys as in expect; durations
	// in milliseconds, their keys ending in _ms).
	Figures map[string]float64 `json:"figures,omitempty"`
	// Mismatches are the cells of a matrix step not as expected.
	Mismatches []MatrixCell `json:"mismatches,omitempty"`

	named bool // Name was written in the file (else it is made from the action)
}

// CleanupReport is one socket closed (or not) at the end of the run.
type CleanupReport struct {
	Agent  string `json:"agent"`
	Socket string `json:"socket"`
	Alias  string `json:"alias,omitempty"`
	Status string `json:"status"` // closed, gone (already closed), failed
	Error  string `json:"error,omitempty"`
}

// count sets Passed, Failed and Skipped from the steps.
func (r *Report) count() {
	r.Passed, r.Failed, r.Skipped = 0, 0, 0
	for _, s := range r.Steps {
		switch s.Status {
		case StatusPassed:
			r.Passed++
		case StatusFailed:
			r.Failed++
		default:
			r.Skipped++
		}
	}
}

// OK reports whether every step passed, every agent was reachable and the run was not
// interrupted.
func (r *Report) OK() bool {
	return r.Failed == 0 && len(r.Unreachable) == 0 && !r.Interrupted
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// protoTimeout is d as a request's timeout: nil (the agent's default) for 0.
func protoTimeout(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}

// describe shows an action with its expanded arguments: "dial tcp 127.0.0.1:4242". It runs
// once per step, so it builds the string directly (no fmt), and looks up each given argument
// once (describeAt) rather than every argument it could show.
func describe(action string, a scenario.Resolved) string {
	d, _, _ := describeLabel(action, a, false)
	return d
}

// describeLabel is describe, and the length of its start that shows the action and
// describeArgs: the step's label (scenario's labelArgs are describeArgs) when the arguments
// are as written and the step has no name. With literal, it gives up (ok false) on a value
// with a "$" (one literal would not pass): a plan needs both, in one pass over the
// arguments.
func describeLabel(action string, a scenario.Resolved, literal bool) (detail string, labelLen int, ok bool) {
	var at [16]describeArg // the arguments to show, in describeAt order
	n := 0
	for k, v := range a.Args {
		if literal && strings.IndexByte(v.Raw, '$') >= 0 {
			return "", 0, false
		}
		pos, known := describeAt[k]
		if !known {
			continue
		}
		if n == len(at) { // more arguments than any action takes: no ordering by hand
			if literal && !literalArgs(a.Args) {
				return "", 0, false
			}
			d, l := describeSlowLabel(action, a)
			return d, l, true
		}
		i := n
		for ; i > 0 && at[i-1].pos > pos; i-- {
			at[i] = at[i-1]
		}
		at[i] = describeArg{pos: pos, key: k, value: v.Raw}
		n++
	}
	b := make([]byte, 0, 96)
	b = append(b, action...)
	labelLen = len(b)
	for _, d := range at[:n] {
		switch {
		case d.pos < len(describeArgs):
			b = append(append(b, ' '), d.value...)
			labelLen = len(b)
		case d.pos < len(describeArgs)+len(describeData):
			b = append(append(append(b, ' '), d.key...), '=')
			b = appendClip(b, d.value, 24)
		default:
			b = append(append(append(append(b, ' '), d.key...), '='), d.value...)
		}
	}
	return string(b), labelLen, true
}

type describeArg struct {
	pos        int
	key, value string
}

// describeAt is the place of each argument describe shows: describeArgs, then describeData,
// then describeFigures.
var describeAt = func() map[string]int {
	m := map[string]int{}
	for i, k := range slices.Concat(describeArgs, describeData, describeFigures) {
		m[k] = i
	}
	return m
}()

// describeSlow is describe, going through the lists in order.
func describeSlow(action string, a scenario.Resolved) string {
	d, _ := describeSlowLabel(action, a)
	return d
}

// describeSlowLabel is describeSlow, and the length of the label at its start.
func describeSlowLabel(action string, a scenario.Resolved) (string, int) {
	b := make([]byte, 0, 96)
	b = append(b, action...)
	for _, k := range describeArgs {
		if a.Has(k) {
			b = append(append(b, ' '), a.String(k)...)
		}
	}
	labelLen := len(b)
	for _, k := range describeData {
		if a.Has(k) {
			b = append(append(append(b, ' '), k...), '=')
			b = appendClip(b, a.String(k), 24)
		}
	}
	for _, k := range describeFigures {
		if a.Has(k) {
			b = append(append(append(append(b, ' '), k...), '='), a.String(k)...)
		}
	}
	return string(b), labelLen
}

// describeArgs are the arguments describe shows as they are, describeData those it shows as
// KEY="VALUE" (clipped), describeFigures those it shows as KEY=VALUE, in this order.
var (
	describeArgs    = []string{"network", "socket", "behaviour", "address", "mode", "local_address", "direction", "duration"}
	describeData    = []string{"data", "data_hex", "data_base64", "data_size", "max_bytes", "exact_bytes", "timeout"}
	describeFigures = []string{"count", "size", "interval", "warmup", "bytes", "streams", "rate", "chunk_size", "max_connections"}
)

// clip quotes s as %q does, cut to its first n bytes and followed by "...(LEN bytes)" when
// longer.
func clip(s string, n int) string { return string(appendClip(nil, s, n)) }

// appendClip appends clip(s, n) to b.
func appendClip(b []byte, s string, n int) []byte {
	if len(s) <= n {
		return strconv.AppendQuote(b, s)
	}
	b = strconv.AppendQuote(b, s[:n])
	b = append(b, "...("...)
	b = strconv.AppendInt(b, int64(len(s)), 10)
	return append(b, " bytes)"...)
}

// Table prints step rows as they end (Row), then the summary (Summary).
type Table struct {
	w      io.Writer
	header bool
	action int    // width of the ACTION column: 9, or the longest action of the file
	buf    []byte // the row being written, kept between rows
}

// NewTable returns a table writing to w, its ACTION column as wide as the actions of steps
// need.
func NewTable(w io.Writer, steps []*scenario.Step) *Table {
	return &Table{w: w, action: actionWidth(steps)}
}

// actionWidth is the ACTION column's width for steps: 9, or wider for throughput.
func actionWidth(steps []*scenario.Step) int {
	w := 9
	for _, s := range steps {
		w = max(w, len(s.Action), actionWidth(s.Parallel))
		if s.Repeat != nil {
			w = max(w, actionWidth(s.Repeat.Steps))
		}
	}
	return w
}

// Row prints the row of one step; the first row comes after the header.
func (t *Table) Row(s StepReport) {
	if !t.header {
		fmt.Fprintf(t.w, "%-10s %-10s %-*s %-6s %9s  %s\n", "STEP", "AGENT", max(t.action, 9), "ACTION", "RESULT", "DURATION", "DETAIL")
		t.header = true
	}
	var result string
	switch s.Status {
	case StatusPassed:
		result = "ok"
	case StatusFailed:
		result = "FAIL"
	case StatusSkipped:
		result = "skip"
	}
	detail := s.Message
	if s.Status == StatusFailed && s.Reason != "" && !strings.HasPrefix(detail, s.Reason) {
		detail = s.Reason + ": " + detail
	}
	if s.Alias != "" {
		detail = s.Alias + " = " + detail
	}
	if s.named {
		detail = strings.TrimSuffix(s.Name+": "+detail, ": ")
	}
	// As fmt.Fprintf(t.w, "%-10s %-10s %-*s %-6s %9s  %s\n", ...), without its allocations:
	// a row is written per step.
	b := t.buf[:0]
	b = padRight(b, s.Index, 10)
	b = padRight(append(b, ' '), s.Agent, 10)
	b = padRight(append(b, ' '), s.Action, max(t.action, 9))
	b = padRight(append(b, ' '), result, 6)
	b = padLeft(append(b, ' '), fmtMS(s.DurationMS), 9)
	b = append(append(b, "  "...), Printable(detail)...)
	b = append(b, '\n')
	t.buf = b
	_, _ = t.w.Write(b)
}

// padRight appends s and then spaces up to width runes, as fmt's %-Ns does.
func padRight(b []byte, s string, width int) []byte {
	b = append(b, s...)
	for n := utf8.RuneCountInString(s); n < width; n++ {
		b = append(b, ' ')
	}
	return b
}

// padLeft appends spaces up to width runes and then s, as fmt's %Ns does.
func padLeft(b []byte, s string, width int) []byte {
	for n := utf8.RuneCountInString(s); n < width; n++ {
		b = append(b, ' ')
	}
	return append(b, s...)
}

func fmtMS(v float64) string {
	d := time.Duration(v * float64(time.Millisecond))
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// Summary prints unreachable agents, cleanup problems and the closing count line.
func (t *Table) Summary(r *Report) {
	for _, a := range r.Agents {
		if !a.Reachable {
			fmt.Fprintf(t.w, "agent %s (%s) unreachable: %s\n", a.Name, Printable(a.Address), Printable(a.Error))
		}
	}
	closed, gone, failed := 0, 0, 0
	for _, c := range r.Cleanup {
		switch c.Status {
		case "failed":
			failed++
			fmt.Fprintf(t.w, "cleanup: could not close %s on %s: %s\n", Printable(c.Socket), c.Agent, Printable(c.Error))
		case "gone":
			gone++
		default:
			closed++
		}
	}
	fmt.Fprintf(t.w, "cleanup: %d socket(s) closed", closed)
	if gone > 0 {
		fmt.Fprintf(t.w, ", %d already gone", gone)
	}
	if failed > 0 {
		fmt.Fprintf(t.w, ", %d could not be closed", failed)
	}
	fmt.Fprintln(t.w)
	if r.Interrupted {
		fmt.Fprintln(t.w, "interrupted")
	}
	line := fmt.Sprintf("%d passed, %d failed", r.Passed, r.Failed)
	if r.Skipped > 0 {
		line += fmt.Sprintf(", %d skipped", r.Skipped)
	}
	fmt.Fprintln(t.w, line)
}

// WriteJSON prints the report as one indented JSON document.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// JUnit XML, as Jenkins, GitLab and GitHub read it.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
	SysErr   string      `xml:"system-err,omitempty"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SysOut    string        `xml:"system-out,omitempty"` // a measurement step's figures
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

func secs(msv float64) string { return fmt.Sprintf("%.3f", msv/1000) }

// WriteJUnit writes the report as JUnit XML: one testsuite with one testcase per step.
func WriteJUnit(w io.Writer, r *Report) error {
	name := r.Name
	if name == "" {
		name = r.File
	}
	s := junitSuite{Name: name, Tests: len(r.Steps), Failures: r.Failed, Skipped: r.Skipped, Time: secs(r.DurationMS)}
	for _, st := range r.Steps {
		c := junitCase{
			Name:      fmt.Sprintf("%s %s", st.Index, st.Name),
			Classname: fmt.Sprintf("%s.%s", name, st.Agent),
			Time:      secs(st.DurationMS),
		}
		switch st.Status {
		case StatusFailed:
			c.Failure = &junitFailure{
				Message: strings.TrimSpace(st.Reason + ": " + st.Message),
				Type:    st.Reason,
				Text:    fmt.Sprintf("%s:%d: step %s on %s: %s\nreason: %s\n%s", r.File, st.Line, st.Index, st.Agent, st.Detail, st.Reason, st.Message),
			}
		case StatusSkipped:
			c.Skipped = &junitSkipped{Message: st.Message}
		default:
			if st.Figures != nil {
				c.SysOut = st.Message
			}
		}
		s.Cases = append(s.Cases, c)
	}
	var notes []string
	for _, a := range r.Agents {
		if !a.Reachable {
			s.Errors++
			notes = append(notes, fmt.Sprintf("agent %s (%s) unreachable: %s", a.Name, a.Address, a.Error))
		}
	}
	for _, c := range r.Cleanup {
		if c.Status == "failed" {
			notes = append(notes, fmt.Sprintf("cleanup: could not close %s on %s: %s", c.Socket, c.Agent, c.Error))
		}
	}
	s.SysErr = strings.Join(notes, "\n")
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(junitSuites{Suites: []junitSuite{s}}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// CountSteps counts action steps, a repeat's steps once per iteration.
func CountSteps(steps []*scenario.Step) int {
	n := 0
	for _, s := range steps {
		switch {
		case s.Parallel != nil:
			n += CountSteps(s.Parallel)
		case s.Repeat != nil:
			n += s.Repeat.Count * CountSteps(s.Repeat.Steps)
		default:
			n++
		}
	}
	return n
}

// CountReports counts the steps a run of f reports: CountSteps, with a fanned-out step once
// per agent the file's labels give it (an inventory's labels may give it others).
func CountReports(f *scenario.File) int {
	var count func([]*scenario.Step) int
	count = func(steps []*scenario.Step) int {
		n := 0
		for _, s := range steps {
			switch {
			case s.Parallel != nil:
				n += count(s.Parallel)
			case s.Repeat != nil:
				n += s.Repeat.Count * count(s.Repeat.Steps)
			case s.OnAll != nil:
				n += len(f.Pick(*s.OnAll, nil))
			default:
				n++
			}
		}
		return n
	}
	return count(f.Steps)
}
