package ctl

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"unicode"
)

// readFile reads the data of --file.
func readFile(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read --file: %w", err)
	}
	return b, nil
}

// decodeHex decodes hex digits, ignoring whitespace; bad input is a usage error.
func decodeHex(text []byte) ([]byte, error) {
	digits := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, string(text))
	b, err := hex.DecodeString(digits)
	if err != nil {
		return nil, usagef("--hex: invalid hex data: %v", err)
	}
	return b, nil
}
