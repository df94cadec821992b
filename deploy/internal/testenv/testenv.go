// Package testenv holds what the deploy tests share: the rule that a test which cannot run
// here skips on a developer's machine and fails in CI, and the repository's root.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// Require skips t when ok is false, or fails it when the CI variable is set: CI must run
// every test. why says what is missing and how to get it.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and this test cannot run: %s", why)
	}
	t.Skip(why)
}

// Root is the repository's root directory: the nearest directory above the test's working
// directory (its package's) that holds deploy/go.mod.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "deploy", "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no deploy/go.mod above the working directory: run the test inside the repository")
		}
		dir = parent
	}
}
