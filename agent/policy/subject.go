package policy

// Certificate subjects as RFC 4514 writes them, and the caller patterns that match them on
// their parsed attributes. A subject is never matched as one string: a common name such as
// "mallory,OU=lab" is one value, escaped when written ("CN=mallory\,OU=lab"), and a pattern
// matches values attribute by attribute, so no value can pose as another attribute.

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Attribute is one attribute of a certificate subject: its type, as RFC 4514 names it ("CN",
// "O", "OU", "C", "L", "ST", "STREET", "DC", "UID", "SERIALNUMBER", "POSTALCODE") or as a
// dotted OID ("2.5.4.4"), and its value, unescaped.
type Attribute struct {
	Type, Value string
}

// Subject is a certificate subject in RFC 4514 order: its relative distinguished names, the
// most specific first (the reverse of the certificate's ASN.1 order, so the CN usually comes
// first), each one or more attributes.
type Subject [][]Attribute

// String writes the subject as RFC 4514 does, attributes of one RDN joined by "+", RDNs by
// ",". Every character that could end a value or start another attribute is escaped with a
// backslash (, + " \ < > ; =, a leading # or space, a trailing space), a '*' as \2A (so the
// string, used as a "cert:" pattern, matches itself only), and so is every byte
// that is not printable text (control characters, invalid UTF-8, format characters such as
// bidirectional overrides) as \XX, so the string is one line that shows what it names and
// different subjects never write the same string.
func (s Subject) String() string {
	var b strings.Builder
	for i, rdn := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range rdn {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(escapeDNPart(a.Type, false))
			b.WriteByte('=')
			b.WriteString(escapeDNPart(a.Value, true))
		}
	}
	return b.String()
}

// Has reports whether the subject has an attribute of type typ (compared without regard to
// case) whose value is value.
func (s Subject) Has(typ, value string) bool {
	for _, rdn := range s {
		for _, a := range rdn {
			if strings.EqualFold(a.Type, typ) && a.Value == value {
				return true
			}
		}
	}
	return false
}

const hexDigits = "0123456789ABCDEF"

// escapeDNPart escapes a value (or a type: types the agent writes are names or OIDs, but
// escaping keeps a hostile one on one line too).
func escapeDNPart(v string, value bool) string {
	var b strings.Builder
	for i := 0; i < len(v); {
		r, size := utf8.DecodeRuneInString(v[i:])
		switch {
		case r == utf8.RuneError && size <= 1, r < 0x20, r == 0x7f, r >= 0x80 && !unicode.IsPrint(r):
			for _, c := range []byte(v[i : i+size]) {
				b.WriteByte('\\')
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xf])
			}
		case r == '*': // \2A, not a glob when the string is used as a cert: pattern
			b.WriteString(`\2A`)
		case strings.ContainsRune(`,+"\<>;=`, r),
			value && i == 0 && (r == '#' || r == ' '),
			value && i == len(v)-1 && r == ' ':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteString(v[i : i+size])
		}
		i += size
	}
	return b.String()
}

// ParseSubject parses an RFC 4514 subject string such as `CN=ci-1,O=Lab`: attribute types are
// names (letters, digits, '-') or dotted OIDs; values are text with backslash escapes (\, or
// \2C). Spaces after "," and "+" are skipped. Hex values ("#04..."), an attribute without
// "=" and a dangling escape are errors.
func ParseSubject(s string) (Subject, error) {
	pat, err := parseDN(s)
	if err != nil {
		return nil, err
	}
	out := make(Subject, len(pat))
	for i, rdn := range pat {
		out[i] = make([]Attribute, len(rdn))
		for j, a := range rdn {
			out[i][j] = Attribute{Type: a.typ, Value: strings.Join(a.pieces, "*")}
		}
	}
	return out, nil
}

// attrPattern is one attribute of a subject pattern: a type and a value pattern, the literal
// pieces between its unescaped '*'s (one piece: no star).
type attrPattern struct {
	typ    string
	pieces []string
}

func (a attrPattern) matches(v Attribute) bool {
	return strings.EqualFold(a.typ, v.Type) && globPieces(a.pieces, v.Value)
}

