package agent_test

// Benchmarks of Attach over a real TCP loopback gRPC connection: 64 KiB messages relayed
// between the caller and a socket the agent dialled to a raw listener of the test, beside a
// plain Go TCP connection moving the same bytes in the same chunks, so the relay's cost shows
// as a ratio measured in the same run.
//
//	go test -run='^$' -bench=RatioAttach -benchtime=5x ./agent/   # the ratios (128 MiB each way per iteration)
//	go test -run='^$' -bench=Attach -benchtime=1s ./agent/          # also the rates alone
//
// Identifiers here start with "benchAttach" so they never clash with the package's other tests.

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const (
	benchAttachChunk = 64 << 10
	// benchAttachRatioBytes is what one iteration of the ratio benchmark moves each way.
	benchAttachRatioBytes = 128 << 20
)

// benchAttachEnv is an agent served on 127.0.0.1:0 and a raw TCP listener of the test that
// its sockets dial.
type benchAttachEnv struct {
	sc   sockagentv1.SocketServiceClient
	peer net.Listener
	data []byte // one chunk
}

func benchAttachSetup(b *testing.B) (*benchAttachEnv, context.Context) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	a, err := agent.New(agent.Config{})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		peer.Close()
		if n := a.NumSockets(); n != 0 {
			b.Errorf("%d sockets open at the end, want 0", n)
		}
		conn.Close()
		a.Close()
		<-served
		cancel()
	})
	e := &benchAttachEnv{sc: sockagentv1.NewSocketServiceClient(conn), peer: peer, data: make([]byte, benchAttachChunk)}
	for i := range e.data {
		e.data[i] = byte(i)
	}
	return e, ctx
}

// benchAttachPair dials the peer listener from the agent and returns the agent's socket id with the
// accepted end; closeSock closes the agent's socket.
func (e *benchAttachEnv) benchAttachPair(b *testing.B, ctx context.Context) (string, *net.TCPConn, func()) {
	b.Helper()
	d, err := e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: e.peer.Addr().String()})
	if err != nil {
		b.Fatal(err)
	}
	c, err := e.peer.Accept()
	if err != nil {
		b.Fatal(err)
	}
	id := d.GetSocket().GetSocketId()
	return id, c.(*net.TCPConn), func() {
		c.Close()
		if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err != nil {
			b.Errorf("close %s: %v", id, err)
		}
	}
}

// benchAttachDiscard reads c to EOF and reports how many bytes came.
func benchAttachDiscard(c net.Conn) <-chan int64 {
	done := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, c)
		done <- n
	}()
	return done
}

