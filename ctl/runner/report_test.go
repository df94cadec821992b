package runner

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/ctl/scenario"
)

// clip is %q without fmt: the same text for every kind of string, cut or not.
func TestClipIsQuoted(t *testing.T) {
	for _, s := range []string{"", "hello", `a "quoted" \ word`, "tab\tnew\nline\x00\x7f", "héllo wörld ✓ 日本語",
		"\xff\xfe invalid utf-8", "0123456789abcdef0123456789abcdef0123456789", "ü0123456789abcdef0123456789abcdef"} {
		for _, n := range []int{0, 1, 5, 24, 32} {
			want := fmt.Sprintf("%q", s)
			if len(s) > n {
				want = fmt.Sprintf("%q...(%d bytes)", s[:n], len(s))
			}
			if got := clip(s, n); got != want {
				t.Errorf("clip(%q, %d) = %s, want %s", s, n, got, want)
			}
		}
	}
}

// A step row is what fmt's "%-10s %-10s %-9s %-6s %9s  %s\n" makes of it, for wide and
// non-ASCII cells too.
func TestTableRowIsPrintf(t *testing.T) {
	for _, s := range []StepReport{
		{Index: "1", Agent: "a", Action: "send", Status: StatusPassed, DurationMS: 0.042, Message: "sent 64 bytes"},
		{Index: "12[3].4.5", Agent: "agent-with-a-long-name", Action: "recvfrom", Status: StatusFailed, Reason: "TIMEOUT", Message: "no data", DurationMS: 1500},
		{Index: "2", Agent: "sérveur", Action: "dial", Status: StatusSkipped, Message: "not run", Alias: "cli"},
		{Index: "3", Agent: "b", Action: "close", Status: StatusPassed, Name: "done", named: true},
	} {
		var got, want strings.Builder
		tw := &Table{w: &got, header: true}
		tw.Row(s)
		tw.Row(s) // the buffer is reused
		result := map[string]string{StatusPassed: "ok", StatusFailed: "FAIL", StatusSkipped: "skip"}[s.Status]
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
		line := fmt.Sprintf("%-10s %-10s %-9s %-6s %9s  %s\n", s.Index, s.Agent, s.Action, result, fmtMS(s.DurationMS), detail)
		want.WriteString(line + line)
		if got.String() != want.String() {
			t.Errorf("row:\n%q\nwant\n%q", got.String(), want.String())
		}
	}
}

// summary and describe say what fmt would have.
func TestSummaryAndDescribe(t *testing.T) {
	long := strings.Repeat("héllo\x00", 10)
	for _, o := range []scenario.Outcome{{Data: []byte("hi")}, {Data: []byte(long), EOF: true, From: "127.0.0.1:9"}, {EOF: true}} {
		want := "eof"
		if len(o.Data) > 0 {
			want = fmt.Sprintf("got %d bytes %s", len(o.Data), oldClip(string(o.Data), 32))
			if o.From != "" {
				want += " from " + o.From
			}
			if o.EOF {
				want += ", eof"
			}
		}
		if got := actions["recv"].summary(o, nil); got != want {
			t.Errorf("summary(recv, %+v) = %q, want %q", o, got, want)
		}
	}
	if got := actions["send"].summary(scenario.Outcome{Bytes: 12345}, nil); got != "sent 12345 bytes" {
		t.Errorf("summary(send) = %q", got)
	}
	args := scenario.Resolved{Args: map[string]scenario.Scalar{"socket": {Raw: "cli"}, "data": {Raw: long}, "timeout": {Raw: "5s"}}}
	want := "send cli data=" + oldClip(long, 24) + " timeout=" + oldClip("5s", 24)
	if got := describe("send", args); got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
}

func oldClip(s string, n int) string {
	if len(s) <= n {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q...(%d bytes)", s[:n], len(s))
}

// TestCleanupSummary: cleanup says what it closed, what was already gone (closed by the agent:
// a session's end, the idle timeout, a restart) and what it could not close, apart.
func TestCleanupSummary(t *testing.T) {
	for _, tc := range []struct {
		statuses []string
		want     string
	}{
		{[]string{"closed", "closed"}, "cleanup: 2 socket(s) closed\n"},
		{[]string{"closed", "gone", "gone"}, "cleanup: 1 socket(s) closed, 2 already gone\n"},
		{[]string{"gone", "failed"}, "cleanup: could not close s2 on a: boom\ncleanup: 0 socket(s) closed, 1 already gone, 1 could not be closed\n"},
	} {
		var r Report
		for i, s := range tc.statuses {
			r.Cleanup = append(r.Cleanup, CleanupReport{Agent: "a", Socket: fmt.Sprintf("s%d", i+1), Status: s, Error: "boom"})
		}
		var b strings.Builder
		NewTable(&b, nil).Summary(&r)
		if got, _, _ := strings.Cut(b.String(), "0 passed"); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.statuses, got, tc.want)
		}
	}
}
