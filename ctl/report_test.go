package ctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	goldenfile "github.com/sockagent/sockagent/ctl/internal/golden"
	"github.com/sockagent/sockagent/ctl/runner"
)

// sampleReport is the HTML report of examples/fan-in.yaml committed as a sample.
const sampleReport = "../docs/report-fan-in.html"

// The committed sample report is what sockctl makes of examples/fan-in.yaml today: the test
// runs the example on three in-process agents (listeners moved to loopback), with --html
// and -o json; the HTML written is the run's (3 lifelines, 24 arrows and a box, 8 links); the
// JSON, with its times, ports, socket ids and connection order made deterministic, renders
// to docs/report-fan-in.html byte for byte (go test ./ctl -run TestSampleReport -update
// rewrites it).
func TestSampleReport(t *testing.T) {
	t.Parallel()
	path := loopbackExample(t, "fan-in.yaml", 1)
	out := filepath.Join(t.TempDir(), "fan-in.html")
	r := runArgs(t, path, "--html", out, "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for what, want := range map[string]int{
		`<line class="lifeline"`:          3,
		`<g class="step pass arrow"`:      24,
		`<g class="step pass self"`:       1,
		`<path class="link"`:              8,
		`<tr class="pass" id="row-`:       25,
		`data-from="c1" data-to="server"`: 8, // c1 dials and sends twice; the server accepts and receives from c1 twice
	} {
		if n := strings.Count(string(page), what); n != want {
			t.Errorf("--html page has %d of %s, want %d", n, what, want)
		}
	}
	var rep runner.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("-o json: %v", err)
	}
	canonicalFanIn(t, &rep)
	var b bytes.Buffer
	if err := runner.WriteHTML(&b, &rep); err != nil {
		t.Fatal(err)
	}
	goldenfile.Check(t, sampleReport, b.String()) // what sockctl run --html makes of examples/fan-in.yaml
}

var (
	iterRE   = regexp.MustCompile(`^(2\.1|4)\[(\d)\]\.(\d)$`)
	connRE   = regexp.MustCompile(`\bconn_\d\b`)
	sockIDRE = regexp.MustCompile(`\bs([0-9a-f]{6})-(\d+)\b`)
	loPortRE = regexp.MustCompile(`127\.0\.0\.1:(\d+)`)
)

// canonicalFanIn makes a fan-in report deterministic. Which client's connection the server
// accepts k-th depends on the kernel: the server's steps of iteration k (accept, receive,
// answer) are renumbered after the dial whose connection they handled (c1's two, then c2's),
// as if the connections had arrived in that order. Then socket ids, ports and times are
// numbered in file order.
func canonicalFanIn(t *testing.T, rep *runner.Report) {
	t.Helper()
	byIndex := func(a, b runner.StepReport) int { return strings.Compare(a.Index, b.Index) }
	slices.SortFunc(rep.Steps, byIndex)
	var dials []string // local addresses of the dials, in file order
	for _, s := range rep.Steps {
		if s.Action == "dial" {
			dials = append(dials, s.LocalAddress)
		}
	}
	to := map[string]int{} // the server's iteration k -> the dial it served
	for _, s := range rep.Steps {
		if m := iterRE.FindStringSubmatch(s.Index); m != nil && s.Action == "accept" {
			j := slices.Index(dials, s.RemoteAddress)
			if j < 0 {
				t.Fatalf("accept %s from %s: no dial from there (%v)", s.Index, s.RemoteAddress, dials)
			}
			to[m[2]] = j
		}
	}
	if len(to) != 4 || len(dials) != 4 {
		t.Fatalf("%d accepts and %d dials, want 4 of each", len(to), len(dials))
	}
	for i := range rep.Steps {
		s := &rep.Steps[i]
		m := iterRE.FindStringSubmatch(s.Index)
		if m == nil {
			continue
		}
		j := fmt.Sprint(to[m[2]])
		s.Index = m[1] + "[" + j + "]." + m[3]
		for _, f := range []*string{&s.Alias, &s.Detail, &s.Message, &s.Name} {
			*f = connRE.ReplaceAllString(*f, "conn_"+j)
		}
		if s.Action == "accept" { // the server's sockets: listener 1, then accepts 2..5 in order
			for _, f := range []*string{&s.Socket, &s.Message} {
				*f = sockIDRE.ReplaceAllStringFunc(*f, func(id string) string {
					return id[:strings.LastIndexByte(id, '-')+1] + fmt.Sprint(to[m[2]]+2)
				})
			}
		}
	}
	slices.SortFunc(rep.Steps, byIndex)
	slices.SortFunc(rep.Cleanup, func(a, b runner.CleanupReport) int {
		return strings.Compare(a.Agent+" "+a.Alias, b.Agent+" "+b.Alias)
	})
	rep.DurationMS, rep.File = 25, "examples/fan-in.yaml"
	for i := range rep.Steps {
		rep.Steps[i].DurationMS = float64(1 + i%3)
		rep.Steps[i].StartMS = float64(i)
	}
	// Ports and socket ids, numbered as they first appear in file order.
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	text := numberAll(string(data), loPortRE, "127.0.0.1:%d", 10001)
	text = numberAll(text, regexp.MustCompile(`\bs[0-9a-f]{6}\b`), "s%06x", 0xa00001)
	*rep = runner.Report{}
	if err := json.Unmarshal([]byte(text), rep); err != nil {
		t.Fatal(err)
	}
	// The server's accepts took the numbers of the connections they handled: each alias
	// names the one socket its number says, once (a renumbering that collided would not).
	seen := map[string]string{}
	for _, s := range rep.Steps {
		if s.Socket != "" {
			if prev, dup := seen[s.Socket]; dup {
				t.Fatalf("socket %s made by steps %s and %s", s.Socket, prev, s.Index)
			}
			seen[s.Socket] = s.Index
		}
	}
}

// numberAll replaces each distinct match of re in s by format with a number, from first,
// in the order they first appear.
func numberAll(s string, re *regexp.Regexp, format string, first int) string {
	numbers := map[string]string{}
	return re.ReplaceAllStringFunc(s, func(m string) string {
		n, ok := numbers[m]
		if !ok {
			n = fmt.Sprintf(format, first+len(numbers))
			numbers[m] = n
		}
		return n
	})
}

// --html writes nothing but says where when it cannot write the file: exit 1, the run's
// table still printed.
func TestRunHTMLUnwritable(t *testing.T) {
	t.Parallel()
	path := writeScenario(t, "hello.yaml", helloTCP)
	out := filepath.Join(t.TempDir(), "no-such-dir", "r.html")
	r := runArgs(t, path, "--html", out)
	r.want(t, ExitFailure, []string{"again = "}, []string{"write --html " + out + ": open " + out + ": no such file or directory"})
}

// durationRE matches a row's duration, which varies between runs, and spacesRE the padding
// before it.
var (
	durationRE = regexp.MustCompile(`\b[0-9.]+(µs|ms|s)\b`)
	spacesRE   = regexp.MustCompile(` +`)
)
