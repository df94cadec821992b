package main

// Process-level tests: the built sockagent binary, driven over gRPC and by the real grpcurl
// binary, stopped by signals, and run inside network namespaces the test creates.

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Binaries built once by TestMain.
var (
	sockagentBin string
	sockctlBin   string
	grpcurlBin   string
)

// binBuild is what the binary at path reports of its build (contract.BuildFrom its build
// information): a test cannot know whether the go command stamped a version.
func binBuild(t *testing.T, path string) contract.Build {
	t.Helper()
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return contract.BuildFrom(bi, runtime.GOOS+"/"+runtime.GOARCH)
}

func TestMain(m *testing.M) {
	// Under .ci/cover the binaries this test starts are built with coverage (GOFLAGS); go test
	// points GOCOVERDIR at a directory it then ignores, so their counters go where the script
	// collects them.
	if d := os.Getenv("SOCKAGENT_GOCOVERDIR"); d != "" {
		_ = os.Setenv("GOCOVERDIR", d)
	}
	// The binary started again as a helper of a test (an attacker run as another user).
	if code, ok := runHelper(); ok {
		os.Exit(code)
	}
	dir, err := os.MkdirTemp("", "sockagent-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		sockagentBin = filepath.Join(dir, "sockagent")
		sockctlBin = filepath.Join(dir, "sockctl")
		grpcurlBin = filepath.Join(dir, "grpcurl")
		builds := [][]string{
			{"build", "-o", sockagentBin, "."},
			{"build", "-o", sockctlBin, "../../../ctl/cmd/sockctl"},
			{"build", "-o", grpcurlBin, "github.com/fullstorydev/grpcurl/cmd/grpcurl"},
		}
		errs := make([]error, len(builds))
		var wg sync.WaitGroup
		for i, args := range builds {
			wg.Go(func() {
				// go test puts $GOROOT/bin first on PATH, so this is the go running the test.
				out, err := exec.Command("go", args...).CombinedOutput()
				if err != nil {
					errs[i] = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// logLines collects a process's stderr line by line and lets a test wait for a line.
type logLines struct {
	mu      sync.Mutex
	lines   []string
	eof     bool
	changed chan struct{} // closed and replaced whenever lines or eof change
}

func newLogLines(r io.Reader) *logLines {
	l := &logLines{changed: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l.mu.Lock()
			l.lines = append(l.lines, sc.Text())
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.eof = true
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	}()
	return l
}

// waitFor returns the first line matching re, waiting for it up to timeout.
func (l *logLines) waitFor(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		for _, line := range l.lines {
			if m := re.FindStringSubmatch(line); m != nil {
				l.mu.Unlock()
				return m, nil
			}
		}
		eof, changed := l.eof, l.changed
		l.mu.Unlock()
		if eof {
			return nil, fmt.Errorf("log ended without a line matching %s:\n%s", re, l.String())
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil, fmt.Errorf("no log line matching %s within %s:\n%s", re, timeout, l.String())
		}
	}
}

// all waits until the stream ends (the process exited) and returns every line.
func (l *logLines) all(timeout time.Duration) ([]string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		eof, changed := l.eof, l.changed
		lines := append([]string(nil), l.lines...)
		l.mu.Unlock()
		if eof {
			return lines, nil
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil, fmt.Errorf("log still open after %s", timeout)
		}
	}
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// proc is one running sockagent process.
type proc struct {
	cmd    *exec.Cmd
	log    *logLines
	target string // gRPC target: host:port or unix:PATH
	addr   string // host:port when listening on TCP
	// socketDir is the agent's --socket-dir, where its default policy allows UNIX sockets.
	socketDir string
	done      chan struct{}
	err       error // Wait's result, set before done is closed
	conn      *grpc.ClientConn
}

var servingRE = regexp.MustCompile(`msg"?[=:]"?serving"?.*addr"?[=:]"?([^" ]+)`)

// start runs argv (the sockagent binary, perhaps behind `ip netns exec`) and waits until it
// logs that it serves. The process is killed when the test ends if it still runs. Without a
// --socket-dir in argv, the agent gets a directory of the test's, so that tests leave no
// socket directory behind on the host.
func start(t *testing.T, argv ...string) *proc {
	t.Helper()
	sockets := ""
	for i, a := range argv[:len(argv)-1] {
		if a == "--socket-dir" {
			sockets = argv[i+1]
		}
	}
	if sockets == "" {
		sockets = shortTempDir(t)
		argv = append(slices.Clip(argv), "--socket-dir", sockets)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	dieWithTest(cmd)
	// An io.Pipe, not StderrPipe: Wait then returns only after the last line was copied.
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	p := &proc{cmd: cmd, log: newLogLines(pr), done: make(chan struct{}), socketDir: sockets}
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.conn != nil {
			p.conn.Close()
		}
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("sockagent log:\n%s", p.log)
		}
	})
	m, err := p.log.waitFor(servingRE, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p.addr = m[1]
	p.target = m[1]
	for i, a := range argv {
		if a == "--listen" && strings.HasPrefix(argv[i+1], "unix:") {
			p.target = argv[i+1]
		}
	}
	p.conn, err = grpc.NewClient(p.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startLocal starts sockagent on 127.0.0.1 with a port the OS picks.
func startLocal(t *testing.T, flags ...string) *proc {
	t.Helper()
	return start(t, append([]string{sockagentBin, "--listen", "127.0.0.1:0"}, flags...)...)
}

func (p *proc) sockets() sockagentv1.SocketServiceClient {
	return sockagentv1.NewSocketServiceClient(p.conn)
}

// stop sends SIGTERM and returns the exit code; it fails the test if the process lingers.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	return p.wait(t)
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("sockagent still running 20s after the signal")
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", p.err)
	return -1
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantStatus checks the gRPC code and the ErrorInfo reason and domain of err.
func wantStatus(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got success, want %s %s", code, reason)
	}
	st := status.Convert(err)
	var got string
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			got = ei.GetReason()
			if ei.GetDomain() != contract.Domain {
				t.Errorf("ErrorInfo domain %q, want %q", ei.GetDomain(), contract.Domain)
			}
		}
	}
	if st.Code() != code || got != reason {
		t.Errorf("got %s %s, want %s %s (message %q)", st.Code(), got, code, reason, st.Message())
	}
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestServesHealthAndInfo(t *testing.T) {
	t.Parallel()
	p := startLocal(t)
	hc := healthpb.NewHealthClient(p.conn)
	for _, svc := range []string{"", "sockagent.v1.SocketService", "sockagent.v1.AgentService"} {
		r, err := hc.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health %q: %v", svc, err)
		}
		if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %s, want SERVING", svc, r.GetStatus())
		}
	}
	info, err := sockagentv1.NewAgentServiceClient(p.conn).GetInfo(ctxT(t), &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetPid() != int64(p.cmd.Process.Pid) {
		t.Errorf("GetInfo pid %d, want the process we started, %d", info.GetPid(), p.cmd.Process.Pid)
	}
	if info.GetOpenSockets() != 0 {
		t.Errorf("open_sockets %d, want 0", info.GetOpenSockets())
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

// TestUnixListen serves on a UNIX socket over a stale socket file left at the path, stops on
// SIGINT, and removes its socket file.
func TestUnixListen(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)
	path := filepath.Join(dir, "agent.sock")
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // the file stays, as after a crash
	p := start(t, sockagentBin, "--listen", "unix:"+path)
	r, err := healthpb.NewHealthClient(p.conn).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health over %s: %v %v", p.target, r, err)
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d after SIGINT, want 0", code)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file %s after exit: %v, want it removed", path, err)
	}
}

// shortTempDir is a directory with a short path: UNIX socket paths are limited to ~107 bytes.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestSIGTERMClosesSockets: SIGTERM wakes a blocked Accept with UNAVAILABLE AGENT_STOPPING,
// closes every socket the agent opened, and the process exits 0.
func TestSIGTERMClosesSockets(t *testing.T) {
	t.Parallel()
	p := startLocal(t)
	sc := p.sockets()

	lisAddr := listenTCP(t, sc).GetLocalAddress()
	// A connection the agent dialed out to a listener of the test: the peer must see EOF.
	_, peer := dialedPeer(t, sc)
	acceptErr := blockedAccept(t, sc, listenTCP(t, sc).GetSocketId())

	if code := p.stop(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	select {
	case err := <-acceptErr:
		wantStatus(t, err, codes.Unavailable, contract.ReasonAgentStopping)
	case <-time.After(20 * time.Second):
		t.Fatal("Accept still blocked after the agent exited")
	}

	_, err := net.DialTimeout("tcp", lisAddr, 5*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s after SIGTERM: %v, want connection refused", lisAddr, err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := peer.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("peer of the agent's dialed socket read %d, %v; want 0, EOF", n, err)
	}
	if _, err := p.log.waitFor(regexp.MustCompile(`msg=stopped`), 5*time.Second); err != nil {
		t.Error(err)
	}
}

// listenTCP has the agent listen on 127.0.0.1, on a port the OS picks.
func listenTCP(t *testing.T, sc sockagentv1.SocketServiceClient) *sockagentv1.Socket {
	t.Helper()
	r, err := sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return r.GetSocket()
}

// dialedPeer has the agent dial a listener of the test; it returns the agent's socket id and
// the test's end of the connection.
func dialedPeer(t *testing.T, sc sockagentv1.SocketServiceClient) (string, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r, err := sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return r.GetSocket().GetSocketId(), c
}

// blockedAccept starts an Accept on the listener id that blocks, and returns its result's
// channel once the agent shows it pending.
func blockedAccept(t *testing.T, sc sockagentv1.SocketServiceClient, id string) <-chan error {
	t.Helper()
	return blocked(t, sc, id, func(ctx context.Context) error {
		_, err := sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: id, Timeout: durationpb.New(time.Minute)})
		return err
	})
}

// blockedRecv starts a Recv on id that blocks, and returns its result's channel once the
// agent shows it pending.
func blockedRecv(t *testing.T, sc sockagentv1.SocketServiceClient, id string) <-chan error {
	t.Helper()
	return blocked(t, sc, id, func(ctx context.Context) error {
		_, err := sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: id, Timeout: durationpb.New(time.Minute)})
		return err
	})
}

