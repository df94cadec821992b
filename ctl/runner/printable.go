package runner

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Printable returns s ready to show on a terminal, on one line: every character a terminal
// would act on or that hides what is shown (C0 and C1 control characters such as ESC, CR and
// newline, DEL, invalid UTF-8, invisible format characters such as bidirectional overrides,
// and other non-printing runes) is written as a Go escape: \x1b, \n, \u202e. Agents and their
// peers choose addresses, paths, host names and error messages: printed unescaped, an escape
// sequence in one could rewrite the screen, the window title or the clipboard. Printable
// strings (the usual case) come back unchanged, without allocating.
func Printable(s string) string {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i])>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(s[i])&0xf, 16))
		case unicode.IsPrint(r) && !unicode.Is(unicode.Cf, r):
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRuneToASCII(r) // '\x1b', '\n', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}
