package policy

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzCallerMatch throws hostile certificate values and caller patterns at the matcher. For a
// subject whose CN is cnValue and whose O is "Example" (and nothing else):
//   - its RFC 4514 string is one line of printable text and parses back to the same subject;
//   - as a "cert:" pattern it matches that subject and not one whose CN differs;
//   - no pattern naming an attribute other than CN and O matches it, whatever the CN holds:
//     a value never poses as another attribute;
//   - a pattern without a prefix matches it only when it is "*";
//
// and no pattern makes the parser or the matcher panic or take more than linear time.
// Its seed corpus (testdata/fuzz/FuzzCallerMatch) runs with every go test.
func FuzzCallerMatch(f *testing.F) {
	f.Add("alice", "subject:OU=lab")
	f.Add("mallory,OU=lab", "subject:*OU=lab")
	f.Fuzz(func(t *testing.T, cnValue, pattern string) {
		s := Subject{{{Type: "CN", Value: cnValue}}, {{Type: "O", Value: "Example"}}}
		str := s.String()
		if strings.ContainsFunc(str, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("%.200q.String() = %.200q holds a control character", cnValue, str)
		}
		back, err := ParseSubject(str)
		if len(str) > maxDNLen { // longer than any certificate's subject: refused, not parsed
			if err == nil {
				t.Fatalf("ParseSubject of %d bytes succeeded; the limit is %d", len(str), maxDNLen)
			}
			return
		}
		if err != nil || !reflect.DeepEqual(back, s) {
			t.Fatalf("ParseSubject(%.200q) = %.200q, %v; want %.200q", str, back, err, s)
		}
		id := Identity{ID: "cert:" + str, Subject: s}
		self, err := compileCaller("cert:" + str)
		if err != nil || !self.matches(id) {
			t.Fatalf("cert:%.200s does not match its own subject: %v", str, err)
		}
		other := Subject{{{Type: "CN", Value: cnValue + "x"}}, {{Type: "O", Value: "Example"}}}
		if self.matches(Identity{ID: "cert:" + other.String(), Subject: other}) {
			t.Fatalf("cert:%.200s matches CN %.200q too", str, cnValue+"x")
		}

		c, err := compileCaller(pattern)
		if err != nil {
			return
		}
		got := c.matches(id)
		switch {
		case c.prefix == "" && got != (pattern == "*"):
			t.Fatalf("prefix-less pattern %.200q matches a certificate caller: %v", pattern, got)
		case (c.prefix == "subject:" || c.prefix == "cert:") && got && namesOther(c.subj, "CN", "O"):
			t.Fatalf("pattern %.200q matches subject %.200s, which has no such attribute", pattern, str)
		}
	})
}

// namesOther reports whether p names an attribute type other than those given.
func namesOther(p subjectPattern, types ...string) bool {
	for _, rdn := range p.rdns {
		for _, a := range rdn {
			known := false
			for _, t := range types {
				known = known || strings.EqualFold(a.typ, t)
			}
			if !known {
				return true
			}
		}
	}
	return false
}
