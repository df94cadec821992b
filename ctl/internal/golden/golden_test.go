package golden

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what a check reports.
type recorder struct {
	testing.TB
	errs, fatals []string
}

func (r *recorder) Helper()      {}
func (r *recorder) Name() string { return "TestX" }
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatal(args ...any) { r.fatals = append(r.fatals, fmt.Sprint(args...)) }

// TestCheck: equal passes; a difference is reported where it starts; a missing file says how
// to write it; -update writes the file, directory included.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "x.golden")
	r := &recorder{TB: t}
	Check(r, path, "abc")
	if len(r.fatals) != 1 || !strings.Contains(r.fatals[0], "go test -run TestX -update writes it") {
		t.Fatalf("missing file: %q", r.fatals)
	}
	*update = true
	Check(r, path, "abc\ndef\n")
	*update = false
	if data, err := os.ReadFile(path); err != nil || string(data) != "abc\ndef\n" {
		t.Fatalf("-update wrote %q, %v", data, err)
	}
	r = &recorder{TB: t}
	Check(r, path, "abc\ndef\n")
	if len(r.errs)+len(r.fatals) != 0 {
		t.Fatalf("equal texts reported: %q %q", r.errs, r.fatals)
	}
	Check(r, path, "abc\nxef\n")
	if len(r.errs) != 1 || !strings.Contains(r.errs[0], `at byte 4: got "xef\n", want "def\n"`) || !strings.Contains(r.errs[0], "--- got\nabc\nxef\n") {
		t.Fatalf("difference reported as %q", r.errs)
	}
	if Diff(strings.Repeat("a", 5000), strings.Repeat("a", 4999)+"b") != `at byte 4999: got "a", want "b"` {
		t.Errorf("long texts: %q", Diff(strings.Repeat("a", 5000), strings.Repeat("a", 4999)+"b"))
	}
}
