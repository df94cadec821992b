package agent_test

// Benchmarks of Attach over a real TCP loopback gRPC connection: 64 KiB messages relayed
// between the caller and a socket the agent dialled to a raw listener of the test, beside a
// plain Go TCP connection moving the same bytes in the same 64 KiB writes and reads, so the
// relay's cost shows as a ratio measured in the same run.
//
//	go test -run='^$' -bench=RatioAttach -benchtime=5s ./agent/   # the ratios
//	go test -run='^$' -bench=Attach -benchtime=2s ./agent/         # also each rate alone
//
// Each flow (attach up, attach down, raw TCP) is set up once and stays open; a transfer is
// timed from its first write to the moment its reader has every byte.
//
// Identifiers here start with "benchAttach" so they never clash with the package's other tests.

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

const (
	benchAttachChunk = 64 << 10
	// benchAttachRatioBytes is what one iteration of the ratio benchmark moves on each flow.
	benchAttachRatioBytes = 16 << 20
)

// benchAttachSink counts what a reader goroutine reads and says when the count reaches a
// target.
type benchAttachSink struct {
	want    atomic.Int64 // the count to signal at; 0 = none
	reached chan struct{}
	ended   chan error // the reader's end: nil at EOF
	total   int64      // the reader goroutine's own
}

// benchAttachRead starts a reader goroutine: read returns how many bytes one read brought, or
// an error (io.EOF at the end).
func benchAttachRead(read func() (int, error)) *benchAttachSink {
	k := &benchAttachSink{reached: make(chan struct{}, 1), ended: make(chan error, 1)}
	go func() {
		for {
			n, err := read()
			k.total += int64(n)
			if w := k.want.Load(); w > 0 && k.total >= w {
				k.want.Store(0)
				k.reached <- struct{}{}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				k.ended <- err
				return
			}
		}
	}()
	return k
}

// benchAttachFlow moves bytes one way and times it.
type benchAttachFlow struct {
	sink  *benchAttachSink
	sent  int64
	write func() error // writes one chunk
	done  func() error // half-closes the writer; the reader then sees EOF
}

// move writes n bytes in chunks and returns the time until the reader had them all.
func (f *benchAttachFlow) move(b *testing.B, n int) time.Duration {
	f.sent += int64(n)
	f.sink.want.Store(f.sent)
	start := time.Now()
	for m := 0; m < n; m += benchAttachChunk {
		if err := f.write(); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-f.sink.reached:
	case err := <-f.sink.ended:
		b.Fatalf("reader ended before %d bytes: %v", f.sent, err)
	}
	return time.Since(start)
}

// close ends the flow and checks the reader saw exactly what was sent.
func (f *benchAttachFlow) close(b *testing.B) {
	if err := f.done(); err != nil {
		b.Error(err)
	}
	if err := <-f.sink.ended; err != nil {
		b.Error(err)
	}
	if f.sink.total != f.sent {
		b.Errorf("reader got %d bytes, %d sent", f.sink.total, f.sent)
	}
}

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
	b.Cleanup(cancel)
	a, conn := benchAgent(b)
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		peer.Close()
		if n := a.NumSockets(); n != 0 {
			b.Errorf("%d sockets open at the end, want 0", n)
		}
	})
	e := &benchAttachEnv{sc: sockagentv1.NewSocketServiceClient(conn), peer: peer, data: make([]byte, benchAttachChunk)}
	for i := range e.data {
		e.data[i] = byte(i)
	}
	return e, ctx
}

// benchAttachPair dials the peer listener from the agent and returns the agent's socket id
// with the accepted end; it closes both when the benchmark ends.
func (e *benchAttachEnv) benchAttachPair(b *testing.B, ctx context.Context) (string, *net.TCPConn) {
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
	b.Cleanup(func() {
		c.Close()
		if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err != nil {
			b.Errorf("close %s: %v", id, err)
		}
	})
	return id, c.(*net.TCPConn)
}

// benchAttachReadConn reads c in 64 KiB reads.
func benchAttachReadConn(c net.Conn) *benchAttachSink {
	buf := make([]byte, benchAttachChunk)
	return benchAttachRead(func() (int, error) { return c.Read(buf) })
}

