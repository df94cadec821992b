package labtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// recorder is a testing.TB that records a skip or a failure instead of ending the test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

// TestSkipOutsideCI: without CI the test is skipped for the reason given; with CI set it
// fails, naming it.
func TestSkipOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	r := &recorder{TB: t}
	SkipOutsideCI(r, "no bridge")
	if r.skipped != "skipping: no bridge" || r.failed != "" {
		t.Errorf("outside CI: skipped %q, failed %q", r.skipped, r.failed)
	}
	t.Setenv("CI", "true")
	r = &recorder{TB: t}
	SkipOutsideCI(r, "no bridge")
	if r.failed != "CI must run this test, but: no bridge" || r.skipped != "" {
		t.Errorf("in CI: skipped %q, failed %q", r.skipped, r.failed)
	}
}

// TestNeedNetns: what is missing is named, a missing tool before not being root; with
// nothing missing NeedNetns does nothing.
func TestNeedNetns(t *testing.T) {
	found := func(string) (string, error) { return "/usr/bin/x", nil }
	noNft := func(name string) (string, error) {
		if name == "nft" {
			return "", errors.New("not found")
		}
		return "/usr/sbin/" + name, nil
	}
	for _, tc := range []struct {
		euid int
		look func(string) (string, error)
		want string
	}{
		{0, found, ""},
		{1000, found, "needs root for network namespaces"},
		{1000, noNft, "nft not found (iproute2, nftables)"},
	} {
		if got := netnsMissing(tc.euid, tc.look); got != tc.want {
			t.Errorf("euid %d: %q, want %q", tc.euid, got, tc.want)
		}
	}
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	NeedNetns(r)
	want := ""
	if why := netnsMissing(os.Geteuid(), exec.LookPath); why != "" {
		want = "CI must run this test, but: " + why
	}
	if r.failed != want || r.skipped != "" {
		t.Errorf("NeedNetns here: failed %q, skipped %q; want failed %q", r.failed, r.skipped, want)
	}
}
