package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"github.com/sockagent/sockagent/lab/labtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
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
		labtest.SkipOutsideCI(t, fmt.Sprintf("hard open-file limit %d: cannot start below it", lim.Max))
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

// headroomFlags keep 64 control connections under a 1,024 open-file limit.
var headroomFlags = []string{"--max-connections", "64", "--max-unauthenticated", "32", "--max-connections-per-peer", "32"}

// TestControlHeadroom: under a 1,024 open-file limit the agent's socket limit is lowered so
// that the files of --max-connections and of the agent itself stay free. Filled with sockets
// until it refuses one (LIMIT_EXCEEDED, never a failed accept of a control connection), the
// agent still accepts new control connections: 16 fresh clients at once, then a fresh
// `sockctl ls` lists every socket and `sockctl close` frees a slot that the next Bind takes.
func TestControlHeadroom(t *testing.T) {
	t.Parallel()
	const files, sockets = 1024, 1024 - 64 - 64
	argv := append([]string{"prlimit", "--nofile=" + strconv.Itoa(files) + ":" + strconv.Itoa(files), "--", sockagentBin, "--listen", "127.0.0.1:0"}, headroomFlags...)
	p := start(t, argv...)
	if _, err := p.log.waitFor(regexp.MustCompile(`msg="agent_limits.sockets lowered to fit the open-file limit, keeping files for control connections and the agent's own" sockets=`+strconv.Itoa(sockets)+` policy_sockets=4096 open_files=1024 max_connections=64 own_files=64`), time.Second); err != nil {
		t.Error(err)
	}
	ctx := ctxT(t)
	info, err := sockagentv1.NewAgentServiceClient(p.conn).GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if l := info.GetLimits(); l.GetAgentSockets() != sockets || l.GetOpenFilesSoft() != files || l.GetMaxConnections() != 64 {
		t.Errorf("GetInfo: agent_sockets %d, open files %d, max connections %d; want %d, %d, 64", l.GetAgentSockets(), l.GetOpenFilesSoft(), l.GetMaxConnections(), sockets, files)
	}
	sc := p.sockets()
	var ids []string
	var refusal error
	for range 2 * files { // bounded: the agent must refuse long before
		r, err := sc.Bind(ctx, &sockagentv1.BindRequest{Network: "udp4", Address: "127.0.0.1:0"})
		if err != nil {
			refusal = err
			break
		}
		ids = append(ids, r.GetSocket().GetSocketId())
	}
	if len(ids) != sockets {
		t.Errorf("the agent held %d sockets, want %d (its lowered limit)", len(ids), sockets)
	}
	wantStatus(t, refusal, codes.ResourceExhausted, contract.ReasonLimitExceeded)
	if m := status.Convert(refusal).Message(); !strings.Contains(m, "agent_limits.sockets ("+strconv.Itoa(sockets)+")") {
		t.Errorf("refusal %q does not name agent_limits.sockets (%d)", m, sockets)
	}

	// Fresh control connections, all at once, each with an RPC.
	conns := make([]*grpc.ClientConn, 16)
	for i := range conns {
		c, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
		r, err := sockagentv1.NewAgentServiceClient(c).GetInfo(ctx, &sockagentv1.GetInfoRequest{})
		if err != nil {
			t.Fatalf("fresh connection %d: %v", i, err)
		}
		if r.GetOpenSockets() != sockets {
			t.Errorf("fresh connection %d: open_sockets %d, want %d", i, r.GetOpenSockets(), sockets)
		}
	}
	out, errOut, code := runSockctl(t, "--agent", p.addr, "ls")
	if code != 0 || strings.Count(out, "\n") != sockets+1 {
		t.Fatalf("sockctl ls at the limit: exit %d, %d lines (want %d sockets and the header)\nstderr: %s", code, strings.Count(out, "\n"), sockets, errOut)
	}
	out, errOut, code = runSockctl(t, "--agent", p.addr, "close", ids[0])
	if code != 0 || !strings.Contains(out, ids[0]) {
		t.Fatalf("sockctl close %s at the limit: exit %d\nstdout: %s\nstderr: %s", ids[0], code, out, errOut)
	}
	if _, err := sc.Bind(ctx, &sockagentv1.BindRequest{Network: "udp4", Address: "127.0.0.1:0"}); err != nil {
		t.Fatalf("bind after sockctl close freed a slot: %v", err)
	}
	_, err = sc.Bind(ctx, &sockagentv1.BindRequest{Network: "udp4", Address: "127.0.0.1:0"})
	wantStatus(t, err, codes.ResourceExhausted, contract.ReasonLimitExceeded)
	if n := p.stop(t); n != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", n)
	}
}

// TestOpenFilesTooFewRefused: when the open-file limit leaves fewer than 16 sockets beside
// --max-connections and the agent's own files, sockagent refuses to start and says what to
// change.
func TestOpenFilesTooFewRefused(t *testing.T) {
	t.Parallel()
	_, errOut, code := runBin(t, "prlimit", "--nofile=1024:1024", "--", sockagentBin, "--listen", "127.0.0.1:0")
	want := "sockagent: open-file limit 1024 leaves room for 0 sockets beside --max-connections 1024 and 64 files of the agent's own, fewer than 16:\n" +
		"raise the limit (ulimit -n, LimitNOFILE= in a systemd unit) to at least 1104, or lower --max-connections\n"
	if code != 2 || !strings.HasSuffix(errOut, want) {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and stderr ending:\n%s", code, errOut, want)
	}
}
