package ctl

import (
	"bytes"
	"context"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// On a terminal, sockctl run keeps a status line below the rows: drawn with a carriage
// return and erased before each row, gone before the summary; the rows are the same as
// elsewhere. Off a terminal (a pipe, a file, /dev/null) no control character is written.
func TestRunStatusLine(t *testing.T) {
	t.Parallel()
	path := writeScenario(t, "hello.yaml", helloTCP)
	master, slave := openPTY(t)
	if !isTerminal(slave) {
		t.Fatal("a pseudo-terminal is not taken for a terminal")
	}
	done := make(chan string, 1)
	go func() { // the terminal must be read as it is written: its buffer is small
		var b bytes.Buffer
		_, _ = io.Copy(&b, master)
		done <- b.String()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := run(ctx, []string{"run", path}, func(string) string { return "" }, nil, slave, io.Discard)
	slave.Close()
	var tty string
	select {
	case tty = <-done:
	case <-ctx.Done():
		t.Fatal("the terminal's output did not end")
	}
	if code != ExitOK {
		t.Fatalf("exit %d:\n%q", code, tty)
	}
	status := regexp.MustCompile(`\r\[\d+s\] \d+/10 done, 0 failed(, running: [^\x1b]*)?\x1b\[K`)
	if !status.MatchString(tty) {
		t.Errorf("no status line on the terminal:\n%q", tty)
	}
	plain := invocation{args: []string{"run", path}}.exec(t)
	if strings.ContainsAny(plain.stdout, "\r\x1b") || plain.code != ExitOK {
		t.Errorf("off a terminal (exit %d):\n%q", plain.code, plain.stdout)
	}
	// What the terminal shows once the line is erased: the same rows and summary, with the
	// terminal's \r\n for \n.
	shown := strings.ReplaceAll(status.ReplaceAllString(tty, ""), "\r\x1b[K", "")
	shown = strings.ReplaceAll(shown, "\r\n", "\n")
	norm := func(s string) string { // rows of a parallel block end in either order
		lines := strings.Split(spacesRE.ReplaceAllString(durationRE.ReplaceAllString(normalise(s), "D"), " "), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	if norm(shown) != norm(plain.stdout) {
		t.Errorf("the terminal shows\n%s\nwant what a pipe gets\n%s", shown, plain.stdout)
	}
	if i := strings.LastIndex(tty, "\x1b[K"); i > strings.Index(tty, "cleanup:") {
		t.Errorf("the status line was drawn after the summary began:\n%q", tty)
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(null) {
		t.Error("/dev/null is taken for a terminal")
	}
}
