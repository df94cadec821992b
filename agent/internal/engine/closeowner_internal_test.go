package engine

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// CloseOwner (credentials revoked) closes every socket of the owner, served ones included,
// and ends its sessions; another caller's sockets stay.
func TestCloseOwner(t *testing.T) {
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	alice := WithCaller(context.Background(), Caller{ID: "token:alice"})
	bob := WithCaller(context.Background(), Caller{ID: "token:bob"})
	si, err := tb.OpenSession(alice, time.Minute, "a")
	if err != nil {
		t.Fatal(err)
	}
	echo, err := tb.Bind(WithSession(alice, si.ID), "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Serve(alice, echo.ID, BehaviourEcho, 0, 0); err != nil {
		t.Fatal(err)
	}
	plain, err := tb.Bind(alice, "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := tb.Bind(bob, "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", echo.Local)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 16)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("echo before the revocation: %q, %v", buf[:n], err)
	}

	if n := tb.CloseOwner("token:alice", "token alice was revoked"); n != 2 {
		t.Errorf("CloseOwner closed %d sockets, want 2", n)
	}
	if tb.Len() != 1 || tb.NumSessions() != 0 {
		t.Errorf("%d sockets, %d sessions left; want bob's socket only", tb.Len(), tb.NumSessions())
	}
	for _, id := range []string{echo.ID, plain.ID} {
		_, err := tb.GetFor(alice, id)
		if !errors.Is(err, ErrUnknownSocket) || !strings.Contains(err.Error(), "token alice was revoked") {
			t.Errorf("socket %s after the revocation: %v", id, err)
		}
	}
	if _, err := tb.GetFor(bob, other.ID); err != nil {
		t.Errorf("bob's socket: %v", err)
	}
	// The echo is gone: the port is closed (ICMP port unreachable on loopback), no answer.
	_, _ = c.Write([]byte("ping"))
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(buf); err == nil {
		t.Errorf("the revoked owner's echo still answered %q", buf[:n])
	}
	tb.mu.Lock()
	owned := tb.budget.of("token:alice").sockets
	tb.mu.Unlock()
	if owned != 0 {
		t.Errorf("alice still holds %d socket slots", owned)
	}
}