// blocked runs call, which blocks on socket id, in a goroutine and returns its result's
// channel once the agent shows the call pending.
func blocked(t *testing.T, sc sockagentv1.SocketServiceClient, id string, call func(context.Context) error) <-chan error {
	t.Helper()
	ctx := ctxT(t)
	ch := make(chan error, 1)
	go func() { ch <- call(ctx) }()
	waitPending(t, sc, id, 1)
	return ch
}

// waitPending polls until n calls are pending on the socket: the sign that a call reached the
// agent and blocks there.
func waitPending(t *testing.T, sc sockagentv1.SocketServiceClient, id string, n uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := sc.GetSocket(ctxT(t), &sockagentv1.GetSocketRequest{SocketId: id})
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if r.GetSocket().GetPendingCalls() == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s: pending_calls %d, want %d", id, r.GetSocket().GetPendingCalls(), n)
		}
		time.Sleep(time.Millisecond) // polling interval; the condition above decides
	}
}

// TestJSONLog: --log-format json writes one JSON object per line, one line per RPC.
func TestJSONLog(t *testing.T) {
	t.Parallel()
	p := startLocal(t, "--log-format", "json", "--log-level", "debug") // every RPC's line, GetSocket's too
	sc := p.sockets()
	ctx := ctxT(t)
	l := listenTCP(t, sc)
	cli, err := sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: l.GetLocalAddress()})
	if err != nil {
		t.Fatal(err)
	}
	c := cli.GetSocket()
	_, err = sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: l.GetLocalAddress()})
	wantStatus(t, err, codes.AlreadyExists, contract.ReasonAddressInUse)
	refused := closedPort(t)
	_, err = sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: refused})
	wantStatus(t, err, codes.Unavailable, contract.ReasonConnectionRefused)
	for _, id := range []string{c.GetSocketId(), l.GetSocketId()} {
		if _, err := sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: l.GetSocketId()})
	wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSocket)
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}

	lines, err := p.log.all(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rpcs []map[string]any
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %q: %v", line, err)
			continue
		}
		if m["msg"] == "rpc" {
			delete(m, "time")
			delete(m, "level")
			delete(m, "msg")
			if _, ok := m["dur"].(float64); !ok {
				t.Errorf("rpc line without a numeric dur: %q", line)
			}
			delete(m, "dur")
			if p, _ := m["peer"].(string); !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("rpc line without the client's address as peer: %q", line)
			}
			delete(m, "peer")
			rpcs = append(rpcs, m)
		}
	}
	want := []map[string]any{
		{"rpc": "Listen", "caller": "anonymous", "audit": true, "socket": l.GetSocketId(), "network": "tcp", "local": l.GetLocalAddress(), "code": "OK"},
		{"rpc": "Dial", "caller": "anonymous", "audit": true, "socket": c.GetSocketId(), "network": "tcp", "local": c.GetLocalAddress(), "remote": l.GetLocalAddress(), "code": "OK"},
		{"rpc": "Listen", "caller": "anonymous", "audit": true, "network": "tcp", "local": l.GetLocalAddress(), "code": "AlreadyExists", "err": "listen tcp " + l.GetLocalAddress() + ": bind: address already in use"},
		{"rpc": "Dial", "caller": "anonymous", "audit": true, "network": "tcp", "remote": refused, "code": "Unavailable", "err": "dial tcp " + refused + ": connect: connection refused"},
		{"rpc": "Close", "caller": "anonymous", "audit": true, "socket": c.GetSocketId(), "network": "tcp", "local": c.GetLocalAddress(), "remote": l.GetLocalAddress(), "code": "OK"},
		{"rpc": "Close", "caller": "anonymous", "audit": true, "socket": l.GetSocketId(), "network": "tcp", "local": l.GetLocalAddress(), "code": "OK"},
		{"rpc": "GetSocket", "caller": "anonymous", "socket": l.GetSocketId(), "code": "NotFound", "err": "get " + l.GetSocketId() + ": unknown socket (never opened, or already closed)"},
	}
	if len(rpcs) != len(want) {
		t.Fatalf("%d rpc log lines, want %d (one per RPC):\n%s", len(rpcs), len(want), p.log)
	}
	// UNKNOWN_SOCKET goes on to name the agent instance (see TestRestartUnknownSocket).
	if e, _ := rpcs[6]["err"].(string); strings.Contains(e, "; this agent instance ") {
		rpcs[6]["err"] = e[:strings.Index(e, "; this agent instance ")]
	} else {
		t.Errorf("UNKNOWN_SOCKET without the agent instance: %q", e)
	}
	for i := range want {
		if fmt.Sprint(rpcs[i]) != fmt.Sprint(want[i]) {
			t.Errorf("rpc line %d:\n got %v\nwant %v", i, rpcs[i], want[i])
		}
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	liveSock := filepath.Join(t.TempDir(), "live.sock")
	live, err := net.Listen("unix", liveSock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Close() })
	sockets := shortTempDir(t) // a private --socket-dir for the cases that get that far, so none touches /run
	openDir := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(openDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(openDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // substring of stdout
		stderr string // substring of stderr
	}{
		{"unknown flag", []string{"--nope"}, 2, "", "flag provided but not defined: -nope"},
		{"bad log format", []string{"--log-format", "xml"}, 2, "", `--log-format "xml": use text or json`},
		{"bad log level", []string{"--log-level", "loud"}, 2, "", `--log-level "loud": use debug, info, warn or error`},
		{"bad duration", []string{"--default-timeout", "soon"}, 2, "", `invalid value "soon" for flag -default-timeout`},
		{"argument", []string{"extra"}, 2, "", `unexpected argument "extra"`},
		{"help", []string{"--help"}, 0, "", "Usage: sockagent [flags]"},
		{"version", []string{"--version"}, 0, "sockagent " + binBuild(t, sockagentBin).String() + "\n", ""},
		{"negative timeout", []string{"--default-timeout", "-1s"}, 2, "", "--default-timeout -1s: give a positive duration"},
		{"zero recv bytes", []string{"--max-recv-bytes", "0"}, 2, "", "--max-recv-bytes 0: give 1 to"},
		{"huge recv bytes", []string{"--max-recv-bytes", "5000000000"}, 2, "", "--max-recv-bytes 5000000000: give 1 to"},
		{"zero shutdown timeout", []string{"--shutdown-timeout", "0s"}, 2, "", "--shutdown-timeout 0s: give a positive duration"},
		{"address in use", []string{"--listen", busy.Addr().String(), "--socket-dir", sockets}, 1, "", "cannot listen"},
		{"live unix socket", []string{"--listen", "unix:" + liveSock, "--socket-dir", sockets}, 1, "", "another process serves on this socket"},
		{"bad address", []string{"--listen", "127.0.0.1:99999", "--socket-dir", sockets}, 1, "", "cannot listen"},
		{"relative socket dir", []string{"--socket-dir", "sockets"}, 2, "", `--socket-dir "sockets": give an absolute path`},
		{"socket dir others may enter", []string{"--listen", "127.0.0.1:0", "--socket-dir", openDir}, 1, "",
			"--socket-dir: agent directory " + openDir + " has mode 0755: other users could reach"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, sockagentBin, tt.args...)
			dieWithTest(cmd)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
			if !strings.Contains(stdout.String(), tt.stdout) || (tt.stdout == "" && stdout.Len() != 0) {
				t.Errorf("stdout %q, want %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderr) || (tt.stderr == "" && stderr.Len() != 0) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tt.stderr)
			}
		})
	}
}
