package main

// Load held by a sockagent process (its fd limit not shared with the test): connections held
// at once, concurrent blocking calls, open/use/close cycles. The figures at full size come
// from `go run ./agent/cmd/sockload`; these tests run the same code (agent/internal/load),
// smaller where it would be slow, and fail when the property does not hold.
//
// They do not call t.Parallel: they run before the parallel tests start, alone on the CPUs,
// so neither they nor the timing-sensitive tests beside them are starved.

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/internal/load"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// startLoaded starts sockagent with a policy that lets one caller hold n sockets and make n
// blocking calls at once.
func startLoaded(t *testing.T, n int) (*proc, load.Proc) {
	t.Helper()
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte(load.PolicyYAML(n)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startLocal(t, "--policy", pol)
	return p, load.Proc(p.cmd.Process.Pid)
}

func loadCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestLoadHoldConnections: the agent holds 10,000 TCP connections at once (2,000 with
// -short), each checked both ways, within a memory bound per connection, and is back to its
// idle fd count once they are closed.
func TestLoadHoldConnections(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 2000
	}
	p, pr := startLoaded(t, n+64)
	ctx := loadCtx(t)
	h, err := load.HoldConns(ctx, p.sockets(), sockagentv1.NewAgentServiceClient(p.conn), pr, n, 32)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d connections: opened in %s, used both ways in %s; agent RSS %d -> %d KiB (%.1f KiB per connection), fds %d -> %d",
		h.Conns, h.Connect.Round(time.Millisecond), h.Check.Round(time.Millisecond), h.Before.RSS>>10, h.After.RSS>>10, h.PerConn()/1024, h.Before.FDs, h.After.FDs)
	// Kernel socket memory is not in RSS, so the agent's own share per connection is small;
	// 64 KiB would mean a buffer or a goroutine per connection.
	if h.PerConn() > 64<<10 {
		t.Errorf("agent RSS grew %.1f KiB per connection, want at most 64 KiB", h.PerConn()/1024)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if fds, err := load.Settle(sctx, h.Before.FDs, pr.FDs); err != nil || fds != h.Before.FDs {
		t.Errorf("agent fds %d (%v) after closing the connections, %d before", fds, err, h.Before.FDs)
	}
	if n, err := load.OpenSockets(ctx, sockagentv1.NewAgentServiceClient(p.conn)); err != nil || n != 0 {
		t.Errorf("open sockets after closing: %d (%v), want 0", n, err)
	}
}

// TestLoadBlockingCalls: 1,000 Recv calls pending at once (pending_calls says so) each
// return exactly the bytes their own peer then sends; then 1,000 pending Accept calls on one
// listener each return a distinct one of 1,000 connections dialed afterwards.
func TestLoadBlockingCalls(t *testing.T) {
	const n = 1000
	p, _ := startLoaded(t, 2*n+64)
	ctx := loadCtx(t)
	b, err := load.BlockingCalls(ctx, p.sockets(), n, 32)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d Recv pending after %s, all returned %s after the peers wrote; %d Accept returned %s after the dials began",
		b.MaxPending, b.RecvPending.Round(time.Millisecond), b.RecvDone.Round(time.Millisecond), b.Calls, b.AcceptDone.Round(time.Millisecond))
	if b.MaxPending != n {
		t.Errorf("%d calls pending at once, want %d", b.MaxPending, n)
	}
	if n, err := load.OpenSockets(ctx, sockagentv1.NewAgentServiceClient(p.conn)); err != nil || n != 0 {
		t.Errorf("open sockets at the end: %d (%v), want 0", n, err)
	}
}

// TestLoadCycles: 5,000 open/use/close cycles (dial, accept, send, recv, close both; the full
// 100,000 are sockload's) leave the agent process with the fds it started with and no socket.
func TestLoadCycles(t *testing.T) {
	const n = 5000
	p, pr := startLoaded(t, 256)
	ctx := loadCtx(t)
	sc := p.sockets()
	if _, err := load.RunCycles(ctx, sc, 1, 1); err != nil { // the gRPC connection is up
		t.Fatal(err)
	}
	before, err := pr.Snap()
	if err != nil {
		t.Fatal(err)
	}
	c, err := load.RunCycles(ctx, sc, n, 16)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fds, err := load.Settle(sctx, before.FDs, pr.FDs)
	if err != nil || fds != before.FDs {
		t.Errorf("agent fds %d (%v) after %d cycles, %d before", fds, err, n, before.FDs)
	}
	after, err := pr.Snap()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d cycles in %s (%.0f/s); agent fds %d -> %d, RSS %d -> %d KiB, threads %d -> %d",
		n, c.Elapsed.Round(time.Millisecond), c.PerSecond(), before.FDs, fds, before.RSS>>10, after.RSS>>10, before.Threads, after.Threads)
	if n, err := load.OpenSockets(ctx, sockagentv1.NewAgentServiceClient(p.conn)); err != nil || n != 0 {
		t.Errorf("open sockets after the cycles: %d (%v), want 0", n, err)
	}
}
