package scenario

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	goldenfile "github.com/sockagent/sockagent/ctl/internal/golden"
)

// TestInvalidGolden parses each testdata/invalid/*.yaml and compares the problems reported
// with NAME.golden (go test -update rewrites the golden files).
func TestInvalidGolden(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("found %d invalid files, want the whole corpus", len(files))
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(name, data)
			if err == nil {
				t.Fatalf("Parse accepted an invalid file: %+v", f)
			}
			if f != nil {
				t.Errorf("Parse returned a file with its error")
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T, want *Errors", err)
			}
			if len(errs.List) == 0 || len(errs.List) > maxErrors {
				t.Errorf("%d problems, want 1..%d", len(errs.List), maxErrors)
			}
			for i, e := range errs.List {
				if e.Path != name || e.Pos.Line < 1 || e.Pos.Col < 1 {
					t.Errorf("problem %d without a path and position: %+v", i, e)
				}
				if i > 0 && (e.Pos.Line < errs.List[i-1].Pos.Line ||
					e.Pos.Line == errs.List[i-1].Pos.Line && e.Pos.Col < errs.List[i-1].Pos.Col) {
					t.Errorf("problem %d out of order: %v after %v", i, e.Pos, errs.List[i-1].Pos)
				}
			}
			got := err.Error() + "\n"
			goldenfile.Check(t, strings.TrimSuffix(path, ".yaml")+".golden", got)
		})
	}
}

// TestValidFiles: every testdata/valid file parses.
func TestValidFiles(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no valid files")
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(path, data); err != nil {
			t.Errorf("%v", err)
		}
	}
}