// globPieces matches s against the pieces of a pattern that were separated by '*'.
func globPieces(pieces []string, s string) bool {
	if len(pieces) == 1 {
		return pieces[0] == s
	}
	first, last := pieces[0], pieces[len(pieces)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	for _, p := range pieces[1 : len(pieces)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return true
}

// maxDNLen bounds a subject string or pattern; certificates' subjects are far shorter.
const maxDNLen = 4096

// parseDN parses an RFC 4514 string whose values may hold '*' globs ("\*" is a literal
// star). It returns the RDNs in the order written.
func parseDN(s string) ([][]attrPattern, error) {
	if len(s) > maxDNLen {
		return nil, fmt.Errorf("%d bytes, at most %d", len(s), maxDNLen)
	}
	if s == "" {
		return nil, errors.New("empty; write attributes such as CN=name,O=org")
	}
	var out [][]attrPattern
	var rdn []attrPattern
	for i := 0; ; {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		typ, n, err := parseDNType(s[i:])
		if err != nil {
			return nil, fmt.Errorf("at byte %d: %w", i, err)
		}
		i += n
		pieces, n, err := parseDNValue(s[i:])
		if err != nil {
			return nil, fmt.Errorf("value of %s at byte %d: %w", typ, i, err)
		}
		i += n
		rdn = append(rdn, attrPattern{typ: typ, pieces: pieces})
		if i == len(s) {
			return append(out, rdn), nil
		}
		if s[i] == ',' {
			out, rdn = append(out, rdn), nil
		}
		i++ // the separator parseDNValue stopped at: ',' or '+'
	}
}

// parseDNType reads "TYPE=" and returns TYPE and the bytes read.
func parseDNType(s string) (string, int, error) {
	eq := strings.IndexByte(s, '=')
	if eq < 0 {
		return "", 0, fmt.Errorf("%q has no '='; write TYPE=VALUE such as OU=lab", s)
	}
	typ := strings.TrimRight(s[:eq], " ")
	if !validDNType(typ) {
		return "", 0, fmt.Errorf("attribute type %q: use a name such as CN, O, OU, or a dotted OID such as 2.5.4.11", typ)
	}
	return strings.ToUpper(typ), eq + 1, nil
}

func validDNType(t string) bool {
	if t == "" {
		return false
	}
	if t[0] >= '0' && t[0] <= '9' { // numericoid: digits separated by single dots
		for _, part := range strings.Split(t, ".") {
			if part == "" || strings.Trim(part, "0123456789") != "" {
				return false
			}
		}
		return true
	}
	for i, r := range t {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '-')) {
			return false
		}
	}
	return true
}

// parseDNValue reads a value up to an unescaped ',' or '+' or the end, and returns its pieces
// between unescaped '*'s and the bytes read (not counting the separator).
func parseDNValue(s string) ([]string, int, error) {
	var pieces []string
	var cur []byte
	trailing := 0 // unescaped spaces at the end of cur, dropped as RFC 4514 has them escaped
	i := 0
	for i < len(s) && s[i] == ' ' { // and so are leading ones
		i++
	}
	if strings.HasPrefix(s[i:], "#") {
		return nil, 0, errors.New("hex values (#...) are not supported; escape a leading # as \\#")
	}
	for ; i < len(s) && s[i] != ',' && s[i] != '+'; i++ {
		c := s[i]
		switch c {
		case '\\':
			b, n, err := unescapeDN(s[i+1:])
			if err != nil {
				return nil, 0, err
			}
			cur, trailing = append(cur, b), 0
			i += n
		case '*':
			pieces, cur, trailing = append(pieces, string(cur[:len(cur)-trailing])), nil, 0
		case '"', ';', '<', '>', '=':
			return nil, 0, fmt.Errorf("%q must be escaped as \\%c", c, c)
		default:
			if c == ' ' {
				trailing++
			} else {
				trailing = 0
			}
			cur = append(cur, c)
		}
	}
	pieces = append(pieces, string(cur[:len(cur)-trailing]))
	return pieces, i, nil
}

// unescapeDN reads what follows a backslash: a special character, or two hex digits.
func unescapeDN(s string) (byte, int, error) {
	if s == "" {
		return 0, 0, errors.New("a backslash ends the value; escape it as \\\\")
	}
	if strings.IndexByte(`,+"\<>;= #*`, s[0]) >= 0 {
		return s[0], 1, nil
	}
	if len(s) >= 2 && isHex(s[0]) && isHex(s[1]) {
		return unhex(s[0])<<4 | unhex(s[1]), 2, nil
	}
	return 0, 0, fmt.Errorf("\\%c: escape only , + \" \\ < > ; = # * and space, or write a byte as \\XX", s[0])
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// subjectPattern is a parsed "subject:" or "cert:" caller pattern.
type subjectPattern struct {
	rdns  [][]attrPattern
	whole bool // cert:: the pattern is the whole subject; subject:: attributes it must have
	any   bool // cert:*: every certificate caller
}

func compileSubjectPattern(s string, whole bool) (subjectPattern, error) {
	if whole && s == "*" {
		return subjectPattern{whole: true, any: true}, nil
	}
	rdns, err := parseDN(s)
	if err != nil {
		return subjectPattern{}, err
	}
	return subjectPattern{rdns: rdns, whole: whole}, nil
}

// matches: a "subject:" pattern matches when the subject has, for every attribute of the
// pattern, an attribute of that type whose value matches (in any order, others allowed); a
// "cert:" pattern when the subject has exactly the pattern's RDNs and attributes, in order.
func (p subjectPattern) matches(s Subject) bool {
	if s == nil {
		return false
	}
	if p.any {
		return true
	}
	if p.whole {
		if len(s) != len(p.rdns) {
			return false
		}
		for i, rdn := range p.rdns {
			if len(s[i]) != len(rdn) {
				return false
			}
			for j, a := range rdn {
				if !a.matches(s[i][j]) {
					return false
				}
			}
		}
		return true
	}
	for _, rdn := range p.rdns {
		for _, a := range rdn {
			if !s.hasMatch(a) {
				return false
			}
		}
	}
	return true
}

func (s Subject) hasMatch(a attrPattern) bool {
	for _, rdn := range s {
		for _, v := range rdn {
			if a.matches(v) {
				return true
			}
		}
	}
	return false
}
