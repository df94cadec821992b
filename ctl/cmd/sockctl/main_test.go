package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/ctl"
	"github.com/sockagent/sockagent/ctl/cmd/sockctl/internal/oneproc"
)

// TestBusyCommandsCatchSignals ties sockctl's two lists of its commands: oneproc.Busy (the
// commands that keep every CPU; oneproc initialises before ctl and cannot import it) and ctl's
// quick commands (which catch no signal). Each busy name is a real command, and none is quick:
// a busy command holds what it opened (agents, streams) and must clean up on Ctrl-C.
func TestBusyCommandsCatchSignals(t *testing.T) {
	for _, name := range oneproc.Busy {
		var out, errOut bytes.Buffer
		if code := ctl.Main(t.Context(), []string{name, "--help"}, strings.NewReader(""), &out, &errOut); code != ctl.ExitOK || !strings.Contains(out.String(), "sockctl "+name) {
			t.Errorf("oneproc.Busy names %q: `sockctl %s --help` exits %d and prints %q, not that command's help", name, name, code, firstLine(out.String()+errOut.String()))
		}
		if ctl.Quick([]string{name}) {
			t.Errorf("busy command %q is quick (catches no signal)", name)
		}
	}
	if !oneproc.OneShot([]string{"info"}) || oneproc.OneShot([]string{"--agent", "x", "connect"}) {
		t.Error("OneShot: info should be one-shot, connect not")
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