// benchAttachUp is caller -> Attach -> socket -> peer; the socket's other direction ends at
// once (the peer half-closes), so only the upload runs.
func (e *benchAttachEnv) benchAttachUp(b *testing.B, ctx context.Context) *benchAttachFlow {
	id, peer := e.benchAttachPair(b, ctx)
	st, err := e.sc.Attach(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Send(&sockagentv1.AttachRequest{SocketId: id}); err != nil {
		b.Fatal(err)
	}
	_ = peer.CloseWrite()
	if r, err := st.Recv(); err != nil || !r.GetEof() {
		b.Fatalf("attach: %v, %v; want eof", r, err)
	}
	req := &sockagentv1.AttachRequest{Data: e.data}
	return &benchAttachFlow{
		sink:  benchAttachReadConn(peer),
		write: func() error { return st.Send(req) },
		done: func() error {
			if err := st.CloseSend(); err != nil {
				return err
			}
			if _, err := st.Recv(); !errors.Is(err, io.EOF) {
				return errors.Join(errors.New("attach up: want OK at the end"), err)
			}
			return nil
		},
	}
}

// benchAttachDown is peer -> socket -> Attach -> caller; the caller's direction ends at once.
func (e *benchAttachEnv) benchAttachDown(b *testing.B, ctx context.Context) *benchAttachFlow {
	id, peer := e.benchAttachPair(b, ctx)
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
	sink := benchAttachRead(func() (int, error) {
		r, err := st.Recv()
		if err != nil {
			return 0, errors.Join(errors.New("attach down ended without eof"), err)
		}
		if r.GetEof() {
			if _, err := st.Recv(); !errors.Is(err, io.EOF) {
				return 0, errors.Join(errors.New("attach down: want OK after eof"), err)
			}
			return 0, io.EOF
		}
		return len(r.GetData()), nil
	})
	return &benchAttachFlow{
		sink:  sink,
		write: func() error { _, err := peer.Write(e.data); return err },
		done:  peer.CloseWrite,
	}
}

// benchAttachRawTCP is a plain loopback TCP connection, writer to reader.
func (e *benchAttachEnv) benchAttachRawTCP(b *testing.B) *benchAttachFlow {
	c, err := net.Dial("tcp", e.peer.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s, err := e.peer.Accept()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c.Close()
		s.Close()
	})
	return &benchAttachFlow{
		sink:  benchAttachReadConn(s),
		write: func() error { _, err := c.Write(e.data); return err },
		done:  c.(*net.TCPConn).CloseWrite,
	}
}

func benchAttachGbits(bytes int, d time.Duration) float64 {
	return float64(bytes) * 8 / d.Seconds() / 1e9
}

// benchAttachOne moves b.N chunks over one flow and reports its rate.
func benchAttachOne(b *testing.B, f *benchAttachFlow) {
	b.SetBytes(benchAttachChunk)
	b.ResetTimer()
	d := f.move(b, b.N*benchAttachChunk)
	b.StopTimer()
	b.ReportMetric(benchAttachGbits(b.N*benchAttachChunk, d), "Gbit/s")
	f.close(b)
}

// BenchmarkAttachRelay streams 64 KiB messages through Attach into a socket whose peer reads
// them.
func BenchmarkAttachRelay(b *testing.B) {
	e, ctx := benchAttachSetup(b)
	benchAttachOne(b, e.benchAttachUp(b, ctx))
}

// BenchmarkAttachRelayDown streams what a peer writes in 64 KiB chunks back to the caller.
func BenchmarkAttachRelayDown(b *testing.B) {
	e, ctx := benchAttachSetup(b)
	benchAttachOne(b, e.benchAttachDown(b, ctx))
}

// BenchmarkAttachBaselineRawTCP moves the same chunks over a plain Go TCP loopback connection.
func BenchmarkAttachBaselineRawTCP(b *testing.B) {
	e, _ := benchAttachSetup(b)
	benchAttachOne(b, e.benchAttachRawTCP(b))
}

// BenchmarkRatioAttachVsRawTCP moves benchAttachRatioBytes per iteration through Attach up
// (caller to socket), down (socket to caller) and over raw TCP, one after the other so machine
// noise hits all alike, and reports the median rates and attach / raw. Target: up >= 0.15x
// (goal 0.25x).
func BenchmarkRatioAttachVsRawTCP(b *testing.B) {
	e, ctx := benchAttachSetup(b)
	flows := []*benchAttachFlow{e.benchAttachUp(b, ctx), e.benchAttachDown(b, ctx), e.benchAttachRawTCP(b)}
	rates := make([][]float64, len(flows))
	for b.Loop() {
		for i, f := range flows {
			rates[i] = append(rates[i], benchAttachGbits(benchAttachRatioBytes, f.move(b, benchAttachRatioBytes)))
		}
	}
	for _, f := range flows {
		f.close(b)
	}
	up, down, raw := benchAttachMedian(rates[0]), benchAttachMedian(rates[1]), benchAttachMedian(rates[2])
	b.ReportMetric(up, "attach-up-Gbit/s")
	b.ReportMetric(down, "attach-down-Gbit/s")
	b.ReportMetric(raw, "raw-Gbit/s")
	b.ReportMetric(up/raw, "ratio-up")
	b.ReportMetric(down/raw, "ratio-down")
	b.Logf("attach up %.2f Gbit/s, down %.2f Gbit/s, raw TCP %.2f Gbit/s: ratio up %.3fx down %.3fx (target 0.15x, goal 0.25x; %d x %d MiB)",
		up, down, raw, up/raw, down/raw, len(rates[0]), benchAttachRatioBytes>>20)
}

func benchAttachMedian(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
