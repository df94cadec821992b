package contract

import (
	"strings"
	"testing"
)

func TestCheckLabel(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, tc := range []struct {
		key, value string
		ok         bool
	}{
		{"zone", "a", true},
		{"topology.kubernetes.io/zone", "eu-west-1a", true},
		{"role", "", true},
		{long, long, true},
		{"a", "b", true},
		{"", "a", false},
		{long + "a", "a", false},
		{"zone", long + "a", false},
		{"-zone", "a", false},
		{"zone-", "a", false},
		{"zo ne", "a", false},
		{"zone", "a/b", false},
		{"zone", "-a", false},
		{"zone", "a-", false},
		{"zone", "é", false},
		{"zöne", "a", false},
	} {
		if err := CheckLabel(tc.key, tc.value); (err == nil) != tc.ok {
			t.Errorf("CheckLabel(%q, %q) = %v, want ok %v", tc.key, tc.value, err, tc.ok)
		}
	}
	if err := CheckLabel("zone", "a/b"); err == nil || !strings.Contains(err.Error(), `label zone: value "a/b"`) {
		t.Errorf("error %v does not name the label and value", err)
	}
}
