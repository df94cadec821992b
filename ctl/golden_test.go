package ctl

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"

	goldenfile "github.com/sockagent/sockagent/ctl/internal/golden"
)

// portRE matches the port of a loopback address; ports differ from run to run.
var portRE = regexp.MustCompile(`(127\.0\.0\.1|\[::1\]):\d+`)

// cellsRE matches the padding between table cells.
var (
	cellsRE = regexp.MustCompile(` {2,}`)
	// idRE matches socket ids, whose instance part changes at every agent start.
	idRE  = regexp.MustCompile(`\bs[0-9a-f]{6}-([0-9]+)\b`)
	durRE = regexp.MustCompile(`^([0-9]+[hm])*[0-9]+s$`)
	// hostOptRE matches the effective socket options the host's sysctls decide (buffer
	// sizes, the MSS of loopback, the default congestion control).
	hostOptRE = regexp.MustCompile(`\b(recv_buffer|send_buffer|max_segment|congestion)=\w+`)
)

// normalise makes one command's output comparable across runs: ports become PORT, the
// instance part of socket ids XXXXXX, the options the host's sysctls decide HOST, a socket
// row's AGE and IDLE become Ns, and a table is
// aligned again (the width of its columns depends on the ports).
func normalise(s string) string {
	s = portRE.ReplaceAllString(s, "${1}:PORT")
	s = idRE.ReplaceAllString(s, "sXXXXXX-${1}")
	s = hostOptRE.ReplaceAllString(s, "${1}=HOST")
	if !strings.HasPrefix(s, "ID ") {
		return s
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for i, line := range strings.SplitAfter(s, "\n") {
		line = cellsRE.ReplaceAllString(line, "\t")
		if cells := strings.Split(line, "\t"); i > 0 && len(cells) == 11 {
			// AGE and IDLE depend on the time the test takes; a duration stays one.
			for _, j := range []int{9, 10} {
				if durRE.MatchString(strings.TrimSpace(cells[j])) {
					cells[j] = strings.Replace(cells[j], strings.TrimSpace(cells[j]), "Ns", 1)
				}
			}
			line = strings.Join(cells, "\t")
		}
		_, _ = tw.Write([]byte(line))
	}
	_ = tw.Flush()
	return b.String()
}

// golden compares got with testdata/NAME.golden, or rewrites that file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name+".golden"), got)
}

// TestTranscript runs the textbook TCP exchange in table mode, one command after another,
// and compares the whole session (stdout, stderr, exit codes) with a golden file.
func TestTranscript(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	var lport string // the listener's address
	var inst string  // the instance part of the agent's socket ids
	var b strings.Builder
	step := func(args ...string) result {
		t.Helper()
		shown := make([]string, len(args))
		for i, a := range args {
			shown[i] = a
			if a == "LPORT" {
				args[i], shown[i] = lport, normalise(lport)
			}
			if n, ok := strings.CutPrefix(a, "ID"); ok { // the n-th socket
				args[i] = "s" + inst + "-" + n
				shown[i] = normalise(args[i])
			}
			if strings.ContainsAny(a, " !") {
				shown[i] = "'" + a + "'"
			}
		}
		r := sockctl(t, addr, args...)
		b.WriteString("$ sockctl " + strings.Join(shown, " ") + "\n")
		b.WriteString(normalise(r.stdout))
		if r.stdout != "" && !strings.HasSuffix(r.stdout, "\n") {
			b.WriteString("\n")
		}
		for _, line := range strings.SplitAfter(r.stderr, "\n") {
			if line != "" {
				b.WriteString("[stderr] " + line)
			}
		}
		if r.code != ExitOK {
			b.WriteString("[exit " + strconv.Itoa(r.code) + "]\n")
		}
		return r
	}

	r := step("listen", "tcp", "127.0.0.1:0")
	lport = portRE.FindString(r.stdout)
	if lport == "" {
		t.Fatalf("listen printed no address:\n%s", r.stdout)
	}
	id := idRE.FindString(r.stdout)
	if len(id) != 9 || !strings.HasSuffix(id, "-1") {
		t.Fatalf("listen printed no socket id of the form sXXXXXX-1:\n%s", r.stdout)
	}
	inst = id[1:7]
	// dial before accept: the connection waits in the backlog, and the ids are deterministic.
	step("dial", "tcp", "LPORT")
	step("accept", "ID1", "--wait", "10s")
	step("send", "ID2", "Hello, World!")
	step("recv", "ID3", "--exact", "13")
	step("send", "ID3", "--hex", "48690a")
	step("recv", "ID2")
	step("get", "ID3")
	step("ls")
	step("shutdown", "ID2", "write")
	step("recv", "ID3")
	step("recv", "ID3", "--hex")
	step("close", "ID2")
	step("close", "ID3")
	step("close", "ID1")
	step("ls")
	golden(t, "transcript", b.String())
}
