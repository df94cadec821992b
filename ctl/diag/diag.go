// Package diag is what every sockctl file format reports its problems with: a position
// (1-based line and column), a problem at a position of a file, printed PATH:LINE:COL: message,
// the list of them one parse found, and the "did you mean" suggestion. It is a leaf: the
// scenario and matrix parsers share it without importing each other.
package diag

import (
	"strconv"
	"strings"
)

// Pos is a place in a file, 1-based.
type Pos struct {
	Line, Col int
}

// Error is one problem of a file.
type Error struct {
	Path string
	Pos  Pos
	Msg  string
}

// Error is "PATH:LINE:COL: message", leaving out what is unknown.
func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Pos.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(e.Pos.Line))
		if e.Pos.Col > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Pos.Col))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are the problems one parse found, each with its position.
type Errors struct {
	List []Error
}

// Error is one line per problem.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

// Suggest returns the candidate closest to s when it is close enough to be a typo of it (at
// most two edits, one for a word of three letters or fewer), or "". s is compared in lower
// case.
func Suggest(s string, candidates []string) string {
	best, bestD := "", 0
	for _, c := range candidates {
		d := distance(strings.ToLower(s), c)
		if best == "" || d < bestD {
			best, bestD = c, d
		}
	}
	limit := 2
	if len(s) <= 3 {
		limit = 1
	}
	if best == "" || bestD > limit {
		return ""
	}
	return best
}

// distance is the Damerau-Levenshtein (optimal string alignment) distance of a and b; words
// longer than 64 bytes are never typos of each other, so that a hostile file cannot make it
// quadratic in a long value.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// AgentAddress says what is wrong with an agent's address as a scenario, a matrix file or an
// inventory gives it (HOST:PORT with an IPv6 host in brackets, unix:PATH, or local), or "".
func AgentAddress(a string) string {
	const want = "want HOST:PORT, unix:PATH or local"
	switch {
	case a == "":
		return "no address; " + want
	case a == "local":
		return ""
	case strings.HasPrefix(a, "unix:"):
		if a == "unix:" {
			return "unix: needs a socket path, such as unix:/run/sockagent.sock"
		}
		return ""
	}
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return strconv.Quote(a) + ": no port; " + want
	}
	host, port := a[:i], a[i+1:]
	bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
	switch {
	case !bracketed && strings.ContainsAny(host, ":[]"):
		return strconv.Quote(a) + ": an IPv6 host goes in brackets, such as [::1]:7700; " + want
	case host == "" || host == "[]":
		return strconv.Quote(a) + ": no host; " + want
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return strconv.Quote(a) + ": port " + strconv.Quote(port) + " is not a number from 1 to 65535"
	}
	return ""
}
