package matrix

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

// sampleResult is a finished 3 x 3 matrix of two services with one cell of each verdict,
// some not as expected.
func sampleResult() *Result {
	plan := &Plan{
		Name:     "web tier",
		Sources:  []Agent{{Name: "h1"}, {Name: "h2"}, {Name: "db10"}},
		Targets:  []Agent{{Name: "h1"}, {Name: "h2"}, {Name: "db10"}},
		Services: []Service{{Name: "web", Network: "tcp", Port: 8080}, {Name: "syslog", Network: "udp", Port: 5514}},
	}
	cell := func(svc, src, dst string, exp, v Verdict, reason, msg string, rtt time.Duration, attempts int) Cell {
		return Cell{Service: svc, Source: src, Target: dst, Expected: exp, Verdict: v, Reason: reason, Message: msg, RTT: rtt, Attempts: attempts, Address: "10.77.0.9:1"}
	}
	r := &Result{Name: plan.Name, Plan: plan, Elapsed: 1500 * time.Millisecond, Closed: 6, Left: 1,
		Unreachable: map[string]string{"db10": "no answer within 5s\x1b[2J", "h2": "refused"}}
	r.Cells = []Cell{
		cell("web", "h1", "h2", Open, Open, "", "", 120*time.Microsecond, 1),
		cell("web", "h1", "db10", Filtered, Filtered, "TIMEOUT", "i/o timeout", 0, 2),
		cell("web", "h2", "h1", Open, Closed, "CONNECTION_REFUSED", "connection refused", 0, 1),
		cell("web", "h2", "db10", Any, Unreachable, "HOST_UNREACHABLE", "no route to host", 0, 2),
		cell("web", "db10", "h1", Open, AgentUnavailable, "AGENT_UNAVAILABLE", "source db10: no answer", 0, 0),
		cell("web", "db10", "h2", Open, Error, "ECHO_MISMATCH", "the bytes echoed differ", 0, 1),
		cell("syslog", "h1", "h2", Open, Open, "", "", 95*time.Microsecond, 1),
		cell("syslog", "h1", "db10", Closed, Filtered, "TIMEOUT", "no echo", 0, 3),
		cell("syslog", "h2", "h1", Open, Open, "", "", 80*time.Microsecond, 1),
		cell("syslog", "h2", "db10", Open, Open, "", "", 70*time.Microsecond, 1),
		cell("syslog", "db10", "h1", Open, Open, "", "", 60*time.Microsecond, 1),
		cell("syslog", "db10", "h2", Open, Open, "", "", 50*time.Microsecond, 1),
	}
	return r
}

func TestWriteGrid(t *testing.T) {
	t.Parallel()
	r := sampleResult()
	if n := r.Mismatches(); n != 4 {
		t.Fatalf("%d mismatches, want 4", n)
	}
	var plain, colour bytes.Buffer
	if err := WriteGrid(&plain, r, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteGrid(&colour, r, true); err != nil {
		t.Fatal(err)
	}
	golden(t, "grid.golden", plain.String())
	golden(t, "grid-colour.golden", colour.String())
	if strings.Contains(plain.String(), "\x1b") {
		t.Error("escape sequences in the plain grid (colour off, or an agent's message unescaped)")
	}
	// With nothing left and every agent reached, neither line is there.
	r.Left, r.Unreachable = 0, nil
	plain.Reset()
	if err := WriteGrid(&plain, r, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plain.String(), "cleanup:") || strings.Contains(plain.String(), "unreachable:") {
		t.Errorf("cleanup or unreachable line without cause:\n%s", plain.String())
	}
	if strings.Count(colour.String(), red) != 4 || strings.Count(colour.String(), green) != 8 {
		t.Errorf("colour grid: %d red and %d green cells, want 4 and 8", strings.Count(colour.String(), red), strings.Count(colour.String(), green))
	}
}

func TestWriteJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := WriteJSON(&buf, sampleResult()); err != nil {
		t.Fatal(err)
	}
	golden(t, "result.json.golden", buf.String())
	var doc jsonResult
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Total != 12 || doc.AsExpected != 8 || doc.Mismatches != 4 || len(doc.Cells) != 12 || doc.Cells[0].RTTUS != 120 || doc.Cells[0].Port != 8080 || doc.Cells[7].Network != "udp" {
		t.Errorf("document %+v", doc)
	}
}

func TestWriteJUnit(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, sampleResult()); err != nil {
		t.Fatal(err)
	}
	golden(t, "result.junit.golden", buf.String())
	var doc junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	s := doc.Suites[0]
	failures := 0
	for _, c := range s.Cases {
		if c.Failure != nil {
			failures++
		}
	}
	if len(doc.Suites) != 1 || s.Tests != 12 || s.Failures != 4 || failures != 4 || len(s.Cases) != 12 {
		t.Errorf("suites %+v", doc)
	}
}

func TestWriteHTML(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := WriteHTML(&buf, sampleResult()); err != nil {
		t.Fatal(err)
	}
	golden(t, "result.html.golden", buf.String())
	html := buf.String()
	for _, banned := range []string{"http://", "https://", "<script", "src=", "@import"} {
		if strings.Contains(html, banned) {
			t.Errorf("the page has %q: it must be self-contained", banned)
		}
	}
	if n := strings.Count(html, " bad\""); n != 4 {
		t.Errorf("%d cells marked bad, want 4", n)
	}
	if n := strings.Count(html, "<td "); n != 18 {
		t.Errorf("%d cells, want 18 (2 services x 3 x 3)", n)
	}
}
