// Package golden compares a test's output with a file of its package's testdata, or rewrites
// that file when the test runs with -update (go test ./ctl/... -run NAME -update). Tests only:
// it registers the -update flag.
package golden

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata with the current output")

// Update reports whether the tests run with -update.
func Update() bool { return *update }

// Check compares got with the file at path, or with -update writes got there (making its
// directory). A difference is reported with the first byte where the two part, and both
// texts in full when they are short.
func Check(t testing.TB, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if msg := Diff(got, string(want)); msg != "" {
		t.Errorf("%s differs (go test -run %s -update rewrites it): %s", path, t.Name(), msg)
	}
}

// Diff says where got and want part, "" when they are equal.
func Diff(got, want string) string {
	if got == want {
		return ""
	}
	i := 0
	for i < min(len(got), len(want)) && got[i] == want[i] {
		i++
	}
	msg := fmt.Sprintf("at byte %d: got %q, want %q", i, got[i:min(i+80, len(got))], want[i:min(i+80, len(want))])
	if len(got) < 4096 && len(want) < 4096 {
		msg += "\n--- got\n" + got + "\n--- want\n" + want
	}
	return msg
}
