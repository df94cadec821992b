package ctl

import (
	"fmt"
	"testing"
)

// clip is %q without fmt: the same text for every kind of string, cut or not.
func TestClipIsQuoted(t *testing.T) {
	for _, s := range []string{"", "hello", `a "quoted" \ word`, "tab\tnew\nline\x00\x7f", "héllo wörld ✓ 日本語",
		"\xff\xfe invalid utf-8", "0123456789abcdef0123456789abcdef0123456789", "ü0123456789abcdef0123456789abcdef"} {
		for _, n := range []int{0, 1, 5, 24, 32} {
			want := fmt.Sprintf("%q", s)
			if len(s) > n {
				want = fmt.Sprintf("%q...(%d bytes)", s[:n], len(s))
			}
			if got := clip(s, n); got != want {
				t.Errorf("clip(%q, %d) = %s, want %s", s, n, got, want)
			}
		}
	}
}
