package policy

import (
	"reflect"
	"strings"
	"testing"
)

// TestParseDNAccepts: every character class of an attribute type at both ends of its range,
// escapes (named and hex, every hex digit class at both ends), and spaces around values, which
// are dropped unless escaped.
func TestParseDNAccepts(t *testing.T) {
	t.Parallel()
	type ap = attrPattern
	for _, tc := range []struct {
		in   string
		want [][]attrPattern
	}{
		{"a=1", [][]ap{{{"A", []string{"1"}}}}},
		{"z=1,A=2+Z=3", [][]ap{{{"Z", []string{"1"}}}, {{"A", []string{"2"}}, {"Z", []string{"3"}}}}},
		{"x0-9=1", [][]ap{{{"X0-9", []string{"1"}}}}},
		{"0.9=1", [][]ap{{{"0.9", []string{"1"}}}}},
		{"9.0.1=1", [][]ap{{{"9.0.1", []string{"1"}}}}},
		{`CN=a\,b\+c\\d\*e\ `, [][]ap{{{"CN", []string{`a,b+c\d*e `}}}}},
		{`CN=\30\39\61\66\41\46`, [][]ap{{{"CN", []string{"09afAF"}}}}},
		{`CN=\ff\FF\aA\90\0a`, [][]ap{{{"CN", []string{"\xff\xff\xaa\x90\n"}}}}},
		{"CN=  padded  ,O=x", [][]ap{{{"CN", []string{"padded"}}}, {{"O", []string{"x"}}}}},
		{"CN=   ", [][]ap{{{"CN", []string{""}}}}},
		{"CN=ab  *cd  *", [][]ap{{{"CN", []string{"ab", "cd", ""}}}}},
		{"  CN =v", [][]ap{{{"CN", []string{"v"}}}}},
	} {
		got, err := parseDN(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseDN(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := parseDN("CN=" + strings.Repeat("x", maxDNLen-3)); err != nil {
		t.Errorf("a pattern of exactly %d bytes: %v", maxDNLen, err)
	}
}

// TestParseDNRefuses: each malformed pattern is refused with what is wrong.
func TestParseDNRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"CN=" + strings.Repeat("x", maxDNLen-2), "4097 bytes, at most 4096"},
		{"", "empty; write attributes"},
		{"=x", `at byte 0: attribute type "": use a name`},
		{"CN", `at byte 0: "CN" has no '='`},
		{"-x=1", `attribute type "-x"`},
		{"x/=1", `attribute type "x/"`},
		{"x:=1", `attribute type "x:"`},
		{"x_=1", `attribute type "x_"`},
		{"0x=1", `attribute type "0x"`},
		{"1..2=1", `attribute type "1..2"`},
		{`CN=\`, "a backslash ends the value"},
		{`CN=\q`, `\q: escape only`},
		{`CN=\/0`, `\/: escape only`},
		{`CN=\:0`, `\:: escape only`},
		{"CN=\\`0", "\\`: escape only"},
		{`CN=\g0`, `\g: escape only`},
		{`CN=\@0`, `\@: escape only`},
		{`CN=\G0`, `\G: escape only`},
		{`CN=\0`, `\0: escape only`},
		{"CN=#00", "hex values (#...) are not supported"},
		{"CN=a;b", `';' must be escaped`},
	} {
		if _, err := parseDN(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseDN(%.40q): %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

// TestGlobPieces: the pieces between stars are found in order, without overlapping.
func TestGlobPieces(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pieces []string
		s      string
		want   bool
	}{
		{[]string{"a", "mid", "z"}, "a-mid-z", true},
		{[]string{"a", "mid", "z"}, "amidz", true},
		{[]string{"a", "mid", "z"}, "a-mi-d-z", false},
		{[]string{"a", "mid", "mid", "z"}, "amidz", false},
		{[]string{"a", "mid", "mid", "z"}, "amidmidz", true},
		{[]string{"", "xy", "x", ""}, "xyx", true},
		{[]string{"", "xy", "x", ""}, "xy", false},
		{[]string{"exact"}, "exact", true},
		{[]string{"exact"}, "exactly", false},
	} {
		if got := globPieces(tc.pieces, tc.s); got != tc.want {
			t.Errorf("globPieces(%q, %q) = %v, want %v", tc.pieces, tc.s, got, tc.want)
		}
	}
}
