package matrix

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sockagent/sockagent/ctl/runner"
)

// glyphs are the grid's one character per verdict.
var glyphs = map[Verdict]byte{
	Open: 'O', Closed: 'C', Filtered: 'F', Unreachable: 'U', AgentUnavailable: 'A', Error: 'E',
}

// ANSI colours of the grid on a terminal: as expected, not as expected.
const (
	green = "\x1b[32m"
	red   = "\x1b[1;31m"
	reset = "\x1b[0m"
)

// index is a result's cells by service, source and target.
type index map[[3]string]*Cell

func (r *Result) index() index {
	ix := index{}
	for i := range r.Cells {
		c := &r.Cells[i]
		ix[[3]string{c.Service, c.Source, c.Target}] = c
	}
	return ix
}

// WriteGrid writes one grid per service: rows are sources, columns targets (their names
// written downwards), one glyph per cell and "!" after a cell that is not as expected; with
// colour, expected cells are green and the others red. A legend, the summary and every
// mismatch follow.
func WriteGrid(w io.Writer, r *Result, colour bool) error {
	var b strings.Builder
	p := r.Plan
	fmt.Fprintf(&b, "matrix %q: %d sources x %d targets x %d services = %d cells\n", r.Name, len(p.Sources), len(p.Targets), len(p.Services), len(r.Cells))
	ix := r.index()
	rowWidth := 0
	for _, s := range p.Sources {
		rowWidth = max(rowWidth, len(s.Name))
	}
	colHeight := 0
	for _, t := range p.Targets {
		colHeight = max(colHeight, len(t.Name))
	}
	for _, svc := range p.Services {
		fmt.Fprintf(&b, "\n%s %s/%d\n", svc.Name, svc.Network, svc.Port)
		for line := range colHeight {
			b.WriteString(strings.Repeat(" ", rowWidth+1))
			for _, t := range p.Targets {
				ch := byte(' ')
				if line < len(t.Name) {
					ch = t.Name[line]
				}
				b.WriteByte(ch)
				b.WriteByte(' ')
			}
			trimRight(&b)
			b.WriteByte('\n')
		}
		for _, s := range p.Sources {
			b.WriteString(s.Name)
			b.WriteString(strings.Repeat(" ", rowWidth+1-len(s.Name)))
			for _, t := range p.Targets {
				c := ix[[3]string{svc.Name, s.Name, t.Name}]
				writeGlyph(&b, c, colour)
			}
			trimRight(&b)
			b.WriteByte('\n')
		}
	}
	b.WriteString("\nO open  C closed  F filtered  U unreachable  A agent unavailable  E error  ! not as expected  - itself\n")
	writeSummary(&b, r)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeGlyph(b *strings.Builder, c *Cell, colour bool) {
	if c == nil {
		b.WriteString("- ")
		return
	}
	g, mark := glyphs[c.Verdict], byte(' ')
	if g == 0 {
		g = '?'
	}
	if !c.OK() {
		mark = '!'
	}
	if colour {
		col := green
		if !c.OK() {
			col = red
		}
		b.WriteString(col)
		b.WriteByte(g)
		b.WriteByte(mark)
		b.WriteString(reset)
		return
	}
	b.WriteByte(g)
	b.WriteByte(mark)
}

func trimRight(b *strings.Builder) {
	s := strings.TrimRight(b.String(), " ")
	b.Reset()
	b.WriteString(s)
}

func writeSummary(b *strings.Builder, r *Result) {
	bad := r.Mismatches()
	fmt.Fprintf(b, "%d cells: %d as expected, %d not\n", len(r.Cells), len(r.Cells)-bad, bad)
	for _, c := range r.Cells {
		if !c.OK() {
			fmt.Fprintf(b, "  %s -> %s %s: %s, expected %s%s\n", c.Source, c.Target, c.Service, c.Verdict, c.Expected, detail(c))
		}
	}
	for _, name := range sortedKeys(r.Unreachable) {
		fmt.Fprintf(b, "agent %s unreachable: %s\n", name, runner.Printable(r.Unreachable[name]))
	}
	if r.Left > 0 {
		fmt.Fprintf(b, "cleanup: %d sockets closed, %d could not be (their agents close them when the session's lease runs out)\n", r.Closed, r.Left)
	}
}

// detail says why a cell measured what it did: " (REASON after N attempts: message)", the
// agent's words made printable (no terminal control characters).
func detail(c Cell) string {
	var parts []string
	if c.Reason != "" {
		parts = append(parts, c.Reason)
	}
	if c.Attempts > 1 {
		parts = append(parts, fmt.Sprintf("after %d attempts", c.Attempts))
	}
	s := strings.Join(parts, " ")
	if c.Message != "" {
		if s != "" {
			s += ": "
		}
		s += c.Message
	}
	if s == "" {
		return ""
	}
	return " (" + runner.Printable(s) + ")"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, NaturalCompare)
	return keys
}

