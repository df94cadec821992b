package runner

import (
	"cmp"
	"embed"
	"html/template"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
)

//go:embed htmlreport/report.html
var htmlFS embed.FS

// htmlTemplate is the HTML report: inline style, inline script, inline SVG; nothing is
// fetched, so the file can be mailed and opened anywhere.
// It is parsed on first use: parsing costs a one-shot sockctl command a tenth of its start-up.
var htmlTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("report.html").Funcs(template.FuncMap{
		"add": func(a, b int) int { return a + b },
		"sub": func(a, b int) int { return a - b },
	}).ParseFS(htmlFS, "htmlreport/report.html"))
})

// Geometry of the sequence diagram, in SVG user units.
const (
	diagramMargin = 90  // left and right of the outer lifelines: their names and labels
	laneWidth     = 200 // between two lifelines
	headerHeight  = 56  // the agents' boxes above the lifelines
	rowHeight     = 34  // one step of a sequence
	branchHeight  = 18  // one branch of a parallel block within a row
	lostLength    = 70  // an arrow to an address no agent of the run owns
	labelRunes    = 48  // an arrow's label is cut to this many runes (the tooltip has all)
)

// Kinds of a step in the diagram.
const (
	kindArrow = "arrow" // from one agent's lifeline to another's
	kindSelf  = "self"  // on one lifeline: listen, bind, close, ..., or a connection to itself
	kindLost  = "lost"  // to (or from) an address no agent of the run owns
	kindNote  = "note"  // across every lifeline: a step of no agent (sleep)
)

// arrowOut are the actions whose arrow leaves the step's agent for the address it names (the
// socket's remote address, or the address argument); arrowIn those whose arrow arrives at
// the step's agent from there. Every other action stays on its lifeline.
var (
	arrowOut = map[string]bool{"dial": true, "send": true, "sendto": true, "probe": true, "throughput": true}
	arrowIn  = map[string]bool{"accept": true, "recv": true, "recvfrom": true}
)

// htmlPage is what the template draws.
type htmlPage struct {
	Title   string
	Report  *Report // embedded as JSON for the detail panel; steps in file order
	Summary string
	Width   int
	Height  int
	Agents  []htmlAgent
	Blocks  []htmlBlock
	Steps   []htmlStep
	Links   []htmlLink
	// Chunks are the rows of the step table in file order, in chunks that the browser lays
	// out only when they are scrolled to: a table of a thousand rows laid out at once takes
	// most of a second.
	Chunks [][]htmlStep
}

// tableChunk is the number of rows of one chunk of the step table.
const tableChunk = 50

// htmlAgent is one lifeline.
type htmlAgent struct {
	Name, Address string
	X             int
	Down          bool // unreachable
}

// htmlBlock is the frame around a parallel block (or a fanned-out step): its branches run
// side by side in the same rows, one lane each.
type htmlBlock struct {
	Label          string
	X, Y, W, H     int
	Lanes          []htmlLane
	LabelX, LabelY int
}

// htmlLane marks one branch of a block in the block's left margin.
type htmlLane struct {
	X, Y1, Y2 int
	Label     string
}

// htmlStep is one step: its arrow (or box, or note) and its table row.
type htmlStep struct {
	I         int // in Report.Steps
	Index     string
	Class     string // pass, fail or skip
	Kind      string
	From, To  string // agents ("" for none)
	X1, X2, Y int
	LabelX    int
	Label     string
	Title     string
	Status    string
	Duration  string
	Agent     string
	Action    string
	Detail    string
	Reason    string
	Message   string
}

// htmlLink joins a send to the recv that read its bytes, along the receiver's lifeline.
type htmlLink struct {
	Send, Recv string
	X, Y1, Y2  int
}

// WriteHTML writes the report as one self-contained HTML page: a sequence diagram with one
// lifeline per agent and one arrow per step (parallel blocks side by side, colour for pass,
// fail and skip, hover and click for the detail), the step table and the summary.
func WriteHTML(w io.Writer, r *Report) error {
	return htmlTemplate().Execute(w, buildPage(r))
}

