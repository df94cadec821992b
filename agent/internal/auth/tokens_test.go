package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func mustTokens(t *testing.T, s string) *Tokens {
	t.Helper()
	toks, err := ParseTokens(strings.NewReader(s))
	if err != nil {
		t.Fatalf("ParseTokens(%.40q...): %v", s, err)
	}
	return toks
}

// TestParseTokensValid: comments, blank lines and white space around a line are skipped;
// names keep file order; a bare secret is named by BareTokenName; every character class of a
// name is accepted at both ends of its range.
func TestParseTokensValid(t *testing.T) {
	t.Parallel()
	in := "# comment\n\n  alice:alice-secret  \n\t#indented comment\nbare-secret-0123456789\n" +
		"a:s1\nz:s2\nA:s3\nZ:s4\n0:s5\n9:s6\n._@-:s7\nx:!~:colon\n"
	toks := mustTokens(t, in)
	want := []string{"alice", "sha256-4194319b9e81e859", "a", "z", "A", "Z", "0", "9", "._@-", "x"}
	if got := toks.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	if toks.Len() != len(want) {
		t.Errorf("Len() = %d, want %d", toks.Len(), len(want))
	}
	for secret, name := range map[string]string{
		"alice-secret": "alice", "bare-secret-0123456789": "sha256-4194319b9e81e859", "s1": "a", "s7": "._@-",
		"!~:colon": "x", // a secret may hold ':' and the printable ends of ASCII
	} {
		if got, ok := toks.Match(secret); !ok || got != name {
			t.Errorf("Match(%q) = %q, %v; want %q, true", secret, got, ok, name)
		}
	}
	// Names returns a copy: the set stays immutable.
	toks.Names()[0] = "mallory"
	if toks.Names()[0] != "alice" {
		t.Error("changing the slice Names returned changed the token set")
	}
}

// TestParseTokensErrors: each malformed file is refused with the line number and what to do,
// never quoting the line (it may hold a secret).
func TestParseTokensErrors(t *testing.T) {
	t.Parallel()
	long := "n:" + strings.Repeat("s", maxTokenLine)
	for _, tc := range []struct {
		name, in, err string
	}{
		{"empty", "", "no tokens (give one per line: NAME:SECRET)"},
		{"comments only", "# one\n\n   \n", "no tokens"},
		{"reserved prefix", "ok:x1\nsha256-0011:topsecret\n", `line 2: the token name starts with "sha256-", which is reserved`},
		{"empty name", ":topsecret", "line 1: empty name before ':'"},
		{"empty secret", "alice:", "line 1: empty secret after ':'"},
		{"space in name", "al ice:topsecret", "line 1: the text before the first ':' is not a token name"},
		{"backquote", "`:topsecret", "not a token name"},
		{"brace", "{:topsecret", "not a token name"},
		{"bracket", "[:topsecret", "not a token name"},
		{"slash", "/:topsecret", "not a token name"},
		{"non-ASCII", "é:topsecret", "not a token name"},
		{"space in secret", "n:top secret", "line 1: the secret contains white space or control characters"},
		{"tab in secret", "n:top\tsecret", "white space or control"},
		{"DEL in secret", "n:top\x7fsecret", "white space or control"},
		{"control in secret", "n:top\x01secret", "white space or control"},
		{"duplicate name", "a:topsecret1\n#\nb:x2\na:topsecret2\n", "line 4: the token name is already used on line 1"},
		{"duplicate secret", "a:topsecret\nb:topsecret\n", "line 2: the same secret as on line 1"},
		{"duplicate bare secret", "topsecret\n\ntopsecret\n", "line 3: the token name is already used on line 1"},
		{"line too long", "a:x1\n" + long + "\n", "line 2: bufio.Scanner: token too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			toks, err := ParseTokens(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("ParseTokens: %v, %.200v; want an error containing %q", toks, err, tc.err)
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Errorf("the error %q quotes the secret", err)
			}
		})
	}
}

