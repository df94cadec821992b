package ctl

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/agent"
)

// hostile is what a peer or a local user can put in a path: an OSC that sets the window title
// (ended by BEL), a clear-screen CSI, a bidirectional override.
const hostile = "\x1b]0;pwn\x07\x1b[2J\u202e"

// hostileShown is hostile as sockctl must print it: escaped, on one line.
const hostileShown = `\x1b]0;pwn\a\x1b[2J\u202e`

// Addresses, paths and error messages an agent sends back are printed with every terminal
// control character escaped: in tables, in the "from" line of recvfrom, in errors.
func TestHostileStringsEscaped(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "esc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := startAgentConfig(t, agent.Config{SocketDir: dir}) // UNIX sockets go there
	sockPath := filepath.Join(dir, "a"+hostile)
	peerPath := filepath.Join(dir, "p"+hostile)

	r := ok(t, addr, "bind", "unixgram", sockPath)
	checkEscaped(t, "bind", r)
	if !strings.Contains(r.stdout, "a"+hostileShown) {
		t.Errorf("bind's table does not show the path escaped:\n%s", r.stdout)
	}
	id := strings.Fields(strings.Split(r.stdout, "\n")[1])[0]

	peer, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: peerPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.WriteTo([]byte("hi"), &net.UnixAddr{Name: sockPath, Net: "unixgram"}); err != nil {
		t.Fatal(err)
	}
	r = ok(t, addr, "recvfrom", id, "--timeout", "5s")
	checkEscaped(t, "recvfrom", r)
	if r.stdout != "hi" || !strings.Contains(r.stderr, "from "+peerPath[:len(peerPath)-len(hostile)]+hostileShown) {
		t.Errorf("recvfrom: stdout %q, stderr %q; want hi, and the peer's path escaped", r.stdout, r.stderr)
	}
	r = ok(t, addr, "ls")
	checkEscaped(t, "ls", r)
	r = sockctl(t, addr, "dial", "unix", filepath.Join(dir, "missing"+hostile))
	checkEscaped(t, "dial", r)
	if r.code != ExitFailure || !strings.Contains(r.stderr, "missing"+hostileShown) {
		t.Errorf("dial: exit %d, stderr %q; want %d and the path escaped", r.code, r.stderr, ExitFailure)
	}
	ok(t, addr, "close", id)
}

// checkEscaped fails when sockctl's output holds a control character other than newline (and
// the tab of none of its tables), or a bidirectional override.
func checkEscaped(t *testing.T, what string, r result) {
	t.Helper()
	for name, out := range map[string]string{"stdout": r.stdout, "stderr": r.stderr} {
		if strings.ContainsFunc(out, func(r rune) bool { return r < 0x20 && r != '\n' || r == 0x7f || r == '\u202e' }) {
			t.Errorf("%s: %s holds a terminal control character: %q", what, name, out)
		}
	}
}