// jsonCell is a cell in -o json.
type jsonCell struct {
	Source   string  `json:"source"`
	Target   string  `json:"target"`
	Service  string  `json:"service"`
	Network  string  `json:"network"`
	Port     int     `json:"port"`
	Address  string  `json:"address,omitempty"`
	Verdict  Verdict `json:"verdict"`
	Expected Verdict `json:"expected"`
	OK       bool    `json:"ok"`
	Reason   string  `json:"reason,omitempty"`
	Message  string  `json:"message,omitempty"`
	RTTUS    float64 `json:"rtt_us,omitempty"`
	Attempts int     `json:"attempts,omitempty"`
}

// jsonResult is -o json's document.
type jsonResult struct {
	Name        string            `json:"name"`
	ElapsedMS   float64           `json:"elapsed_ms"`
	Cells       []jsonCell        `json:"cells"`
	Total       int               `json:"total"`
	AsExpected  int               `json:"as_expected"`
	Mismatches  int               `json:"mismatches"`
	Unreachable map[string]string `json:"unreachable,omitempty"`
	Closed      int               `json:"closed"`
	Left        int               `json:"left"`
}

// WriteJSON writes every cell, with its measured time (rtt_us: the connect or the echo's
// round trip, in microseconds), as one JSON document.
func WriteJSON(w io.Writer, r *Result) error {
	svc := map[string]Service{}
	for _, s := range r.Plan.Services {
		svc[s.Name] = s
	}
	out := jsonResult{Name: r.Name, ElapsedMS: ms(r.Elapsed), Cells: make([]jsonCell, len(r.Cells)), Total: len(r.Cells),
		Mismatches: r.Mismatches(), Closed: r.Closed, Left: r.Left, Unreachable: r.Unreachable}
	out.AsExpected = out.Total - out.Mismatches
	for i, c := range r.Cells {
		out.Cells[i] = jsonCell{Source: c.Source, Target: c.Target, Service: c.Service, Network: svc[c.Service].Network,
			Port: svc[c.Service].Port, Address: c.Address, Verdict: c.Verdict, Expected: c.Expected, OK: c.OK(),
			Reason: c.Reason, Message: c.Message, RTTUS: float64(c.RTT.Nanoseconds()) / 1e3, Attempts: c.Attempts}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// JUnit XML: one test case per cell, a failure for every cell not as expected.
type (
	junitSuites struct {
		XMLName xml.Name     `xml:"testsuites"`
		Suites  []junitSuite `xml:"testsuite"`
	}
	junitSuite struct {
		Name     string      `xml:"name,attr"`
		Tests    int         `xml:"tests,attr"`
		Failures int         `xml:"failures,attr"`
		Time     string      `xml:"time,attr"`
		Cases    []junitCase `xml:"testcase"`
	}
	junitCase struct {
		Name      string        `xml:"name,attr"`
		ClassName string        `xml:"classname,attr"`
		Time      string        `xml:"time,attr"`
		Failure   *junitFailure `xml:"failure,omitempty"`
	}
	junitFailure struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
		Text    string `xml:",chardata"`
	}
)

// WriteJUnit writes the result as JUnit XML: a suite per matrix, a test case per cell (class
// matrix.SERVICE, name "SOURCE -> TARGET"), and a failure for each cell not as expected.
func WriteJUnit(w io.Writer, r *Result) error {
	s := junitSuite{Name: "matrix " + r.Name, Tests: len(r.Cells), Failures: r.Mismatches(), Time: secs(r.Elapsed)}
	for _, c := range r.Cells {
		jc := junitCase{Name: c.Source + " -> " + c.Target, ClassName: "matrix." + c.Service, Time: secs(c.RTT)}
		if !c.OK() {
			jc.Failure = &junitFailure{Message: fmt.Sprintf("%s, expected %s", c.Verdict, c.Expected), Type: string(c.Verdict),
				Text: fmt.Sprintf("%s -> %s %s (%s): %s, expected %s%s", c.Source, c.Target, c.Service, c.Address, c.Verdict, c.Expected, detail(c))}
		}
		s.Cases = append(s.Cases, jc)
	}
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

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 6, 64) }

