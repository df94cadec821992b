package agent_test

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sockagent/sockagent/agent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Thousands of half-open control connections (a TCP connect and half an HTTP/2 preface, then
// silence) do not stop the agent from serving, and cost bounded memory: past one peer's bound
// they are closed as soon as they are accepted.
func TestHalfOpenControlConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2000 connections")
	}
	a, err := agent.New(agent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.Serve(lis)
	}()
	defer func() {
		a.Close()
		<-served
	}()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	info := sockagentv1.NewAgentServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := info.GetInfo(ctx, &sockagentv1.GetInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	const n = 2000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.DialTimeout("tcp", lis.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte("PRI * HTTP/2.0\r\n")); err != nil { // half the preface
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	// One peer is served up to its bound; the connections past it are closed at once.
	if total, _ := a.NumConnections(); total > agent.DefaultMaxConnectionsPerPeer+1 {
		t.Errorf("%d control connections served, want at most %d (one peer's bound and the client)", total, agent.DefaultMaxConnectionsPerPeer+1)
	}
	start := time.Now()
	for range 20 { // the agent still answers promptly, repeatedly
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		r, err := info.GetInfo(cctx, &sockagentv1.GetInfoRequest{})
		ccancel()
		if err != nil {
			t.Fatalf("GetInfo with %d half-open connections: %v", n, err)
		}
		if r.GetOpenSockets() != 0 {
			t.Fatalf("open sockets %d", r.GetOpenSockets())
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("20 GetInfo calls took %s with %d half-open connections", d, n)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	perConn := grew / n
	t.Logf("%d half-open connections: heap in use grew %d KiB (%d bytes each), %d goroutines", n, grew>>10, perConn, runtime.NumGoroutine())
	if perConn > 64<<10 {
		t.Errorf("each half-open connection holds %d bytes of heap; want under 64 KiB", perConn)
	}
}
