package contract

import (
	"fmt"
	"strings"
)

// Label bounds: an agent's labels (sockagent --label) travel in every GetInfo and name the
// agent in inventories, so they stay short and plain, as Kubernetes labels do.
const (
	MaxLabels        = 64
	MaxLabelKeyLen   = 63
	MaxLabelValueLen = 63
)

// CheckLabel says what is wrong with a label, or returns nil: a key of 1 to 63 letters, digits
// and ". _ - /" that starts and ends with a letter or digit; a value of up to 63 letters,
// digits and ". _ -", empty or starting and ending with a letter or digit.
func CheckLabel(key, value string) error {
	if key == "" || len(key) > MaxLabelKeyLen || !plain(key, "._-/") {
		return fmt.Errorf("label key %q: give 1 to %d letters, digits, '.', '_', '-' or '/', starting and ending with a letter or digit", key, MaxLabelKeyLen)
	}
	if len(value) > MaxLabelValueLen || value != "" && !plain(value, "._-") {
		return fmt.Errorf("label %s: value %q: give up to %d letters, digits, '.', '_' or '-', starting and ending with a letter or digit", key, value, MaxLabelValueLen)
	}
	return nil
}

// plain reports whether s holds only ASCII letters, digits and the runes of extra, and starts
// and ends with a letter or digit.
func plain(s, extra string) bool {
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(s); i++ {
		if !alnum(s[i]) && !strings.ContainsRune(extra, rune(s[i])) {
			return false
		}
	}
	return alnum(s[0]) && alnum(s[len(s)-1])
}
