package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// TestGetInfoProcess: GetInfo reports the agent process's open files, threads and memory as
// /proc tells them, and its goroutines, when asked, and nothing when not; five sockets more
// are five open files more.
func TestGetInfoProcess(t *testing.T) {
	t.Parallel()
	p := startLocal(t)
	ac := sockagentv1.NewAgentServiceClient(p.conn)
	ctx := ctxT(t)
	plain, err := ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if plain.GetProcess() != nil {
		t.Errorf("process stats without asking: %v", plain.GetProcess())
	}
	read := func() *sockagentv1.ProcessStats {
		t.Helper()
		r, err := ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{Process: true})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetProcess()
	}
	// The Go runtime may start a thread at any moment, so the agent's answer is taken between
	// two reads of /proc/PID/status that agree (a few tries), and must equal them.
	var before *sockagentv1.ProcessStats
	var threads, rss int64
	statusPath := fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)
	for try := 0; ; try++ {
		s1, err := os.ReadFile(statusPath)
		if err != nil {
			t.Fatal(err)
		}
		before = read()
		s2, err := os.ReadFile(statusPath)
		if err != nil {
			t.Fatal(err)
		}
		threads, rss = statusValue(t, s1, "Threads:"), statusValue(t, s1, "VmRSS:")*1024
		if statusValue(t, s2, "Threads:") == threads || try == 9 {
			break
		}
	}
	if int64(before.GetThreads()) != threads {
		t.Errorf("threads %d, /proc/PID/status %d", before.GetThreads(), threads)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if int(before.GetOpenFiles()) != len(fds) {
		t.Errorf("open files %d, /proc/PID/fd lists %d", before.GetOpenFiles(), len(fds))
	}
	if r := int64(before.GetRssBytes()); r < rss/2 || r > 2*rss {
		t.Errorf("RSS %d bytes, /proc/PID/status %d", r, rss)
	}
	if g := before.GetGoroutines(); g < 4 || g > 100 {
		t.Errorf("goroutines %d in an idle agent, want 4 to 100", g)
	}
	sc := p.sockets()
	for range 5 {
		if _, err := sc.Bind(ctx, &sockagentv1.BindRequest{Network: "udp4", Address: "127.0.0.1:0"}); err != nil {
			t.Fatal(err)
		}
	}
	if after := read(); after.GetOpenFiles() != before.GetOpenFiles()+5 {
		t.Errorf("open files %d -> %d after 5 Binds, want +5", before.GetOpenFiles(), after.GetOpenFiles())
	}
	if n := p.stop(t); n != 0 {
		t.Errorf("exit status %d", n)
	}
}

func statusValue(t *testing.T, status []byte, name string) int64 {
	t.Helper()
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, name); ok {
			v, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no %s in /proc/PID/status", name)
	return 0
}
