package diag

import (
	"strings"
	"testing"
)

func TestError(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{Path: "f.yaml", Pos: Pos{Line: 3, Col: 7}, Msg: "bad"}, "f.yaml:3:7: bad"},
		{Error{Path: "f.yaml", Pos: Pos{Line: 3}, Msg: "bad"}, "f.yaml:3: bad"},
		{Error{Path: "f.yaml", Msg: "bad"}, "f.yaml: bad"},
		{Error{Pos: Pos{Line: 2, Col: 1}, Msg: "bad"}, "2:1: bad"},
		{Error{Msg: "bad"}, "bad"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.e, got, c.want)
		}
	}
	errs := &Errors{List: []Error{{Path: "a", Pos: Pos{Line: 1, Col: 1}, Msg: "x"}, {Path: "a", Pos: Pos{Line: 2, Col: 1}, Msg: "y"}}}
	if got := errs.Error(); got != "a:1:1: x\na:2:1: y" {
		t.Errorf("%q", got)
	}
}

func TestSuggest(t *testing.T) {
	t.Parallel()
	known := []string{"services", "sources", "targets", "on", "all"}
	for in, want := range map[string]string{
		"servces": "services", "Sourcse": "sources", "tragets": "targets", "targetsxx": "targets",
		"targetsxxx": "", "of": "on", "ox": "on", "xy": "", "al": "all", "abc": "", "": "",
		"a234567890123456789012345678901234567890123456789012345678901234567": "",
		"no": "on", "axx": "", "onxx": "on",
	} {
		if got := Suggest(in, known); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("x", 64) // compared: at most 64 bytes
	if got := Suggest(long+"y"[:0], []string{long[:63] + "z"}); got != long[:63]+"z" {
		t.Errorf("64 bytes: %q", got)
	}
	if got := Suggest("x", nil); got != "" {
		t.Errorf("no candidates: %q", got)
	}
}

// TestAgentAddress: the forms an agent's address may take, and what each wrong one is told.
func TestAgentAddress(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"127.0.0.1:7700", ""},
		{"[::1]:7700", ""},
		{"agent.example:1", ""},
		{"unix:/run/sockagent/sockagent.sock", ""},
		{"unix:relative.sock", ""},
		{"local", ""},
		{"", "no address; want HOST:PORT, unix:PATH or local"},
		{"unix:", "unix: needs a socket path, such as unix:/run/sockagent.sock"},
		{"10.0.0.1", `"10.0.0.1": no port; want HOST:PORT, unix:PATH or local`},
		{"::1:7700", `"::1:7700": an IPv6 host goes in brackets, such as [::1]:7700; want HOST:PORT, unix:PATH or local`},
		{"[::1:7700", `"[::1:7700": an IPv6 host goes in brackets, such as [::1]:7700; want HOST:PORT, unix:PATH or local`},
		{":7700", `":7700": no host; want HOST:PORT, unix:PATH or local`},
		{"[]:7700", `"[]:7700": no host; want HOST:PORT, unix:PATH or local`},
		{"h:0", `"h:0": port "0" is not a number from 1 to 65535`},
		{"h:65536", `"h:65536": port "65536" is not a number from 1 to 65535`},
		{"h:65535", ""},
		{"h:http", `"h:http": port "http" is not a number from 1 to 65535`},
	} {
		if got := AgentAddress(c.in); got != c.want {
			t.Errorf("AgentAddress(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
