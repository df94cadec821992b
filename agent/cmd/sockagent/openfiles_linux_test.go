package main

import (
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// TestOpenFileLimitRaised: started with a low soft open-file limit, the agent runs with its
// soft limit at the hard one, logs it, and GetInfo reports it.
func TestOpenFileLimitRaised(t *testing.T) {
	t.Parallel()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max <= 1024 {
		t.Skipf("hard open-file limit %d: cannot start below it", lim.Max)
	}
	p := start(t, "sh", "-c", `ulimit -Sn 1024 && exec "$0" "$@"`, sockagentBin, "--listen", "127.0.0.1:0")
	info, err := sockagentv1.NewAgentServiceClient(p.conn).GetInfo(ctxT(t), &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	l := info.GetLimits()
	if l.GetOpenFilesHard() != lim.Max || l.GetOpenFilesSoft() != l.GetOpenFilesHard() {
		t.Errorf("GetInfo open files soft %d hard %d; want both %d", l.GetOpenFilesSoft(), l.GetOpenFilesHard(), lim.Max)
	}
	if _, err := p.log.waitFor(regexp.MustCompile(`msg="open-file limit" before=\d+ after=`+strconv.FormatUint(lim.Max, 10)+`\b`), time.Second); err != nil {
		t.Error(err)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}