// buildPage lays the report out.
func buildPage(r *Report) htmlPage {
	rep := *r
	rep.Steps = slices.Clone(r.Steps)
	slices.SortStableFunc(rep.Steps, func(a, b StepReport) int { return compareIndex(a.Index, b.Index) })
	p := htmlPage{Title: Printable(cmp.Or(r.Name, r.File)), Report: &rep, Summary: summaryLine(r)}
	x := map[string]int{}
	for i, a := range r.Agents {
		ax := diagramMargin + i*laneWidth
		x[a.Name] = ax
		p.Agents = append(p.Agents, htmlAgent{Name: Printable(a.Name), Address: Printable(a.Address), X: ax, Down: !a.Reachable})
	}
	p.Width = 2*diagramMargin + max(len(r.Agents)-1, 0)*laneWidth + lostLength
	owners := addressOwners(&rep)
	y := headerHeight + rowHeight/2
	for _, g := range groupSteps(rep.Steps) {
		y = p.layGroup(g, y, x, owners)
	}
	p.Height = y + rowHeight/2
	p.Links = links(p.Steps, rep.Steps)
	rows := make([]htmlStep, len(p.Steps))
	for _, s := range p.Steps {
		rows[s.I] = s
	}
	for len(rows) > 0 {
		n := min(len(rows), tableChunk)
		p.Chunks = append(p.Chunks, rows[:n])
		rows = rows[n:]
	}
	return p
}

// summaryLine is the count line of the table report, and the run's duration.
func summaryLine(r *Report) string {
	s := strconv.Itoa(r.Passed) + " passed, " + strconv.Itoa(r.Failed) + " failed"
	if r.Skipped > 0 {
		s += ", " + strconv.Itoa(r.Skipped) + " skipped"
	}
	s += " in " + fmtMS(r.DurationMS)
	if r.Interrupted {
		s += " (interrupted)"
	}
	return s
}

// stepGroup is the steps of one top-level step of the file: one branch for a sequence (a
// step, a repeat), one per branch for a parallel block, one per agent for a fanned-out step.
type stepGroup struct {
	top      string
	branches [][]int // indexes into the steps, in file order
	names    []string
	parallel bool
}

// groupSteps splits steps (in file order) by their top-level step, and a parallel block's or
// a fanned-out step's by branch.
func groupSteps(steps []StepReport) []stepGroup {
	var groups []stepGroup
	for i, s := range steps {
		top, branch, parallel := splitIndex(s.Index)
		if len(groups) == 0 || groups[len(groups)-1].top != top {
			groups = append(groups, stepGroup{top: top})
		}
		g := &groups[len(groups)-1]
		g.parallel = g.parallel || parallel
		j := slices.Index(g.names, branch)
		if j < 0 {
			g.names = append(g.names, branch)
			g.branches = append(g.branches, nil)
			j = len(g.names) - 1
		}
		g.branches[j] = append(g.branches[j], i)
	}
	return groups
}

// splitIndex splits a step's index into its top-level step and its branch: "4.2[1].1" is
// branch 2 of parallel step 4, "3@h1" agent h1's copy of fanned-out step 3, "5[0].2" and
// "6" are sequences (branch "").
func splitIndex(index string) (top, branch string, parallel bool) {
	n := 0
	for n < len(index) && index[n] >= '0' && index[n] <= '9' {
		n++
	}
	top, rest := index[:n], index[n:]
	switch {
	case strings.HasPrefix(rest, "."):
		rest = rest[1:]
		end := strings.IndexAny(rest, ".[@")
		if end < 0 {
			end = len(rest)
		}
		return top, rest[:end], true
	case strings.HasPrefix(rest, fanoutSep):
		return top, rest[1:], true
	}
	return top, "", false
}