// htmlCell is one cell of the heat map.
type htmlCell struct {
	Glyph, Class, Title string
}

type htmlRow struct {
	Source string
	Cells  []htmlCell
}

type htmlGrid struct {
	Service string
	Targets []string
	Rows    []htmlRow
}

type htmlPage struct {
	Name       string
	Summary    string
	Grids      []htmlGrid
	Mismatches []string
}

// htmlTemplate is self-contained: inline style, no script, nothing fetched from the network.
// It is parsed on first use, not at every sockctl start.
var htmlTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("matrix").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>matrix {{.Name}}</title>
<style>
body{font-family:sans-serif;margin:1em}
table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #ccc;text-align:center;min-width:1.6em;padding:2px}
th.t{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal}
td.open{background:#7c7}td.closed{background:#fd8}td.filtered{background:#f96}
td.unreachable{background:#bbb}td.agent-unavailable{background:#99f}td.error{background:#f6f}
td.bad{outline:3px solid #c00;outline-offset:-3px;font-weight:bold}td.self{background:#eee}
</style></head><body>
<h1>matrix {{.Name}}</h1><p>{{.Summary}}</p>
{{range .Grids}}<h2>{{.Service}}</h2><table><tr><th></th>{{range .Targets}}<th class="t">{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr><th>{{.Source}}</th>{{range .Cells}}<td class="{{.Class}}" title="{{.Title}}">{{.Glyph}}</td>{{end}}</tr>
{{end}}</table>
{{end}}{{if .Mismatches}}<h2>Not as expected</h2><ul>{{range .Mismatches}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p>O open, C closed, F filtered, U unreachable, A agent unavailable, E error; a red frame: not as expected. Hover over a cell for its detail.</p>
</body></html>
`))
})

// WriteHTML writes a self-contained heat map (inline style, no script, no fetch): a table per
// service, a colour per verdict, mismatches framed, and each cell's detail on hover.
func WriteHTML(w io.Writer, r *Result) error {
	ix := r.index()
	bad := r.Mismatches()
	page := htmlPage{Name: r.Name, Summary: fmt.Sprintf("%d cells: %d as expected, %d not", len(r.Cells), len(r.Cells)-bad, bad)}
	for _, svc := range r.Plan.Services {
		g := htmlGrid{Service: fmt.Sprintf("%s %s/%d", svc.Name, svc.Network, svc.Port)}
		for _, t := range r.Plan.Targets {
			g.Targets = append(g.Targets, t.Name)
		}
		for _, s := range r.Plan.Sources {
			row := htmlRow{Source: s.Name}
			for _, t := range r.Plan.Targets {
				c := ix[[3]string{svc.Name, s.Name, t.Name}]
				if c == nil {
					row.Cells = append(row.Cells, htmlCell{Glyph: "-", Class: "self", Title: s.Name + " itself"})
					continue
				}
				hc := htmlCell{Glyph: string(glyphs[c.Verdict]), Class: string(c.Verdict),
					Title: fmt.Sprintf("%s -> %s %s (%s): %s, expected %s%s", c.Source, c.Target, c.Service, c.Address, c.Verdict, c.Expected, detail(*c))}
				if c.RTT > 0 {
					hc.Title += ", " + c.RTT.String()
				}
				if !c.OK() {
					hc.Class += " bad"
				}
				row.Cells = append(row.Cells, hc)
			}
			g.Rows = append(g.Rows, row)
		}
		page.Grids = append(page.Grids, g)
	}
	for _, c := range r.Cells {
		if !c.OK() {
			page.Mismatches = append(page.Mismatches, fmt.Sprintf("%s -> %s %s: %s, expected %s%s", c.Source, c.Target, c.Service, c.Verdict, c.Expected, detail(c)))
		}
	}
	return htmlTemplate().Execute(w, page)
}
