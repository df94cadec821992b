// Package labtest is what the project's tests share to decide whether they can run here: a
// prerequisite this machine lacks (root, network namespaces, iproute2, nftables) skips a test
// on a developer's machine, and fails it in CI (CI set), where every test must run.
package labtest

import (
	"os"
	"os/exec"
	"testing"
)

// SkipOutsideCI skips t for why, except in CI, where the missing prerequisite is a failure,
// not a silent skip.
func SkipOutsideCI(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI must run this test, but: %s", why)
		return
	}
	t.Skip("skipping: " + why)
}

// NeedNetns skips (fails in CI) a test that needs root, ip and nft: network namespaces and
// their firewalls.
func NeedNetns(t testing.TB) {
	t.Helper()
	if why := netnsMissing(os.Geteuid(), exec.LookPath); why != "" {
		SkipOutsideCI(t, why)
	}
}

// netnsMissing says what a process of user euid lacks for network namespace tests, or "".
func netnsMissing(euid int, lookPath func(string) (string, error)) string {
	why := ""
	if euid != 0 {
		why = "needs root for network namespaces"
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := lookPath(tool); err != nil {
			why = tool + " not found (iproute2, nftables)"
		}
	}
	return why
}