// layGroup places a group's steps from y down and returns the y after them. The branches of
// a parallel group share its rows, each in a lane of its own, so that what ran at once is
// drawn side by side.
func (p *htmlPage) layGroup(g stepGroup, y int, x map[string]int, owners map[string]string) int {
	steps := p.Report.Steps
	if !g.parallel {
		for _, i := range g.branches[0] {
			p.Steps = append(p.Steps, layStep(steps[i], i, y, x, owners))
			y += rowHeight
		}
		return y
	}
	rows := 0
	for _, b := range g.branches {
		rows = max(rows, len(b))
	}
	lanes := len(g.branches)
	rowH := max(rowHeight, lanes*branchHeight+branchHeight/2)
	top := y - rowHeight/2
	block := htmlBlock{Label: "par " + g.top, X: 4, Y: top, W: p.Width - 8, H: rows * rowH, LabelX: 8, LabelY: top + 12}
	if strings.Contains(steps[g.branches[0][0]].Index, fanoutSep) {
		block.Label = "fan-out " + g.top
	}
	for b, branch := range g.branches {
		lx := 10 + (b%12)*4
		block.Lanes = append(block.Lanes, htmlLane{X: lx, Y1: top + 16, Y2: top + len(branch)*rowH - 2, Label: Printable(g.names[b])})
		for j, i := range branch {
			sy := top + j*rowH + branchHeight + b*branchHeight
			p.Steps = append(p.Steps, layStep(steps[i], i, sy, x, owners))
		}
	}
	p.Blocks = append(p.Blocks, block)
	return top + rows*rowH + rowHeight // half a row apart from what follows
}

// layStep places one step at y: its kind, its ends and its texts.
func layStep(s StepReport, i, y int, x map[string]int, owners map[string]string) htmlStep {
	h := htmlStep{I: i, Index: Printable(s.Index), Class: statusClass(s.Status), Y: y, Status: s.Status,
		Duration: fmtMS(s.DurationMS), Agent: Printable(s.Agent), Action: s.Action, Detail: Printable(s.Detail),
		Reason: s.Reason, Message: Printable(s.Message)}
	ax, known := x[s.Agent]
	h.Kind, h.From, h.To = kindSelf, s.Agent, s.Agent
	h.X1, h.X2 = ax, ax
	peer := owners[s.RemoteAddress]
	if _, ok := x[peer]; !ok {
		peer = "" // owned by a step of no agent of the run (a fan-out that picked none)
	}
	switch {
	case !known:
		h.Kind, h.From, h.To = kindNote, "", ""
		h.X1, h.X2 = diagramMargin-40, diagramMargin+max(len(x)-1, 0)*laneWidth+40
	case !arrowOut[s.Action] && !arrowIn[s.Action]:
	case s.RemoteAddress != "" && peer == "":
		h.Kind, h.X2 = kindLost, ax+lostLength
	case peer != "" && peer != s.Agent:
		h.Kind = kindArrow
		if arrowOut[s.Action] {
			h.To, h.X2 = peer, x[peer]
		} else {
			h.From, h.X1 = peer, x[peer]
		}
	}
	h.LabelX = min(h.X1, h.X2) + 6
	if h.Kind == kindSelf {
		h.LabelX = ax + 10
	}
	label := s.Index + " " + cmp.Or(s.Name, s.Action)
	if s.Status != StatusSkipped {
		label += " (" + h.Duration + ")"
	}
	h.Label = Printable(cut(label, labelRunes))
	h.Title = titleOf(s)
	return h
}

// titleOf is a step's tooltip: what it did, how it ended and why.
func titleOf(s StepReport) string {
	t := strings.TrimSuffix(s.Index+" "+s.Name, " ") + " on " + s.Agent + ": " + cmp.Or(s.Detail, s.Action) + "\n" + s.Status
	if s.Status != StatusSkipped {
		t += " in " + fmtMS(s.DurationMS)
	}
	if s.Reason != "" {
		t += ": " + s.Reason
	}
	if s.Message != "" {
		t += "\n" + s.Message
	}
	lines := strings.Split(t, "\n")
	for i, l := range lines {
		lines[i] = Printable(l)
	}
	return strings.Join(lines, "\n")
}

