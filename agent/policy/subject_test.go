package policy

import (
	"reflect"
	"strings"
	"testing"
)

// cn is a subject with common name cn and organization o (none when empty), as a certificate
// has it: the values are the certificate's, never parsed from a string.
func cn(cn, o string) Subject {
	var s Subject
	if cn != "" {
		s = append(s, []Attribute{{"CN", cn}})
	}
	if o != "" {
		s = append(s, []Attribute{{"O", o}})
	}
	return s
}

func ident(s Subject) Identity { return Identity{ID: "cert:" + s.String(), Subject: s} }

// A value is written escaped, so it cannot pose as another attribute or reach the terminal
// as a control sequence, and distinct subjects are distinct strings.
func TestSubjectString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    Subject
		want string
	}{
		{cn("alice", "sockagent tests"), "CN=alice,O=sockagent tests"},
		{cn("mallory,OU=lab", "Example"), `CN=mallory\,OU\=lab,O=Example`},
		{cn("O=Lab", ""), `CN=O\=Lab`},
		{cn("", "Lab"), "O=Lab"},
		{cn(" #lead+trail ", ""), `CN=\ #lead\+trail\ `},
		{cn("#x", ""), `CN=\#x`},
		{cn("a\\b\"c<d>e;f", ""), `CN=a\\b\"c\<d\>e\;f`},
		{cn("red\x1b[31m\x00\x7f\xff", ""), `CN=red\1B[31m\00\7F\FF`},
		{cn("bidi\u202egnp.exe", ""), `CN=bidi\E2\80\AEgnp.exe`},
		{cn("star*", ""), `CN=star\2A`},
		{cn("café", ""), "CN=café"},
		{Subject{{{"CN", "a"}, {"OU", "b"}}, {{"O", "c"}}}, "CN=a+OU=b,O=c"},
		{Subject{{{"2.5.4.4", "Doe"}}}, "2.5.4.4=Doe"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("%q.String() = %s, want %s", tc.s, got, tc.want)
		}
		back, err := ParseSubject(tc.s.String())
		if err != nil || !reflect.DeepEqual(back, tc.s) {
			t.Errorf("ParseSubject(%s) = %q, %v; want %q", tc.s.String(), back, err, tc.s)
		}
	}
	if a, b := cn("", "Lab").String(), cn("O=Lab", "").String(); a == b {
		t.Errorf("a subject without CN and one whose CN is O=Lab are both %s", a)
	}
}

// subject: and cert: patterns match parsed attributes: a CN holding ",OU=lab" is a CN, and
// no glob crosses from one value into another.
func TestSubjectPatterns(t *testing.T) {
	t.Parallel()
	mallory := cn("mallory,OU=lab", "Example")
	labHost := Subject{{{"CN", "h1"}}, {{"OU", "lab"}}, {{"O", "Example"}}}
	noCN, cnLab := cn("", "Lab"), cn("O=Lab", "")
	for _, tc := range []struct {
		pattern string
		id      Identity
		want    bool
	}{
		{"subject:OU=lab", ident(labHost), true},
		{"subject:OU=lab", ident(mallory), false},
		{"subject:OU=lab,O=Example", ident(labHost), true},
		{"subject:O=Example,OU=lab", ident(labHost), true}, // any order
		{"subject:OU=lab,O=Other", ident(labHost), false},  // every attribute
		{"subject:ou=la*", ident(labHost), true},           // types in any case, globs per value
		{"subject:CN=*", ident(noCN), false},
		{"subject:CN=mallory*", ident(mallory), true},
		{"subject:CN=mallory\\,OU\\=lab", ident(mallory), true},
		{"subject:CN=*,O=Example", ident(mallory), true},
		{"subject:CN=mallory", ident(mallory), false},
		{"cert:O=Lab", ident(noCN), true},
		{"cert:O=Lab", ident(cnLab), false},
		{`cert:CN=O\=Lab`, ident(cnLab), true},
		{`cert:CN=O\=Lab`, ident(noCN), false},
		{"cert:CN=h1", ident(labHost), false}, // the whole subject
		{"cert:CN=h*,OU=lab,O=Example", ident(labHost), true},
		{"cert:CN=h1,O=Example,OU=lab", ident(labHost), false}, // in order
		{"cert:*", ident(mallory), true},
		{"cert:*", Identity{ID: "token:x", Token: "x"}, false},
		{"cert:" + mallory.String(), ident(mallory), true}, // an identity matches itself
		{"cert:" + cn("a*", "").String(), ident(cn("ab", "")), false},
		// Globs over the caller ID never reach into a certificate's subject.
		{"*OU=lab", ident(mallory), false},
		{"*OU=lab*", ident(mallory), false},
		{"cert*", ident(mallory), false},
		{"*", ident(mallory), true},
		{"*:ci", Identity{ID: "token:ci", Token: "ci"}, true},
		{"token:ci", Identity{ID: "cert:CN=ci", Subject: cn("ci", ""), Token: "ci"}, true},
		{"token:ci", ident(cn("ci", "")), false},
		{"subject:OU=lab", Identity{ID: "token:x", Token: "x"}, false},
	} {
		c, err := compileCaller(tc.pattern)
		if err != nil {
			t.Errorf("compileCaller(%q): %v", tc.pattern, err)
			continue
		}
		if got := c.matches(tc.id); got != tc.want {
			t.Errorf("%q matches %s: %v, want %v", tc.pattern, tc.id.ID, got, tc.want)
		}
	}
}

func TestCallerPatternErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ pattern, want string }{
		{"subject:*OU=lab", `subject pattern "*OU=lab": at byte 0: attribute type "*OU"`},
		{"subject:OU", `has no '='`},
		{"subject:OU=lab,", `has no '='`},
		{"subject:CN=a=b", `'=' must be escaped as \=`},
		{"subject:CN=a\\", "a backslash ends the value"},
		{"subject:CN=\\q", `\q: escape only`},
		{"subject:CN=#0c01", "hex values"},
		{"cert:", "empty caller pattern"},
		{"subject:", "empty caller pattern"},
		{"", "empty caller pattern"},
		{"subject:" + strings.Repeat("CN=a,", 1000), "at most 4096"},
	} {
		_, err := compileCaller(tc.pattern)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("compileCaller(%.40q): %v, want an error containing %q", tc.pattern, err, tc.want)
		}
	}
	// In a file, with its place.
	_, err := Parse("p.yaml", []byte("rule_sets:\n  - callers: [\"subject:*OU=lab\"]\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "p.yaml:2:") || !strings.Contains(err.Error(), `attribute type "*OU"`) {
		t.Errorf("Parse: %v, want p.yaml:2:COL: ... attribute type \"*OU\"", err)
	}
}