// TestParseTokensLongestLine: the longest line the bound lets through, its line break
// included, is read.
func TestParseTokensLongestLine(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("s", maxTokenLine-3)
	toks := mustTokens(t, "n:"+secret+"\n")
	if name, ok := toks.Match(secret); !ok || name != "n" {
		t.Errorf("Match = %q, %v; want n, true", name, ok)
	}
}

// TestLoadTokens: a file is parsed; a missing one is os.ErrNotExist; a malformed one names
// the file and the line.
func TestLoadTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte("ci:ci-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("ci:\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	toks, err := LoadTokens(good)
	if err != nil || !slices.Equal(toks.Names(), []string{"ci"}) {
		t.Fatalf("LoadTokens(good) = %v, %v", toks, err)
	}
	if _, err := LoadTokens(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "token file: ") {
		t.Errorf("LoadTokens of a missing file: %v, want ErrNotExist", err)
	}
	if _, err := LoadTokens(bad); err == nil || err.Error() != "token file "+bad+": line 1: empty secret after ':' (write NAME:SECRET)" {
		t.Errorf("LoadTokens(bad) = %v", err)
	}
}

// TestBareTokenName: the name is the domain-separated sum of the secret, not its plain sum.
func TestBareTokenName(t *testing.T) {
	t.Parallel()
	if got := BareTokenName("bare-secret-0123456789"); got != "sha256-4194319b9e81e859" {
		t.Errorf("BareTokenName = %q", got)
	}
	plain := sha256.Sum256([]byte("bare-secret-0123456789"))
	if BareTokenName("bare-secret-0123456789") == "sha256-"+hex.EncodeToString(plain[:8]) {
		t.Error("BareTokenName is the plain SHA-256 of the secret")
	}
}

// TestMatch: every token matches its own secret, first and last included; no other string
// matches, a prefix or an extension of a secret included.
func TestMatch(t *testing.T) {
	t.Parallel()
	toks := mustTokens(t, "first:secret-1\nmiddle:secret-2\nlast:secret-3\n")
	for secret, name := range map[string]string{"secret-1": "first", "secret-2": "middle", "secret-3": "last"} {
		if got, ok := toks.Match(secret); !ok || got != name {
			t.Errorf("Match(%q) = %q, %v; want %q", secret, got, ok, name)
		}
	}
	for _, secret := range []string{"", "secret-", "secret-10", "Secret-1", "first"} {
		if got, ok := toks.Match(secret); ok || got != "" {
			t.Errorf("Match(%q) = %q, %v; want no match", secret, got, ok)
		}
	}
}

// TestSumOfHolds: SumOf finds every name, the first included; Holds needs both the name and
// the secret's sum.
func TestSumOfHolds(t *testing.T) {
	t.Parallel()
	toks := mustTokens(t, "first:secret-1\nlast:secret-2\n")
	s1, s2 := sha256.Sum256([]byte("secret-1")), sha256.Sum256([]byte("secret-2"))
	if got, ok := toks.SumOf("first"); !ok || got != s1 {
		t.Errorf("SumOf(first) = %x, %v", got, ok)
	}
	if got, ok := toks.SumOf("last"); !ok || got != s2 {
		t.Errorf("SumOf(last) = %x, %v", got, ok)
	}
	if got, ok := toks.SumOf("nobody"); ok || got != (Sum{}) {
		t.Errorf("SumOf(nobody) = %x, %v", got, ok)
	}
	for _, tc := range []struct {
		name string
		sum  Sum
		want bool
	}{
		{"first", s1, true}, {"last", s2, true}, {"first", s2, false}, {"nobody", s1, false}, {"nobody", Sum{}, false},
	} {
		if got := toks.Holds(tc.name, tc.sum); got != tc.want {
			t.Errorf("Holds(%s, %x) = %v, want %v", tc.name, tc.sum[:4], got, tc.want)
		}
	}
}
