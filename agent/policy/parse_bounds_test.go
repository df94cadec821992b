package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestParseBounds: a limit of exactly the largest int32 is taken, one more is refused; names
// of rule sets and rules must not be empty; a YAML syntax error is located by line.
func TestParseBounds(t *testing.T) {
	t.Parallel()
	p, err := Parse("p.yaml", []byte("default: {limits: {sockets: 2147483647}}\n"))
	if err != nil {
		t.Fatalf("sockets: 2147483647: %v", err)
	}
	if p.Default.Limits.Sockets != 2147483647 {
		t.Errorf("sockets = %d", p.Default.Limits.Sockets)
	}
	for _, tc := range []struct{ src, want string }{
		{"default: {limits: {sockets: 2147483648}}\n", "p.yaml:1:29: default.limits.sockets: want a whole number from 1 to 2147483647"},
		{"rule_sets:\n  - {name: \"\", callers: [\"token:a\"]}\n", "rule_sets[0].name: must not be empty"},
		{"default:\n  destinations:\n    allow: [{name: \"\"}]\n", ".name: must not be empty"},
	} {
		_, err := Parse("p.yaml", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.src, err, tc.want)
		}
	}
	_, err = Parse("p.yaml", []byte("default:\n  limits: {sockets: 1\n"))
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line == 0 || strings.HasPrefix(pe.Msg, "yaml: line") {
		t.Fatalf("a YAML syntax error: %#v, want a ParseError with its line", err)
	}
	if !strings.HasPrefix(err.Error(), "p.yaml:"+strconv.Itoa(pe.Line)+": ") {
		t.Errorf("error %q does not start with the file and line", err)
	}
}

// TestHandBuiltRuleSet: a RuleSet built in Go, not parsed, still matches its callers.
func TestHandBuiltRuleSet(t *testing.T) {
	t.Parallel()
	lab := &RuleSet{Name: "lab", Callers: []string{"token:alice", "token:bob"}}
	p := &Policy{Default: Default().Default, RuleSets: []*RuleSet{lab}}
	for id, want := range map[string]*RuleSet{"token:alice": lab, "token:bob": lab, "token:carol": p.Default} {
		name := strings.TrimPrefix(id, "token:")
		if got := p.For(Identity{ID: id, Token: name}); got != want {
			t.Errorf("For(%s) = rule set %q, want %q", id, got.Name, want.Name)
		}
	}
}

// TestUnixPrefixThroughSymlink: an allowed directory given through a symlink also allows the
// paths of the directory it points to, where the socket really is.
func TestUnixPrefixThroughSymlink(t *testing.T) {
	t.Parallel()
	real := t.TempDir()
	alias := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(real, alias); err != nil {
		t.Fatal(err)
	}
	s := mustParse(t, "default:\n  unix_paths: {allow: ["+alias+"]}\n").Default
	for _, tc := range []struct{ path, rule string }{
		{filepath.Join(alias, "a.sock"), ""},
		{filepath.Join(real, "b.sock"), ""},
		{filepath.Join(filepath.Dir(real), "c.sock"), "unix_paths.allow"},
	} {
		if got := ruleOf(s.CheckUnixPath(tc.path)); got != tc.rule {
			t.Errorf("unix path %s: rule %q, want %q", tc.path, got, tc.rule)
		}
	}
}

// TestSubjectGlobOverlap: a subject glob's fixed start and end may not overlap in the value:
// "ab*ba" needs at least "abba".
func TestSubjectGlobOverlap(t *testing.T) {
	t.Parallel()
	p := mustParse(t, "rule_sets:\n  - {name: g, callers: [\"subject:CN=ab*ba\"]}\n")
	for cn, want := range map[string]string{"aba": "default", "abba": "g", "abxyba": "g", "ab": "default", "ba": "default"} {
		id := Identity{ID: "cert:CN=" + cn, Subject: Subject{{{Type: "CN", Value: cn}}}}
		if got := p.For(id).Name; got != want {
			t.Errorf("CN=%s: rule set %q, want %q", cn, got, want)
		}
	}
}