// benchAttachUp relays total bytes caller -> socket -> peer and returns the time from the
// first message to the peer's EOF.
func (e *benchAttachEnv) benchAttachUp(b *testing.B, ctx context.Context, total int) time.Duration {
	id, peer, closeSock := e.benchAttachPair(b, ctx)
	defer closeSock()
	got := benchAttachDiscard(peer)
	st, err := e.sc.Attach(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Send(&sockagentv1.AttachRequest{SocketId: id}); err != nil {
		b.Fatal(err)
	}
	_ = peer.CloseWrite() // the socket's read direction ends at once: only the upload is timed
	if r, err := st.Recv(); err != nil || !r.GetEof() {
		b.Fatalf("attach: %v, %v; want eof", r, err)
	}
	start := time.Now()
	req := &sockagentv1.AttachRequest{Data: e.data}
	for sent := 0; sent < total; sent += len(e.data) {
		if err := st.Send(req); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.CloseSend(); err != nil {
		b.Fatal(err)
	}
	n := <-got
	d := time.Since(start)
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		b.Fatalf("attach end: %v, want OK", err)
	}
	if n != int64(total) {
		b.Fatalf("peer received %d bytes, want %d", n, total)
	}
	return d
}

// benchAttachDown relays total bytes peer -> socket -> caller and returns the time from the
// peer's first write to the caller's eof.
func (e *benchAttachEnv) benchAttachDown(b *testing.B, ctx context.Context, total int) time.Duration {
	id, peer, closeSock := e.benchAttachPair(b, ctx)
	defer closeSock()
	st, err := e.sc.Attach(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Send(&sockagentv1.AttachRequest{SocketId: id, ReadSize: benchAttachChunk}); err != nil {
		b.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadAll(peer); err != nil { // the caller's half-close arrives as EOF
		b.Fatal(err)
	}
	start := time.Now()
	wrote := make(chan error, 1)
	go func() {
		var err error
		for sent := 0; sent < total && err == nil; sent += len(e.data) {
			_, err = peer.Write(e.data)
		}
		if err == nil {
			err = peer.CloseWrite()
		}
		wrote <- err
	}()
	n := 0
	for {
		r, err := st.Recv()
		if err != nil {
			b.Fatalf("attach after %d bytes: %v", n, err)
		}
		n += len(r.GetData())
		if r.GetEof() {
			break
		}
	}
	d := time.Since(start)
	if err := <-wrote; err != nil {
		b.Fatal(err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		b.Fatalf("attach end: %v, want OK", err)
	}
	if n != total {
		b.Fatalf("caller received %d bytes, want %d", n, total)
	}
	return d
}

// benchAttachRawTCP moves total bytes over a plain loopback TCP connection in the same chunks and
// returns the time from the first write to the reader's EOF.
func (e *benchAttachEnv) benchAttachRawTCP(b *testing.B, total int) time.Duration {
	c, err := net.Dial("tcp", e.peer.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s, err := e.peer.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	got := benchAttachDiscard(s)
	start := time.Now()
	for sent := 0; sent < total; sent += len(e.data) {
		if _, err := c.Write(e.data); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		b.Fatal(err)
	}
	n := <-got
	d := time.Since(start)
	if n != int64(total) {
		b.Fatalf("raw reader received %d bytes, want %d", n, total)
	}
	return d
}

func benchAttachGbits(bytes int, d time.Duration) float64 {
	return float64(bytes) * 8 / d.Seconds() / 1e9
}

// BenchmarkAttachRelay streams 64 KiB messages through Attach into a socket whose peer
// discards them.
func BenchmarkAttachRelay(b *testing.B) {
	e, ctx := benchAttachSetup(b)
	b.SetBytes(benchAttachChunk)
	b.ResetTimer()
	d := e.benchAttachUp(b, ctx, b.N*benchAttachChunk)
	b.ReportMetric(benchAttachGbits(b.N*benchAttachChunk, d), "Gbit/s")
}

// BenchmarkAttachRelayDown streams what a peer writes in 64 KiB chunks back to the caller.
func BenchmarkAttachRelayDown(b *testing.B) {
	e, ctx := benchAttachSetup(b)
	b.SetBytes(benchAttachChunk)
	b.ResetTimer()
	d := e.benchAttachDown(b, ctx, b.N*benchAttachChunk)
	b.ReportMetric(benchAttachGbits(b.N*benchAttachChunk, d), "Gbit/s")
}

// BenchmarkAttachBaselineRawTCP moves the same chunks over a plain Go TCP loopback connection.
func BenchmarkAttachBaselineRawTCP(b *testing.B) {
	e, _ := benchAttachSetup(b)
	b.SetBytes(benchAttachChunk)
	b.ResetTimer()
	d := e.benchAttachRawTCP(b, b.N*benchAttachChunk)
	b.ReportMetric(benchAttachGbits(b.N*benchAttachChunk, d), "Gbit/s")
}

// BenchmarkRatioAttachVsRawTCP moves benchAttachRatioBytes per iteration through Attach up (caller
// to socket), down (socket to caller) and over raw TCP, one after the other so machine noise
// hits all alike, and reports the median rates and attach / raw. Target: up >= 0.15x (goal
// 0.25x).
func BenchmarkRatioAttachVsRawTCP(b *testing.B) {
	e, ctx := benchAttachSetup(b)
	var up, down, raw []float64
	for b.Loop() {
		up = append(up, benchAttachGbits(benchAttachRatioBytes, e.benchAttachUp(b, ctx, benchAttachRatioBytes)))
		down = append(down, benchAttachGbits(benchAttachRatioBytes, e.benchAttachDown(b, ctx, benchAttachRatioBytes)))
		raw = append(raw, benchAttachGbits(benchAttachRatioBytes, e.benchAttachRawTCP(b, benchAttachRatioBytes)))
	}
	u, d, r := benchAttachMedian(up), benchAttachMedian(down), benchAttachMedian(raw)
	b.ReportMetric(u, "attach-up-Gbit/s")
	b.ReportMetric(d, "attach-down-Gbit/s")
	b.ReportMetric(r, "raw-Gbit/s")
	b.ReportMetric(u/r, "ratio-up")
	b.ReportMetric(d/r, "ratio-down")
	b.Logf("attach up %.2f Gbit/s, down %.2f Gbit/s, raw TCP %.2f Gbit/s: ratio up %.3fx down %.3fx (target 0.15x, goal 0.25x; n=%d)",
		u, d, r, u/r, d/r, len(up))
}

func benchAttachMedian(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
