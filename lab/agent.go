package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// modulePath is the module whose source tree Up builds the agent from.
const modulePath = "github.com/sockagent/sockagent"

// agentBinary returns the sockagent to run: bin if given; else one built from the source tree
// around the working directory into dir; else "sockagent" from PATH.
func agentBinary(ctx context.Context, bin, dir string, log *slog.Logger) (string, error) {
	if bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return "", err
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return "", fmt.Errorf("agent binary: %w", err)
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("agent binary %s is not an executable file", abs)
		}
		return abs, nil
	}
	if root, ok := moduleRoot(); ok {
		if _, err := exec.LookPath("go"); err == nil {
			out := filepath.Join(dir, "sockagent")
			log.Info("building sockagent", "src", root, "out", out)
			cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./agent/cmd/sockagent")
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				return "", fmt.Errorf("go build ./agent/cmd/sockagent in %s: %w\n%s", root, err, b)
			}
			return out, nil
		}
	}
	p, err := exec.LookPath("sockagent")
	if err != nil {
		return "", errors.New("no sockagent: give --agent-bin PATH, run from the sockagent source tree (with go installed), or put sockagent in PATH")
	}
	return filepath.Abs(p)
}

// moduleRoot finds the sockagent source tree around the working directory.
func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for range 64 {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			line, _, _ := strings.Cut(string(data), "\n")
			return dir, strings.TrimSpace(line) == "module "+modulePath
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", false
}

// agentProc is an agent this process started; done closes when it has exited (and was
// reaped).
type agentProc struct {
	pid  int
	done chan struct{}
	err  error // Wait's result, set before done closes
}

// socketDirOf is the UNIX socket directory of the agent whose log is logPath: beside the log in
// the lab's state directory, so a lab never touches the host's /run/sockagent, and removed
// with the lab.
func socketDirOf(logPath string) string { return strings.TrimSuffix(logPath, ".log") + ".sockets" }

// startAgent starts sockagent inside namespace ns, serving on addr, in a session of its own
// (stdin /dev/null; stdout and stderr to logPath); detached from this process unless attached.
func startAgent(bin, ns, addr, logPath string, extra []string, attached bool, log *slog.Logger) (*agentProc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("agent log: %w", err)
	}
	defer f.Close() // the child has its own copy
	args := append([]string{"netns", "exec", ns, bin, "--listen", addr, "--log-format", "json", "--insecure",
		"--socket-dir", socketDirOf(logPath)}, extra...)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = f, f
	detach(cmd, attached)
	log.Info("starting agent", "netns", ns, "listen", addr, "log", logPath)
	log.Debug("run", "cmd", "ip "+strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	p := &agentProc{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitAgent waits until the host's agent answers GetInfo, from the root namespace over the
// bridge, as the agent started for it (same pid). It gives up when the agent exits or after
// timeout.
func waitAgent(ctx context.Context, h Host, p *agentProc, timeout time.Duration) error {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("no answer within %s", timeout))
	defer cancel()
	exited := errors.New("agent exited")
	ctx, cancelExit := context.WithCancelCause(ctx)
	defer cancelExit(nil)
	if p != nil {
		go func() {
			select {
			case <-p.done:
				cancelExit(fmt.Errorf("%w (%v)", exited, p.err))
			case <-ctx.Done():
			}
		}()
	}
	conn, err := grpc.NewClient(h.AgentAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	info, err := sockagentv1.NewAgentServiceClient(conn).GetInfo(ctx, &sockagentv1.GetInfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		if c := context.Cause(ctx); c != nil {
			err = c
		}
		return fmt.Errorf("agent %s (pid %d) in %s: %w; log %s:\n%s", h.AgentAddr, h.PID, h.Namespace, err, h.Log, logTail(h.Log, 8))
	}
	if int(info.GetPid()) != h.PID {
		return fmt.Errorf("%s is answered by pid %d, not by the agent started for %s (pid %d)", h.AgentAddr, info.GetPid(), h.Name, h.PID)
	}
	return nil
}

// logTail returns the last n lines of a log file, indented.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		lines = append(lines, "  "+sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "  (empty)"
	}
	return strings.Join(lines, "\n")
}

// stopProcesses sends SIGTERM to pids, waits (bounded) until they are gone, then SIGKILLs
// those still there and waits again. procs are the ones this process started (and reaps).
func stopProcesses(pids []int, procs map[int]*agentProc) error {
	gone := func(p int) bool {
		if ap, ok := procs[p]; ok {
			select {
			case <-ap.done:
				return true
			default:
				return false
			}
		}
		return !alive(p)
	}
	waitAll := func(timeout time.Duration) []int {
		deadline := time.Now().Add(timeout)
		for {
			left := slices.DeleteFunc(slices.Clone(pids), gone)
			if len(left) == 0 || time.Now().After(deadline) {
				return left
			}
			time.Sleep(pollInterval) // polling the processes' state, bounded by deadline
		}
	}
	for _, p := range pids {
		_ = signal(p, syscall.SIGTERM)
	}
	left := waitAll(termTimeout)
	if len(left) == 0 {
		return nil
	}
	for _, p := range left {
		_ = signal(p, syscall.SIGKILL)
	}
	pids = left
	if left = waitAll(killTimeout); len(left) > 0 {
		return fmt.Errorf("processes %v still alive after SIGKILL", left)
	}
	return nil
}

// isAgentOf reports whether pid runs a sockagent serving on addr (the state file's pid may
// have been reused by something else since).
func isAgentOf(pid int, addr string) bool {
	args := cmdline(pid)
	for i, a := range args {
		if (a == "--listen" || a == "-listen") && i+1 < len(args) && args[i+1] == addr {
			return true
		}
		if a == "--listen="+addr || a == "-listen="+addr {
			return true
		}
	}
	return false
}

// checkRing makes each host's agent dial the next host's agent port (h1 -> h2 -> ... -> h1)
// and close the connection again: frames between two hosts cross the bridge, which a
// firewall in the root namespace may filter (net.bridge.bridge-nf-call-iptables=1 with a
// FORWARD policy of drop, as Docker sets), while the root namespace still reaches every host.
func checkRing(ctx context.Context, hosts []Host, timeout time.Duration) error {
	if len(hosts) < 2 {
		return nil
	}
	errs := make([]error, len(hosts))
	done := make(chan struct{})
	for i, h := range hosts {
		next := hosts[(i+1)%len(hosts)]
		go func() {
			defer func() { done <- struct{}{} }()
			errs[i] = dialVia(ctx, h, next.AgentAddr, timeout)
		}()
	}
	for range hosts {
		<-done
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w\nthe hosts do not reach each other over the bridge while the root namespace reaches them all: "+
			"is bridged traffic filtered? (sysctl net.bridge.bridge-nf-call-iptables is 1 and a FORWARD rule or policy drops, "+
			"as with Docker; allow forwarding on the lab's bridge, or set that sysctl to 0)", err)
	}
	return nil
}

// dialVia asks h's agent to open a TCP connection to addr, then closes it.
func dialVia(ctx context.Context, h Host, addr string, timeout time.Duration) error {
	conn, err := grpc.NewClient(h.AgentAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout+2*time.Second)
	defer cancel()
	sc := sockagentv1.NewSocketServiceClient(conn)
	r, err := sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: addr, Timeout: durationpb.New(timeout)})
	if err != nil {
		return fmt.Errorf("host %s cannot connect to %s: %w", h.Name, addr, err)
	}
	if _, err := sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: r.GetSocket().GetSocketId()}); err != nil {
		return fmt.Errorf("host %s: close its test connection: %w", h.Name, err)
	}
	return nil
}
