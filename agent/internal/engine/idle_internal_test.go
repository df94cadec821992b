package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestIdleReaper: with an idle timeout, a socket outside a session that nobody used for that
// long is closed, reported as idle, and a call on it says why; a socket in a session, and one
// with a call in progress, are not, however long they wait.
func TestIdleReaper(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	rec := &reclaims{}
	tb := New(Config{DefaultTimeout: 5 * time.Second, MaxRecvBytes: 1 << 20, IdleTimeout: idle, OnReclaim: rec.note})
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "a"})
	si, err := tb.OpenSession(ctx, time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	forgotten, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	inSession, err := tb.Bind(WithSession(ctx, si.ID), "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	waiting, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	recvDone := make(chan error, 1)
	go func() {
		_, _, err := tb.RecvFrom(ctx, waiting.ID, 0, 2*idle)
		recvDone <- err
	}()

	waitFor(t, 5*time.Second, "the forgotten socket is reaped", func() bool { return len(rec.list()) > 0 })
	// The reaper looks every idle/4: the socket goes between idle and idle + idle/4, plus
	// scheduling slack far below the idle timeout.
	if took := time.Since(start); took < idle || took > idle+idle/4+300*time.Millisecond {
		t.Errorf("reaped after %v, want within [%v, %v]", took, idle, idle+idle/4+300*time.Millisecond)
	}
	if got := rec.list(); !slices.Equal(got, []string{forgotten.ID + " idle"}) {
		t.Errorf("reclaimed %q, want only %s idle", got, forgotten.ID)
	}
	if _, err := tb.GetFor(ctx, forgotten.ID); !errors.Is(err, ErrUnknownSocket) || !strings.Contains(err.Error(), "idle for the agent's idle timeout (300ms)") {
		t.Errorf("a call on the reaped socket: %v", err)
	}
	// The waiting RecvFrom times out at 2 idle; it was pending all along, so never reaped.
	if err := <-recvDone; Reason(err) != "TIMEOUT" {
		t.Errorf("the waiting RecvFrom: %v, want TIMEOUT", err)
	}
	for _, id := range []string{inSession.ID, waiting.ID} {
		if _, err := tb.GetFor(ctx, id); err != nil {
			t.Errorf("socket %s: %v", id, err)
		}
	}
	if tb.Len() != 2 {
		t.Errorf("%d sockets, want 2", tb.Len())
	}
}

// TestIdleReaperOff: without an idle timeout there is no reaper at all.
func TestIdleReaperOff(t *testing.T) {
	t.Parallel()
	for _, idle := range []time.Duration{0, -time.Second} {
		tb := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20, IdleTimeout: idle})
		tb.mu.Lock()
		armed := tb.idleTimer != nil
		tb.mu.Unlock()
		tb.Stop()
		if armed {
			t.Errorf("idle timeout %v: a reaper is armed", idle)
		}
	}
}

// TestIdleReaperInterval: the reaper looks every idle/4, never more often than every 10 ms
// (a short idle timeout must not make it spin) nor less often than every 30 s (an agent at
// rest costs nothing, and a socket still goes within idle + 30 s).
func TestIdleReaperInterval(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ idle, every time.Duration }{
		{20 * time.Millisecond, 10 * time.Millisecond},
		{400 * time.Millisecond, 100 * time.Millisecond},
		{time.Hour, 30 * time.Second},
	} {
		tb := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20, IdleTimeout: c.idle})
		tb.mu.Lock()
		every := tb.reapEvery
		tb.mu.Unlock()
		tb.Stop()
		if every != c.every {
			t.Errorf("idle %v: the reaper looks every %v, want %v", c.idle, every, c.every)
		}
	}
}
