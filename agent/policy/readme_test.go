package policy_test

import (
	"os"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/agent/policy"
)

// yamlAfter returns the first ```yaml block after marker in docs/security.md.
func yamlAfter(t *testing.T, readme, marker string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, marker)
	if !ok {
		t.Fatalf("docs/security.md lacks %q", marker)
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("docs/security.md has no yaml block after %q", marker)
	}
	return block
}

// docs/security.md quotes the default policy exactly, and its example policy parses.
func TestReadmePolicies(t *testing.T) {
	data, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	def := yamlAfter(t, readme, "The default policy (no `--policy`):")
	_, want, _ := strings.Cut(policy.DefaultYAML, "\n") // without its first comment line
	if def != want {
		t.Errorf("docs/security.md's default policy differs from policy.DefaultYAML:\n%s\nwant:\n%s", def, want)
	}
	example := yamlAfter(t, readme, "A policy file, for example:")
	if _, err := policy.Parse("README example", []byte(example)); err != nil {
		t.Errorf("docs/security.md's example policy: %v", err)
	}
}
