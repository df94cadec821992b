package runner

import (
	"encoding/json"
	"fmt"
	"html"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	goldenfile "github.com/sockagent/sockagent/ctl/internal/golden"
)

// The small report's layout, step by step: kind, ends, height; the parallel block and the
// fan-out side by side in lanes; the send linked to its recv.
func TestHTMLLayout(t *testing.T) {
	t.Parallel()
	p := buildPage(smallReport())
	var got []string
	for _, s := range p.Steps {
		got = append(got, fmt.Sprintf("%s %s %s %s>%s x%d>%d y%d label%d %q", s.Index, s.Class, s.Kind, s.From, s.To, s.X1, s.X2, s.Y, s.LabelX, s.Label))
	}
	want := []string{
		`1 pass self a>a x90>90 y73 label100 "1 listen tcp (500µs)"`,
		`2.1 pass arrow b>a x290>90 y108 label96 "2.1 accept lis (1ms)"`,
		`2.2 pass arrow b>a x290>90 y126 label96 "2.2 dial tcp (1ms)"`,
		`3 pass arrow b>a x290>90 y169 label96 "3 send cli (100µs)"`,
		`4 fail arrow b>a x290>90 y203 label96 "4 recv conn (2.5ms)"`,
		`5 fail lost c>c x490>560 y237 label496 "5 dial tcp (200µs)"`,
		`6 skip self c>c x490>490 y271 label500 "6 close x"`,
		`7@b pass arrow b>a x290>90 y306 label96 "7@b probe (3ms)"`,
		`7@c fail arrow c>a x490>90 y324 label96 "7@c probe (3ms)"`,
		`8 pass note > x50>530 y367 label56 "8 sleep 1ms (1ms)"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("steps\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p.Width != 650 || p.Height != 418 {
		t.Errorf("diagram %dx%d, want 650x418", p.Width, p.Height)
	}
	var blocks []string
	for _, b := range p.Blocks {
		blocks = append(blocks, fmt.Sprintf("%s x%d y%d w%d h%d label%d,%d %v", b.Label, b.X, b.Y, b.W, b.H, b.LabelX, b.LabelY, b.Lanes))
	}
	wantBlocks := []string{
		"par 2 x4 y90 w642 h45 label8,102 [{10 106 133 1} {14 106 133 2}]",
		"fan-out 7 x4 y288 w642 h45 label8,300 [{10 304 331 b} {14 304 331 c}]",
	}
	if strings.Join(blocks, "\n") != strings.Join(wantBlocks, "\n") {
		t.Errorf("blocks\n%s\nwant\n%s", strings.Join(blocks, "\n"), strings.Join(wantBlocks, "\n"))
	}
	if fmt.Sprint(p.Links) != "[{3 4 86 169 203}]" {
		t.Errorf("links %v, want [{3 4 86 169 203}]", p.Links)
	}
	var agents []string
	for _, a := range p.Agents {
		agents = append(agents, fmt.Sprintf("%s %s x%d down=%v", a.Name, a.Address, a.X, a.Down))
	}
	if got, want := strings.Join(agents, "; "), "a local (127.0.0.1:7001) x90 down=false; b 127.0.0.1:7002 x290 down=false; c 127.0.0.1:7003 x490 down=false"; got != want {
		t.Errorf("agents %q, want %q", got, want)
	}
	if p.Title != "small" || p.Summary != "6 passed, 3 failed, 1 skipped in 1.2s" {
		t.Errorf("title %q, summary %q", p.Title, p.Summary)
	}
	if s := p.Steps[4]; s.Title != "4 recv conn on a: recv conn exact_bytes=5\nfailed in 2.5ms: EXPECTATION_FAILED\ngot \"Hellx\", want \"Hello\"" {
		t.Errorf("tooltip %q", s.Title)
	}
	if s := p.Steps[6]; s.Title != "6 close x on c: close\nskipped\nnot run: an earlier step failed" {
		t.Errorf("tooltip %q", s.Title)
	}
}

// A parallel block's rows grow with its branches so that their arrows do not overlap, each
// branch's steps keep their order, and a sequence after it starts half a row below it.
func TestHTMLLayoutBranches(t *testing.T) {
	t.Parallel()
	r := &Report{Agents: []AgentReport{{Name: "a"}}}
	for b := 1; b <= 3; b++ {
		for k := 2; k >= 1; k-- { // out of order: the page sorts them
			r.Steps = append(r.Steps, StepReport{Index: fmt.Sprintf("1.%d[%d].1", b, k-1), Agent: "a", Action: "close", Status: StatusPassed})
		}
	}
	r.Steps = append(r.Steps, StepReport{Index: "2", Agent: "a", Action: "close", Status: StatusPassed})
	p := buildPage(r)
	var ys []string
	for _, s := range p.Steps {
		ys = append(ys, fmt.Sprintf("%s@%d", s.Index, s.Y))
	}
	// rows of 3*18+9 = 63; the block starts at 56, branch b's step j at 56+63j+18+18b
	if got, want := strings.Join(ys, " "), "1.1[0].1@74 1.1[1].1@137 1.2[0].1@92 1.2[1].1@155 1.3[0].1@110 1.3[1].1@173 2@216"; got != want {
		t.Errorf("rows %s, want %s", got, want)
	}
	if b := p.Blocks[0]; b.Y != 56 || b.H != 126 || len(b.Lanes) != 3 || b.Lanes[2].X != 18 || b.Lanes[2].Y2 != 56+126-2 {
		t.Errorf("block %+v", b)
	}
	if p.Height != 216+34+17 {
		t.Errorf("height %d", p.Height)
	}
}

// A thirteenth lane starts again at the left of the block's margin.
func TestHTMLLanesWrap(t *testing.T) {
	t.Parallel()
	r := &Report{}
	for b := 1; b <= 13; b++ {
		r.Steps = append(r.Steps, StepReport{Index: fmt.Sprintf("1.%d", b), Action: "sleep", Status: StatusPassed})
	}
	p := buildPage(r)
	if l := p.Blocks[0].Lanes; l[11].X != 54 || l[12].X != 10 {
		t.Errorf("lanes 12 and 13 at %d and %d, want 54 and 10", l[11].X, l[12].X)
	}
	if p.Width != 2*diagramMargin+lostLength {
		t.Errorf("width %d without agents", p.Width)
	}
}

func TestSplitIndex(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		index, top, branch string
		parallel           bool
	}{
		{"6", "6", "", false},
		{"5[0].2", "5", "", false},
		{"4.2[1].1", "4", "2", true},
		{"4.12.3", "4", "12", true},
		{"4.3@h1", "4", "3", true},
		{"3@h1", "3", "h1", true},
		{"12.7", "12", "7", true},
		{"10.2", "10", "2", true},
		{"19[0].1", "19", "", false},
		{"4.@x", "4", "", true}, // (no index has an empty branch: as written)
	} {
		top, branch, parallel := splitIndex(tc.index)
		if top != tc.top || branch != tc.branch || parallel != tc.parallel {
			t.Errorf("splitIndex(%q) = %q, %q, %v; want %q, %q, %v", tc.index, top, branch, parallel, tc.top, tc.branch, tc.parallel)
		}
	}
}

func TestCompareIndex(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"2", "10", -1},
		{"10", "2", 1},
		{"2", "2", 0},
		{"2.1[0].1", "2.1[1].1", -1},
		{"2.1[10].1", "2.1[9].1", 1},
		{"2.2[0].1", "2.10[0].1", -1},
		{"3@h1", "3@h2", -1},
		{"3@h2", "3@h10", -1}, // the digits of a name sort as numbers too
		{"3", "3@h1", -1},
		{"3.1", "3@h", -1},
		{"3@b", "3@a", 1},
		{"99999999999999999999", "99999999999999999998", 1}, // too long for an int: by bytes
		{"1a", "1a", 0},
	} {
		if got := compareIndex(tc.a, tc.b); got != tc.want {
			t.Errorf("compareIndex(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// The agent at the other end is found by the address: the socket's exact local address,
// or a wildcard listener's port at its agent's host; an address of a UNIX agent, or one
// nobody owns, finds nobody; the first owner of an address keeps it.
func TestAddressOwners(t *testing.T) {
	t.Parallel()
	r := &Report{
		Agents: []AgentReport{{Name: "srv", Address: "10.0.0.2:7700"}, {Name: "v6", Address: "[fd00::2]:7700"},
			{Name: "u", Address: "unix:/run/sockagent.sock"}, {Name: "l", Address: "local (127.0.0.1:4000)"}},
		Steps: []StepReport{
			{Agent: "srv", LocalAddress: "0.0.0.0:80"},
			{Agent: "v6", LocalAddress: "[::]:443"},
			{Agent: "u", LocalAddress: "0.0.0.0:81"},
			{Agent: "l", LocalAddress: "0.0.0.0:82"},
			{Agent: "l", LocalAddress: "127.0.0.1:5000"},
			{Agent: "srv", LocalAddress: "127.0.0.1:5000"}, // a second claim: the first stays
			{Agent: "srv", LocalAddress: "0.0.0.0:82"},     // likewise for the wildcard's
			{Agent: "srv", RemoteAddress: "10.9.9.9:1"},
		},
	}
	got := addressOwners(r)
	want := map[string]string{
		"0.0.0.0:80": "srv", "10.0.0.2:80": "srv",
		"[::]:443": "v6", "[fd00::2]:443": "v6",
		"0.0.0.0:81": "u",
		"0.0.0.0:82": "l", "127.0.0.1:82": "l", "10.0.0.2:82": "srv",
		"127.0.0.1:5000": "l",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("owners\n%v\nwant\n%v", got, want)
	}
	for addr, host := range map[string]string{"10.0.0.2:7700": "10.0.0.2", "local (127.0.0.1:4000)": "127.0.0.1", "unix:/x": "", "[::1]:1": "::1", "h": ""} {
		if got := agentHost(addr); got != host {
			t.Errorf("agentHost(%q) = %q, want %q", addr, got, host)
		}
	}
}

// The n-th send on a connection is linked to the n-th recv at its other end; a send or recv
// drawn without an arrow (its peer unknown) is not linked; a recv with no send is not.
func TestHTMLLinks(t *testing.T) {
	t.Parallel()
	r := &Report{
		Agents: []AgentReport{{Name: "a"}, {Name: "b"}},
		Steps: []StepReport{
			{Index: "1", Agent: "a", Action: "listen", LocalAddress: "1.1.1.1:1"},
			{Index: "2", Agent: "b", Action: "dial", LocalAddress: "2.2.2.2:2", RemoteAddress: "1.1.1.1:1"},
			{Index: "3", Agent: "b", Action: "send", LocalAddress: "2.2.2.2:2", RemoteAddress: "1.1.1.1:1"},
			{Index: "4", Agent: "b", Action: "send", LocalAddress: "2.2.2.2:2", RemoteAddress: "1.1.1.1:1"},
			{Index: "5", Agent: "a", Action: "recv", LocalAddress: "1.1.1.1:1", RemoteAddress: "2.2.2.2:2"},
			{Index: "6", Agent: "a", Action: "recv", LocalAddress: "1.1.1.1:1", RemoteAddress: "2.2.2.2:2"},
			{Index: "7", Agent: "a", Action: "recv", LocalAddress: "1.1.1.1:1", RemoteAddress: "2.2.2.2:2"},
			{Index: "8", Agent: "a", Action: "send", LocalAddress: "1.1.1.1:1", RemoteAddress: "9.9.9.9:9"},
			{Index: "9", Agent: "zz", Action: "recv", LocalAddress: "9.9.9.9:9", RemoteAddress: "1.1.1.1:1"}, // of no agent of the run
			{Index: "10", Agent: "a", Action: "send", LocalAddress: "1.1.1.1:1"},
			{Index: "11", Agent: "a", Action: "sendto", LocalAddress: "1.1.1.1:1", RemoteAddress: "2.2.2.2:2"},
			{Index: "12", Agent: "a", Action: "recvfrom", LocalAddress: "2.2.2.2:2", RemoteAddress: "1.1.1.1:1"},
		},
	}
	p := buildPage(r)
	var got []string
	for _, l := range p.Links {
		got = append(got, l.Send+">"+l.Recv)
	}
	if strings.Join(got, " ") != "3>5 4>6" {
		t.Errorf("links %v, want 3>5 4>6", got)
	}
	if k := p.Steps[7].Kind; k != kindLost {
		t.Errorf("send to an address nobody owns: %s, want lost", k)
	}
	if l := p.Links[0]; l.X != 290-200-4 || l.Y1 != p.Steps[2].Y || l.Y2 != p.Steps[4].Y {
		t.Errorf("link %+v", l)
	}
}

// What an agent or its peers chose (names, addresses, messages) cannot break out of the page:
// it is escaped in the markup, in the tooltips and in the embedded JSON, and control
// characters are shown escaped.
func TestHTMLEscapes(t *testing.T) {
	t.Parallel()
	evil := `</script><script>alert(1)</script><b x="1">` + "\x1b[2J"
	r := &Report{Name: evil, Agents: []AgentReport{{Name: "a", Address: evil, Reachable: true}},
		Steps: []StepReport{{Index: "1", Agent: "a", Action: "recv", Status: StatusFailed, Reason: "TIMEOUT", Message: evil, Detail: evil}}}
	r.count()
	var b strings.Builder
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if n := strings.Count(out, "<script"); n != 2 {
		t.Errorf("%d <script elements, want 2 (the data and the code)", n)
	}
	if strings.Contains(out, "<b x=") || strings.Contains(out, "\x1b") {
		t.Error("a hostile string reached the page unescaped")
	}
	m := regexp.MustCompile(`(?s)<script type="application/json" id="report">(.*?)</script>`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no report data in the page")
	}
	var back Report
	if err := json.Unmarshal([]byte(m[1]), &back); err != nil {
		t.Fatalf("the embedded report is not JSON: %v", err)
	}
	if back.Steps[0].Message != evil || back.Name != evil {
		t.Errorf("the embedded report lost the message: %q", back.Steps[0].Message)
	}
	if !strings.Contains(out, "<title>sockctl run: "+html.EscapeString(Printable(evil))+"</title>") {
		t.Error("title not escaped as expected")
	}
	for _, want := range []string{
		`<div class="summary bad" id="summary">0 passed, 1 failed in -</div>`,
		`<td>` + html.EscapeString(`</script><script>alert(1)</script><b x="1">\x1b[2J`) + `</td></tr>`,
		`Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

// The page of a passing run says so in green; an interrupted one says it; the step table
// comes in chunks of 50 rows, in file order.
func TestHTMLSummaryAndChunks(t *testing.T) {
	t.Parallel()
	r := &Report{Name: "", File: "f.yaml", DurationMS: 2}
	for i := 120; i >= 1; i-- {
		r.Steps = append(r.Steps, StepReport{Index: fmt.Sprint(i), Action: "sleep", Status: StatusPassed})
	}
	r.count()
	p := buildPage(r)
	if len(p.Chunks) != 3 || len(p.Chunks[0]) != 50 || len(p.Chunks[2]) != 20 || p.Chunks[0][0].Index != "1" || p.Chunks[2][19].Index != "120" {
		t.Errorf("chunks of %d, first %q", len(p.Chunks), p.Chunks[0][0].Index)
	}
	if p.Title != "f.yaml" || p.Summary != "120 passed, 0 failed in 2ms" {
		t.Errorf("title %q, summary %q", p.Title, p.Summary)
	}
	var b strings.Builder
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `<div class="summary good" id="summary">`) {
		t.Error("a passing run is not shown good")
	}
	r.Interrupted = true
	if s := summaryLine(r); s != "120 passed, 0 failed in 2ms (interrupted)" {
		t.Errorf("summary %q", s)
	}
	for _, tc := range []struct {
		r    Report
		good bool
	}{
		{Report{Unreachable: []string{"x"}}, false},
		{Report{Interrupted: true}, false},
		{Report{Failed: 1}, false},
		{Report{}, true},
	} {
		var b strings.Builder
		if err := WriteHTML(&b, &tc.r); err != nil {
			t.Fatal(err)
		}
		if good := strings.Contains(b.String(), `class="summary good"`); good != tc.good {
			t.Errorf("%+v shown good=%v", tc.r, good)
		}
	}
	if statusClass(StatusPassed) != "pass" || statusClass(StatusFailed) != "fail" || statusClass(StatusSkipped) != "skip" {
		t.Error("status classes")
	}
}

// An unreachable agent's lifeline is marked down.
func TestHTMLAgentDown(t *testing.T) {
	t.Parallel()
	r := &Report{Agents: []AgentReport{{Name: "a", Reachable: true}, {Name: "b", Error: "refused"}}, Unreachable: []string{"b"}}
	var b strings.Builder
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `<g class="agent" data-agent="a">`) || !strings.Contains(b.String(), `<g class="agent down" data-agent="b">`) {
		t.Error("agent b is not marked down, or a is")
	}
}

// The page of the small report, byte for byte (go test ./ctl/runner -run TestHTMLGolden
// -update rewrites it): the markup the browser tests read, each coordinate of it.
func TestHTMLGolden(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	if err := WriteHTML(&b, smallReport()); err != nil {
		t.Fatal(err)
	}
	goldenfile.Check(t, filepath.Join("testdata", "small.html.golden"), b.String())
}

// A label longer than labelRunes is cut, its last rune "~"; the tooltip keeps it whole.
func TestHTMLLabelCut(t *testing.T) {
	t.Parallel()
	name := strings.Repeat("é", 60)
	h := layStep(StepReport{Index: "1", Name: name, Agent: "a", Action: "close", Status: StatusPassed, DurationMS: 1}, 0, 10, map[string]int{"a": 90}, nil)
	if want := "1 " + strings.Repeat("é", labelRunes-3) + "~"; h.Label != want {
		t.Errorf("label %q, want %q", h.Label, want)
	}
	if !strings.Contains(h.Title, name) {
		t.Errorf("tooltip %q lacks the whole name", h.Title)
	}
}

// A step without a name (a fanned-out step that picked no agent is reported so) has a
// tooltip without one.
func TestHTMLTitleUnnamed(t *testing.T) {
	t.Parallel()
	if got := titleOf(StepReport{Index: "3", Agent: "{role: x}", Action: "dial", Status: StatusFailed, Reason: "SCENARIO_ERROR"}); got != "3 on {role: x}: dial\nfailed in -: SCENARIO_ERROR" {
		t.Errorf("tooltip %q", got)
	}
}
