package ctl

import (
	"os"
	"strings"
	"testing"
)

// The scenario shown in docs/scenarios.md runs as written.
func TestReadmeScenario(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../docs/scenarios.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/scenarios.md has no yaml block")
	}
	r := runArgs(t, writeScenario(t, "readme.yaml", block))
	r.want(t, ExitOK, []string{"\n9 passed, 0 failed\n"}, nil)
}
