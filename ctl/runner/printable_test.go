package runner

import (
	"strings"
	"testing"
)

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"127.0.0.1:80", "127.0.0.1:80"},
		{"/tmp/sock", "/tmp/sock"},
		{"café ü 日本", "café ü 日本"},
		{"\x1b]0;owned\x07\x1b[2J", `\x1b]0;owned\a\x1b[2J`},
		{"a\nb\rc\td", `a\nb\rc\td`},
		{"\x9b31m", `\x9b31m`},                   // an invalid byte that is C1 CSI in Latin-1 terminals
		{"\u009b31m", `\u009b31m`},               // C1 CSI as a rune
		{"gnp\u202eexe.pdf", `gnp\u202eexe.pdf`}, // a bidirectional override
		{"zero\u200bwidth", `zero\u200bwidth`},
		{"\x7f\x00", `\x7f\x00`},
		{"\xff", `\xff`},
		{"\ufffd", "\ufffd"}, // the replacement character itself is printable
	} {
		got := Printable(tc.in)
		if got != tc.want {
			t.Errorf("Printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 }) {
			t.Errorf("Printable(%q) = %q still holds a control character", tc.in, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Printable("10.0.0.1:7700 refused") }); n != 0 {
		t.Errorf("Printable of a printable string allocates %v times, want 0", n)
	}
}

// The run report's table shows an agent's error message and a peer's address escaped.
func TestTableEscapes(t *testing.T) {
	var b strings.Builder
	tw := NewTable(&b, nil)
	tw.Row(StepReport{Index: "1", Agent: "a", Action: "recvfrom", Status: StatusFailed, Reason: "TIMEOUT",
		Message: "no data from /tmp/p\x1b]0;pwn\x07"})
	tw.Summary(&Report{Agents: []AgentReport{{Name: "b", Address: "unix:/tmp/\x1b[2J", Error: "refused\r\x1b[1A"}}})
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07\r") {
		t.Errorf("the report holds control characters: %q", out)
	}
	for _, want := range []string{`TIMEOUT: no data from /tmp/p\x1b]0;pwn\a`, `agent b (unix:/tmp/\x1b[2J) unreachable: refused\r\x1b[1A`} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
}