// statusClass is the CSS class of a status.
func statusClass(status string) string {
	switch status {
	case StatusPassed:
		return "pass"
	case StatusFailed:
		return "fail"
	}
	return "skip"
}

// addressOwners maps each local address of a socket the run made to the agent it is on, and
// each address a listener bound to a wildcard (0.0.0.0:P, [::]:P) answers on: P at the
// host of its agent.
func addressOwners(r *Report) map[string]string {
	owners := map[string]string{}
	hosts := map[string]string{}
	for _, a := range r.Agents {
		hosts[a.Name] = agentHost(a.Address)
	}
	for _, s := range r.Steps {
		if s.LocalAddress == "" {
			continue
		}
		if _, ok := owners[s.LocalAddress]; !ok {
			owners[s.LocalAddress] = s.Agent
		}
		host, port, err := net.SplitHostPort(s.LocalAddress)
		if err == nil && (host == "0.0.0.0" || host == "::") && hosts[s.Agent] != "" {
			at := net.JoinHostPort(hosts[s.Agent], port)
			if _, ok := owners[at]; !ok {
				owners[at] = s.Agent
			}
		}
	}
	return owners
}

// agentHost is the host of an agent's address as the report shows it: "10.0.0.2:7700",
// "local (127.0.0.1:4242)"; "" for a UNIX socket.
func agentHost(addr string) string {
	if strings.HasPrefix(addr, "unix:") {
		return ""
	}
	if inner, ok := strings.CutPrefix(addr, localAddr+" ("); ok {
		addr = strings.TrimSuffix(inner, ")")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return host
}

// links pairs each send with the recv that read it: the n-th send on a connection with the
// n-th recv at its other end.
func links(placed []htmlStep, steps []StepReport) []htmlLink {
	at := make([]*htmlStep, len(steps))
	for i := range placed {
		at[placed[i].I] = &placed[i]
	}
	type conn struct{ local, remote string }
	sends := map[conn][]int{}
	for i, s := range steps {
		if s.Action == "send" && s.LocalAddress != "" && s.RemoteAddress != "" {
			c := conn{s.LocalAddress, s.RemoteAddress}
			sends[c] = append(sends[c], i)
		}
	}
	var out []htmlLink
	for i, s := range steps {
		c := conn{s.RemoteAddress, s.LocalAddress}
		if s.Action != "recv" || len(sends[c]) == 0 {
			continue
		}
		send, recv := at[sends[c][0]], at[i]
		sends[c] = sends[c][1:]
		if send.Kind != kindArrow || recv.Kind != kindArrow {
			continue
		}
		out = append(out, htmlLink{Send: send.Index, Recv: recv.Index, X: send.X2 - 4, Y1: send.Y, Y2: recv.Y})
	}
	return out
}

// compareIndex orders step indexes as the file does: numbers by value ("2" before "10"),
// then the rest by bytes ("3@h1" before "3@h2").
func compareIndex(a, b string) int {
	for a != "" && b != "" {
		na, ra := leadingNumber(a)
		nb, rb := leadingNumber(b)
		switch {
		case na >= 0 && nb >= 0:
			if c := cmp.Compare(na, nb); c != 0 {
				return c
			}
		case a[0] != b[0]:
			return cmp.Compare(a[0], b[0])
		default:
			ra, rb = a[1:], b[1:]
		}
		a, b = ra, rb
	}
	return cmp.Compare(len(a), len(b))
}

// leadingNumber is the number at the start of s and what follows it; -1 and s when s does
// not start with a digit.
func leadingNumber(s string) (int, string) {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	if n == 0 {
		return -1, s
	}
	v, err := strconv.Atoi(s[:n])
	if err != nil {
		return -1, s
	}
	return v, s[n:]
}
