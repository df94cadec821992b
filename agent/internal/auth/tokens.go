// Package auth decides who calls the agent: bearer tokens (parsing, constant-time matching,
// revocation of the calls a token authenticated), the caller a verified client certificate
// names, and the caller the kernel vouches for on a UNIX socket. It knows no gRPC: the agent's
// adapter hands it the header values, the certificate and the peer's uid, so every decision
// is tested here, fast, without a server.
package auth

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// Tokens is an immutable set of bearer tokens with their names. Only SHA-256 sums of the
// secrets are kept.
type Tokens struct {
	names []string
	sums  [][sha256.Size]byte
}

// Sum is the SHA-256 of a token's secret, what Tokens keeps of it.
type Sum = [sha256.Size]byte

// LoadTokens reads a token file; see ParseTokens for the format.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens reads tokens, one per line: "NAME:SECRET", or a bare "SECRET" whose name is
// BareTokenName(SECRET). The caller identity of a token is "token:NAME".
// Surrounding white space is trimmed; blank lines and lines starting with '#' are ignored.
// A secret containing ':' must be given with a name. Names are letters, digits and ._@-, and
// do not start with "sha256-" (the bare secrets' names); secrets contain no white space.
// Names and secrets must be unique; at least one token is required. Errors give line numbers,
// never the line's text, which may hold a secret.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	seenName := map[string]int{}
	seenSum := map[Sum]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxTokenLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, secret, err := parseTokenLine(line, n)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256([]byte(secret))
		if prev, ok := seenName[name]; ok {
			return nil, fmt.Errorf("line %d: the token name is already used on line %d (each token needs its own name)", n, prev)
		}
		if prev, ok := seenSum[sum]; ok {
			return nil, fmt.Errorf("line %d: the same secret as on line %d (each caller needs its own)", n, prev)
		}
		seenName[name], seenSum[sum] = n, n
		t.names = append(t.names, name)
		t.sums = append(t.sums, sum)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	if len(t.names) == 0 {
		return nil, errors.New("no tokens (give one per line: NAME:SECRET)")
	}
	return t, nil
}

// maxTokenLine bounds one line of a token file, so that a file without line breaks is an
// error, not a buffer the size of the file.
const maxTokenLine = 64 << 10

// parseTokenLine splits line n of a token file (trimmed, not blank, not a comment) into a
// valid name and secret. No error quotes the line: what looks like a name may be the start of
// a bare secret that contains ':', and errors end up in logs.
func parseTokenLine(line string, n int) (name, secret string, err error) {
	name, secret, named := strings.Cut(line, ":")
	if !named {
		name, secret = BareTokenName(line), line
	}
	switch {
	case named && strings.HasPrefix(name, bareTokenPrefix):
		return "", "", fmt.Errorf("line %d: the token name starts with %q, which is reserved for bare secrets; choose another name", n, bareTokenPrefix)
	case name == "":
		return "", "", fmt.Errorf("line %d: empty name before ':' (write NAME:SECRET, or the secret alone)", n)
	case !validTokenName(name):
		return "", "", fmt.Errorf("line %d: the text before the first ':' is not a token name (letters, digits and ._@-); a secret that contains ':' needs a name in front: NAME:SECRET", n)
	case secret == "":
		return "", "", fmt.Errorf("line %d: empty secret after ':' (write NAME:SECRET)", n)
	case strings.ContainsFunc(secret, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return "", "", fmt.Errorf("line %d: the secret contains white space or control characters", n)
	}
	return name, secret, nil
}

// bareTokenPrefix starts the names of bare secrets.
const bareTokenPrefix = "sha256-"

// BareTokenName is the name of a token given as a bare secret: "sha256-" and the first 16 hex
// digits of the SHA-256 of "sockagent-token-id:" + secret. It depends on the secret alone, so
// a token keeps its identity, its sockets and its rule set wherever its line moves in the
// file, and another token never inherits them. The sum is domain-separated so that the name
// in logs and policies matches no published table of plain SHA-256 sums; a guessable secret
// is still guessable from its name, so bare secrets must be random (or give tokens names).
func BareTokenName(secret string) string {
	sum := sha256.Sum256([]byte("sockagent-token-id:" + secret))
	return bareTokenPrefix + hex.EncodeToString(sum[:8])
}

func validTokenName(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("._@-", r):
		default:
			return false
		}
	}
	return true
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.names) }

// Names are the tokens' names in file order (the caller identities without "token:").
func (t *Tokens) Names() []string { return slices.Clone(t.names) }

// Match returns the name of the token whose secret is secret. It compares SHA-256 sums in
// constant time against every token, without stopping at a match, so neither the time nor
// the secret's length tells which token (or how much of one) matched.
func (t *Tokens) Match(secret string) (string, bool) {
	sum := sha256.Sum256([]byte(secret))
	found := -1
	for i := range t.sums {
		eq := subtle.ConstantTimeCompare(sum[:], t.sums[i][:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return "", false
	}
	return t.names[found], true
}

// SumOf returns the SHA-256 of the secret of the token named name.
func (t *Tokens) SumOf(name string) (Sum, bool) {
	if i := slices.Index(t.names, name); i >= 0 {
		return t.sums[i], true
	}
	return Sum{}, false
}

// Holds reports whether t has the token named name with the secret whose sum is sum.
func (t *Tokens) Holds(name string, sum Sum) bool {
	s, ok := t.SumOf(name)
	return ok && s == sum
}
