package agent_test

// Tests of MeasureService.Throughput: the agent in process behind bufconn, its test sockets
// real on loopback, against peers of the test's own (tputPeer: a TCP discard and source, a UDP
// discard and source speaking package wire) so that what the peer counted can be compared
// with what the agent reports.

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/wire"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tputPeer is a loopback peer of the test: it counts what it reads and closes everything when
// the test ends.
type tputPeer struct {
	addr  string
	bytes atomic.Uint64 // payload bytes read (TCP discard), Data bytes received (UDP discard)
	conns atomic.Int64  // connections accepted (TCP)
	live  atomic.Int64  // connections open now (TCP)
	wg    sync.WaitGroup
	mu    sync.Mutex
	open  []io.Closer
	dgram map[uint64]uint64 // UDP discard: Data datagrams per test
}

func (p *tputPeer) track(c io.Closer) {
	p.mu.Lock()
	p.open = append(p.open, c)
	p.mu.Unlock()
}

func newTputPeer(t *testing.T) *tputPeer {
	p := &tputPeer{dgram: map[uint64]uint64{}}
	t.Cleanup(func() {
		p.mu.Lock()
		for _, c := range p.open {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// tputTCPPeer accepts connections and reads them into the count (source false) or writes
// 128 KiB chunks to them until they fail (source true).
func tputTCPPeer(t *testing.T, source bool) *tputPeer {
	t.Helper()
	p := newTputPeer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.track(ln)
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.track(c)
			p.conns.Add(1)
			p.live.Add(1)
			p.wg.Go(func() {
				defer p.live.Add(-1)
				defer c.Close()
				buf := make([]byte, 256<<10)
				for {
					var (
						n   int
						err error
					)
					if source {
						n, err = c.Write(buf[:128<<10])
					} else {
						n, err = c.Read(buf)
						p.bytes.Add(uint64(n))
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	return p
}

// tputUDPPeer serves a UDP socket on 127.0.0.1 with handle, called for each measurement
// datagram (n bytes, header h, body) from one goroutine, until the test ends.
func tputUDPPeer(t *testing.T, handle func(p *tputPeer, pc net.PacketConn, from net.Addr, n int, h wire.Header, body []byte)) *tputPeer {
	t.Helper()
	p := newTputPeer(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	p.addr = pc.LocalAddr().String()
	p.track(pc)
	p.wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if h, body, err := wire.ParseHeader(buf[:n]); err == nil {
				handle(p, pc, from, n, h, body)
			}
		}
	})
	return p
}

// tputUDPDiscard counts Data datagrams per test and answers ReportRequests.
func tputUDPDiscard(t *testing.T) *tputPeer {
	t.Helper()
	return tputUDPPeer(t, func(p *tputPeer, pc net.PacketConn, from net.Addr, n int, h wire.Header, _ []byte) {
		switch h.Type {
		case wire.Data:
			p.mu.Lock()
			p.dgram[h.Test]++
			p.mu.Unlock()
			p.bytes.Add(uint64(n))
		case wire.ReportRequest:
			p.mu.Lock()
			rep := wire.AppendReport(nil, h.Test, wire.ReportBody{Datagrams: p.dgram[h.Test]})
			p.mu.Unlock()
			_, _ = pc.WriteTo(rep, from)
		}
	})
}

// datagrams sums the Data datagrams the discard received, all tests.
func (p *tputPeer) datagrams() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n uint64
	for _, v := range p.dgram {
		n += v
	}
	return n
}

// tputUDPSource sends Data datagrams to whoever asks with SourceStart, paced, until the
// test's duration or bytes, a SourceStop, or 3 KeepAlives without a SourceStart; it answers
// a ReportRequest with the datagrams the test sent.
func tputUDPSource(t *testing.T) *tputPeer {
	t.Helper()
	type test struct {
		stop     chan struct{}
		stopped  bool // stop is closed; only the reading goroutine uses it
		lastSeen atomic.Int64
		sent     atomic.Uint64 // Data datagrams sent, for the Report
	}
	tests := map[uint64]*test{}
	done := make(chan struct{})
	p := tputUDPPeer(t, func(p *tputPeer, pc net.PacketConn, from net.Addr, _ int, h wire.Header, body []byte) {
		switch h.Type {
		case wire.SourceStart:
			st, err := wire.ParseStart(body)
			if err != nil {
				return
			}
			if tt := tests[h.Test]; tt != nil {
				tt.lastSeen.Store(time.Now().UnixNano())
				return
			}
			tt := &test{stop: make(chan struct{})}
			tt.lastSeen.Store(time.Now().UnixNano())
			tests[h.Test] = tt
			p.wg.Go(func() {
				out := make([]byte, st.Size)
				start := time.Now()
				perSecond := float64(st.RateBitsPerSecond) / 8 / float64(st.Size)
				var sent uint64
				for seq := uint64(0); ; seq++ {
					if time.Since(start) > st.Duration || (st.Bytes > 0 && sent >= st.Bytes) ||
						time.Since(time.Unix(0, tt.lastSeen.Load())) > 3*wire.KeepAlive {
						return
					}
					if d := time.Until(start.Add(time.Duration(float64(seq) / perSecond * float64(time.Second)))); d > time.Millisecond {
						select {
						case <-time.After(d):
						case <-tt.stop:
							return
						case <-done:
							return
						}
					}
					wire.PutHeader(out, wire.Header{Type: wire.Data, Test: h.Test, Seq: seq})
					if _, err := pc.WriteTo(out, from); err != nil {
						return
					}
					sent += uint64(len(out))
					tt.sent.Add(1)
				}
			})
		case wire.ReportRequest:
			var r wire.ReportBody
			if tt := tests[h.Test]; tt != nil {
				r.Datagrams = tt.sent.Load()
			}
			_, _ = pc.WriteTo(wire.AppendReport(nil, h.Test, r), from)
		case wire.SourceStop:
			if tt := tests[h.Test]; tt != nil && !tt.stopped {
				close(tt.stop)
				tt.stopped = true
			}
		}
	})
	p.track(tputCloser(func() error { close(done); return nil }))
	return p
}

type tputCloser func() error

func (f tputCloser) Close() error { return f() }

// tputRun runs a test to its end: the intervals, the summary (always the last message), and
// the error the stream ended with.
func tputRun(ctx context.Context, t *testing.T, e *env, r *sockagentv1.ThroughputRequest) ([]*sockagentv1.ThroughputInterval, *sockagentv1.ThroughputSummary, error) {
	t.Helper()
	st, err := sockagentv1.NewMeasureServiceClient(e.conn).Throughput(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	var (
		ivs []*sockagentv1.ThroughputInterval
		sum *sockagentv1.ThroughputSummary
	)
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			if sum == nil {
				t.Fatal("stream ended without a summary")
			}
			return ivs, sum, nil
		}
		if err != nil {
			return ivs, sum, err
		}
		if sum != nil {
			t.Fatalf("a message after the summary: %v", m)
		}
		if iv := m.GetInterval(); iv != nil {
			ivs = append(ivs, iv)
		}
		sum = m.GetSummary()
	}
}

func tputOK(ctx context.Context, t *testing.T, e *env, r *sockagentv1.ThroughputRequest) ([]*sockagentv1.ThroughputInterval, *sockagentv1.ThroughputSummary) {
	t.Helper()
	ivs, sum, err := tputRun(ctx, t, e, r)
	if err != nil {
		t.Fatalf("throughput %v: %v", r, err)
	}
	if len(sum.GetErrors()) > 0 {
		t.Errorf("summary errors: %v", sum.GetErrors())
	}
	return ivs, sum
}

// checkIntervals checks the intervals follow each other from 0 and add up to the summary.
func tputCheckIntervals(t *testing.T, ivs []*sockagentv1.ThroughputInterval, sum *sockagentv1.ThroughputSummary) {
	t.Helper()
	var bytes, dgrams, lost uint64
	var at time.Duration
	for i, iv := range ivs {
		if s, e := iv.GetStart().AsDuration(), iv.GetEnd().AsDuration(); s != at || e < s {
			t.Errorf("interval %d: %s..%s, want it to start at %s", i, s, e, at)
		}
		at = iv.GetEnd().AsDuration()
		bytes += iv.GetBytes()
		dgrams += iv.GetDatagrams()
		lost += iv.GetLost()
	}
	if bytes != sum.GetBytes() {
		t.Errorf("intervals add up to %d bytes, summary says %d", bytes, sum.GetBytes())
	}
	if sum.GetDatagramsReceived() > 0 && sum.GetDatagramsSent() == 0 {
		t.Errorf("summary: %d datagrams received of 0 sent", sum.GetDatagramsReceived())
	}
	if d := sum.GetDuration().AsDuration(); d != at && len(ivs) > 0 {
		t.Errorf("summary duration %s, the intervals end at %s", d, at)
	}
	_ = dgrams
	_ = lost
}

// waitFor polls cond until it holds or 10s pass.
func tputWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after 10s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation: the condition decides
	}
}

func TestThroughputTCPSendBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := tputTCPPeer(t, false)
	const n = 64 << 20
	ivs, sum := tputOK(ctxT(t), t, e, &sockagentv1.ThroughputRequest{Network: "tcp", Address: d.addr, Bytes: n, ReportInterval: dur(20 * time.Millisecond)})
	if sum.GetBytes() != n || sum.GetStreams() != 1 || sum.GetRemoteAddress() != d.addr {
		t.Errorf("summary %v, want %d bytes, 1 stream, remote %s", sum, n, d.addr)
	}
	tputCheckIntervals(t, ivs, sum)
	tputWait(t, "the discard to count every byte", func() bool { return d.bytes.Load() >= n && d.live.Load() == 0 })
	if got := d.bytes.Load(); got != n {
		t.Errorf("discard read %d bytes, want %d", got, n)
	}
	if sum.GetBitsPerSecond() <= 0 || math.Abs(sum.GetBitsPerSecond()-n*8/sum.GetDuration().AsDuration().Seconds()) > 1 {
		t.Errorf("bits_per_second %g for %d bytes in %s", sum.GetBitsPerSecond(), n, sum.GetDuration().AsDuration())
	}
}

func TestThroughputTCPSendDuration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := tputTCPPeer(t, false)
	start := time.Now()
	ivs, sum := tputOK(ctxT(t), t, e, &sockagentv1.ThroughputRequest{Network: "tcp", Address: d.addr,
		Duration: dur(300 * time.Millisecond), ReportInterval: dur(50 * time.Millisecond), Direction: sockagentv1.Direction_DIRECTION_SEND})
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("a 300ms test took %s", el)
	}
	if len(ivs) < 2 {
		t.Errorf("%d intervals before the summary, want at least 2 (300ms in 50ms reports)", len(ivs))
	}
	tputCheckIntervals(t, ivs, sum)
	if dd := sum.GetDuration().AsDuration(); dd < 250*time.Millisecond || dd > 2*time.Second {
		t.Errorf("summary duration %s, want about 300ms", dd)
	}
	if sum.GetBytes() == 0 {
		t.Fatal("no bytes sent")
	}
	tputWait(t, "the discard's connection to end", func() bool { return d.conns.Load() == 1 && d.live.Load() == 0 })
	if got := d.bytes.Load(); got != sum.GetBytes() {
		t.Errorf("discard read %d bytes, the summary says %d were sent", got, sum.GetBytes())
	}
	if runtime.GOOS == "linux" && sum.GetRtt().AsDuration() <= 0 {
		t.Errorf("rtt %s, want TCP_INFO's smoothed RTT on Linux", sum.GetRtt().AsDuration())
	}
}

func TestThroughputTCPReceive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := tputTCPPeer(t, true)
	ctx := ctxT(t)
	recv := sockagentv1.Direction_DIRECTION_RECEIVE
	ivs, sum := tputOK(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "tcp", Address: src.addr, Direction: recv,
		Duration: dur(300 * time.Millisecond), ReportInterval: dur(50 * time.Millisecond)})
	if sum.GetBytes() == 0 || len(ivs) < 2 {
		t.Errorf("%d bytes in %d intervals, want some in at least 2", sum.GetBytes(), len(ivs))
	}
	tputCheckIntervals(t, ivs, sum)

	// A byte limit ends the test at exactly that many bytes (one stream).
	const n = 8<<20 + 5
	ivs, sum = tputOK(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "tcp", Address: src.addr, Direction: recv, Bytes: n, ReportInterval: dur(20 * time.Millisecond)})
	if sum.GetBytes() != n {
		t.Errorf("received %d bytes, want %d", sum.GetBytes(), n)
	}
	tputCheckIntervals(t, ivs, sum)
	// And over 4 streams reading at once: exactly, not up to a read more per stream.
	for range 3 {
		_, sum = tputOK(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "tcp", Address: src.addr, Direction: recv, Bytes: n, Streams: 4, Size: 100000})
		if sum.GetBytes() != n || sum.GetStreams() != 4 {
			t.Errorf("4 streams: received %d bytes on %d streams, want %d on 4", sum.GetBytes(), sum.GetStreams(), n)
		}
	}
	tputWait(t, "the source's connections to end", func() bool { return src.live.Load() == 0 })
}

func TestThroughputTCPStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := tputTCPPeer(t, false)
	const n = 32<<20 + 3
	ivs, sum := tputOK(ctxT(t), t, e, &sockagentv1.ThroughputRequest{Network: "tcp4", Address: d.addr, Bytes: n, Streams: 4, Size: 100000, LocalAddress: "127.0.0.1"})
	if sum.GetBytes() != n || sum.GetStreams() != 4 {
		t.Errorf("summary %d bytes %d streams, want %d bytes 4 streams", sum.GetBytes(), sum.GetStreams(), n)
	}
	tputCheckIntervals(t, ivs, sum)
	tputWait(t, "the discard to count every byte", func() bool { return d.bytes.Load() >= n && d.live.Load() == 0 })
	if got, conns := d.bytes.Load(), d.conns.Load(); got != n || conns != 4 {
		t.Errorf("discard read %d bytes on %d connections, want %d on 4", got, conns, n)
	}
}

func TestThroughputUDPSend(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := tputUDPDiscard(t)
	ctx := ctxT(t)
	ivs, sum := tputOK(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "udp", Address: d.addr, Streams: 2, Size: 1000,
		RateBitsPerSecond: 50_000_000, Duration: dur(300 * time.Millisecond), ReportInterval: dur(50 * time.Millisecond)})
	tputCheckIntervals(t, ivs, sum)
	sent, got := sum.GetDatagramsSent(), sum.GetDatagramsReceived()
	if sent == 0 || got != d.datagrams() || sum.GetBytes() != sent*1000 {
		t.Errorf("summary: %d bytes, %d datagrams sent, %d received; the discard got %d", sum.GetBytes(), sent, got, d.datagrams())
	}
	if want := float64(sent-got) / float64(sent); sum.GetLoss() != want {
		t.Errorf("loss %g, want %g", sum.GetLoss(), want)
	}
	// 50 Mbit/s for 300ms is about 1900 datagrams of 1000 bytes: pacing holds the rate.
	if sent < 1000 || sent > 2500 {
		t.Errorf("%d datagrams sent at 50 Mbit/s in 300ms, want about 1900", sent)
	}
	var ivd uint64
	for _, iv := range ivs {
		ivd += iv.GetDatagrams()
	}
	if ivd != sent {
		t.Errorf("intervals count %d datagrams, summary %d", ivd, sent)
	}

	// A byte limit: whole datagrams, as many as it takes.
	_, sum = tputOK(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "udp", Address: d.addr, Size: 1000, Bytes: 99_500})
	if sum.GetDatagramsSent() != 100 || sum.GetBytes() != 100_000 {
		t.Errorf("bytes 99500: %d datagrams, %d bytes sent; want 100 and 100000", sum.GetDatagramsSent(), sum.GetBytes())
	}
}

func TestThroughputUDPReceive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := tputUDPSource(t)
	ctx := ctxT(t)
	recv := sockagentv1.Direction_DIRECTION_RECEIVE
	ivs, sum := tputOK(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "udp", Address: src.addr, Direction: recv, Size: 1000,
		RateBitsPerSecond: 20_000_000, Duration: dur(400 * time.Millisecond), ReportInterval: dur(50 * time.Millisecond)})
	tputCheckIntervals(t, ivs, sum)
	if got := sum.GetDatagramsReceived(); got < 300 || sum.GetLoss() != 0 || sum.GetDatagramsSent() != got || sum.GetBytes() != got*1000 {
		t.Errorf("summary: %d bytes, %d datagrams received of %d, loss %g; want about 1000, none lost", sum.GetBytes(), got, sum.GetDatagramsSent(), sum.GetLoss())
	}

	// A byte limit ends the test as soon as the source sent it, long before the duration.
	start := time.Now()
	_, sum = tputOK(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "udp", Address: src.addr, Direction: recv, Size: 1000, Streams: 2,
		Bytes: 50_000, Duration: dur(time.Minute)})
	if sum.GetDatagramsReceived() != 50 || sum.GetBytes() != 50_000 || sum.GetLoss() != 0 {
		t.Errorf("bytes 50000: %d datagrams, %d bytes, loss %g; want 50, 50000, 0", sum.GetDatagramsReceived(), sum.GetBytes(), sum.GetLoss())
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("a 50 KB test took %s", el)
	}
}

// tputFreeUDP returns a UDP address on which nothing listens.
func tputFreeUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

func TestThroughputRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	addr := freePort(t)
	_, _, err := tputRun(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "tcp", Address: addr, Streams: 3})
	wantStatus(t, err, codes.Unavailable, contract.ReasonConnectionRefused, "throughput tcp "+addr, "refused")
	uaddr := tputFreeUDP(t)
	_, _, err = tputRun(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "udp", Address: uaddr, Direction: sockagentv1.Direction_DIRECTION_RECEIVE, Duration: dur(2 * time.Second)})
	wantStatus(t, err, codes.Unavailable, contract.ReasonConnectionRefused, "throughput udp "+uaddr)
	_, _, err = tputRun(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "udp", Address: uaddr, Duration: dur(300 * time.Millisecond)})
	wantStatus(t, err, codes.Unavailable, contract.ReasonConnectionRefused, "throughput udp "+uaddr)

	// A UDP peer that says nothing: no stream got going.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_, _, err = tputRun(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "udp", Address: silent.LocalAddr().String(), Direction: sockagentv1.Direction_DIRECTION_RECEIVE, Duration: dur(200 * time.Millisecond)})
	wantStatus(t, err, codes.DeadlineExceeded, contract.ReasonTimeout, "no data from the source in 2", "is "+silent.LocalAddr().String()+" a sockagent source")
	// Sending to it works (UDP), but no Report comes back: the summary says so, and counts
	// every datagram as lost.
	_, sum, err := tputRun(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "udp", Address: silent.LocalAddr().String(), Duration: dur(100 * time.Millisecond), RateBitsPerSecond: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	if errs := sum.GetErrors(); len(errs) != 1 || errs[0].GetReason() != contract.ReasonTimeout || !strings.Contains(errs[0].GetMessage(), "no report from the discard after 5 requests") || sum.GetLoss() != 1 || sum.GetDatagramsSent() == 0 {
		t.Errorf("udp send to a silent peer: %v", sum)
	}
}

func TestThroughputPolicy(t *testing.T) {
	t.Parallel()
	e := polEnv(t, `
default:
  destinations:
    deny: [{name: not 127.0.0.2, cidrs: [127.0.0.2/32]}]
`, false)
	ctx := ctxT(t)
	for _, network := range []string{"tcp", "udp"} {
		_, _, err := tputRun(ctx, t, e, &sockagentv1.ThroughputRequest{Network: network, Address: "127.0.0.2:9", Streams: 2})
		wantDenied(t, err, "not 127.0.0.2", "default", "throughput "+network+" 127.0.0.2:9: destination 127.0.0.2:9 denied by")
	}
	_, _, err := tputRun(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "tcp", Address: "127.0.0.1:9", LocalAddress: "127.0.0.1:80"})
	wantDenied(t, err, "privileged ports", "default", "local address 127.0.0.1:80 denied by")
}

func TestThroughputBadRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	const a = "127.0.0.1:9"
	for _, tc := range []struct {
		r      *sockagentv1.ThroughputRequest
		reason string
		want   string
	}{
		{&sockagentv1.ThroughputRequest{Network: "unix", Address: "/tmp/x"}, contract.ReasonInvalidNetwork, `network "unix" not allowed here; use one of tcp, tcp4, tcp6, udp, udp4, udp6`},
		{&sockagentv1.ThroughputRequest{Network: "tcp"}, contract.ReasonInvalidAddress, "address is empty"},
		{&sockagentv1.ThroughputRequest{Network: "tcp", Address: a, Direction: 7}, contract.ReasonInvalidArgument, "direction 7 unknown"},
		{&sockagentv1.ThroughputRequest{Network: "tcp", Address: a, Streams: 129}, contract.ReasonInvalidArgument, "streams 129 out of range; give 0 (1 stream) up to 128"},
		{&sockagentv1.ThroughputRequest{Network: "tcp", Address: a, Duration: dur(2 * time.Hour)}, contract.ReasonInvalidArgument, "duration 2h0m0s out of range"},
		{&sockagentv1.ThroughputRequest{Network: "tcp", Address: a, Duration: dur(-time.Second)}, contract.ReasonInvalidArgument, "duration -1s out of range"},
		{&sockagentv1.ThroughputRequest{Network: "tcp", Address: a, ReportInterval: dur(time.Millisecond)}, contract.ReasonInvalidArgument, "report_interval 1ms out of range; give 0 (1s) or 10ms to 1h0m0s"},
		{&sockagentv1.ThroughputRequest{Network: "udp", Address: a, Size: 23}, contract.ReasonInvalidArgument, "size 23 out of range for udp; give 0 (1400 bytes) or 24 to 65000"},
		{&sockagentv1.ThroughputRequest{Network: "udp", Address: a, Size: 65001}, contract.ReasonInvalidArgument, "size 65001 out of range"},
		{&sockagentv1.ThroughputRequest{Network: "tcp", Address: a, Size: 5 << 20}, contract.ReasonInvalidArgument, "size 5242880 out of range for tcp"},
		{&sockagentv1.ThroughputRequest{Network: "tcp", Address: a, Size: 1 << 20, Streams: 100}, contract.ReasonInvalidArgument, "size 1048576 × streams 100 needs"},
		{&sockagentv1.ThroughputRequest{Network: "tcp", Address: a, Streams: 2, LocalAddress: "127.0.0.1:5000"}, contract.ReasonInvalidAddress, `local_address "127.0.0.1:5000" names port 5000, but 2 streams cannot share one port`},
	} {
		_, _, err := tputRun(ctx, t, e, tc.r)
		wantStatus(t, err, codes.InvalidArgument, tc.reason, "throughput: ", tc.want)
	}
}

// Cancelling the RPC ends the test at once: workers stop, sockets close (the discard sees its
// connections end), the socket slots and the blocking call are free again, no goroutine stays.
func TestThroughputCancel(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) }) // runs last, once the agent is closed
	e := polEnv(t, "default:\n  limits: {sockets: 4, blocking_calls: 1}\n", false)
	d := tputTCPPeer(t, false)
	ctx, cancel := context.WithCancel(ctxT(t))
	st, err := sockagentv1.NewMeasureServiceClient(e.conn).Throughput(ctx, &sockagentv1.ThroughputRequest{
		Network: "tcp", Address: d.addr, Streams: 4, Duration: dur(time.Minute), ReportInterval: dur(20 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.Recv(); err != nil || m.GetInterval() == nil {
		t.Fatalf("first message %v, %v; want an interval", m, err)
	}
	// While it runs, its 4 socket slots are taken.
	_, err = e.sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0"})
	wantLimit(t, err, "limits.sockets", 4)
	start := time.Now()
	cancel()
	for err == nil || status.Code(err) == codes.ResourceExhausted {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Canceled {
		t.Errorf("after cancel: %v, want CANCELED", err)
	}
	tputWait(t, "the discard's connections to end", func() bool { return d.live.Load() == 0 })
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("cancel took %s to end the test", el)
	}
	// The slots and the blocking call come back (the handler may still be returning).
	tputWait(t, "a new 4-stream test to run", func() bool {
		_, sum, err := tputRun(ctxT(t), t, e, &sockagentv1.ThroughputRequest{Network: "tcp", Address: d.addr, Streams: 4, Bytes: 1 << 20})
		if status.Code(err) == codes.ResourceExhausted {
			return false
		}
		if err != nil || sum.GetBytes() != 1<<20 {
			t.Fatalf("throughput after cancel: %v, %v", sum, err)
		}
		return true
	})
}

// Against the agent's own served sockets (SocketService.Serve): a TCP and a UDP discard and
// source, in the same agent. The served discard counts exactly what the test sent.
func TestThroughputServedPeers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	served := func(network string, b sockagentv1.Behaviour) *sockagentv1.Socket {
		var s *sockagentv1.Socket
		if network == "tcp" {
			s = e.listen(t, network, "127.0.0.1:0")
		} else {
			s = e.bind(t, network, "127.0.0.1:0")
		}
		e.serve(t, s.GetSocketId(), b, 0, 0)
		return s
	}
	recv := sockagentv1.Direction_DIRECTION_RECEIVE
	short := func(r *sockagentv1.ThroughputRequest) *sockagentv1.ThroughputRequest {
		r.Duration, r.ReportInterval = dur(300*time.Millisecond), dur(50*time.Millisecond)
		return r
	}

	td := served("tcp", sockagentv1.Behaviour_BEHAVIOUR_DISCARD)
	ivs, sum := tputOK(ctx, t, e, short(&sockagentv1.ThroughputRequest{Network: "tcp", Address: td.GetLocalAddress(), Streams: 2}))
	tputCheckIntervals(t, ivs, sum)
	e.waitServing(t, td.GetSocketId(), "the discard to read every byte sent", func(sv *sockagentv1.Serving) bool {
		return sv.GetBytesIn() == sum.GetBytes() && sv.GetActiveConnections() == 0 && sv.GetConnections() == 2
	})

	ts := served("tcp", sockagentv1.Behaviour_BEHAVIOUR_SOURCE)
	ivs, sum = tputOK(ctx, t, e, short(&sockagentv1.ThroughputRequest{Network: "tcp", Address: ts.GetLocalAddress(), Direction: recv}))
	tputCheckIntervals(t, ivs, sum)
	if sum.GetBytes() == 0 || len(ivs) < 2 {
		t.Errorf("tcp receive from a served source: %d bytes in %d intervals", sum.GetBytes(), len(ivs))
	}

	ud := served("udp", sockagentv1.Behaviour_BEHAVIOUR_DISCARD)
	ivs, sum = tputOK(ctx, t, e, short(&sockagentv1.ThroughputRequest{Network: "udp", Address: ud.GetLocalAddress(), RateBitsPerSecond: 50_000_000, Streams: 2}))
	tputCheckIntervals(t, ivs, sum)
	sv := e.waitServing(t, ud.GetSocketId(), "the discard to count the datagrams", func(sv *sockagentv1.Serving) bool {
		return sv.GetDatagramsIn() >= sum.GetDatagramsReceived()
	})
	// datagrams_in counts the 2 streams' ReportRequests too (1 to 5 each).
	if sent, got := sum.GetDatagramsSent(), sum.GetDatagramsReceived(); sent == 0 || got == 0 || got > sent || sv.GetDatagramsIn() < got+2 || sv.GetDatagramsIn() > got+10 {
		t.Errorf("udp send to a served discard: %d sent, %d reported received; the discard read %d datagrams", sent, got, sv.GetDatagramsIn())
	}

	us := served("udp", sockagentv1.Behaviour_BEHAVIOUR_SOURCE)
	ivs, sum = tputOK(ctx, t, e, short(&sockagentv1.ThroughputRequest{Network: "udp", Address: us.GetLocalAddress(), Direction: recv, RateBitsPerSecond: 20_000_000, Size: 1000}))
	tputCheckIntervals(t, ivs, sum)
	if got := sum.GetDatagramsReceived(); got < 200 || sum.GetLoss() != 0 || sum.GetDatagramsSent() != got {
		t.Errorf("udp receive from a served source at 20 Mbit/s for 300ms: %d received of %d, loss %g; want about 750, none lost", got, sum.GetDatagramsSent(), sum.GetLoss())
	}
	tputWait(t, "the source test to stop (SourceStop)", func() bool { return agent.SourceTestsRunning(e.a, us.GetSocketId()) == 0 })
}

// rate_bits_per_second paces TCP too: 2 streams sharing 80 Mbit/s for 300ms send about 3 MB.
func TestThroughputTCPPaced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := tputTCPPeer(t, false)
	ivs, sum := tputOK(ctxT(t), t, e, &sockagentv1.ThroughputRequest{Network: "tcp", Address: d.addr, Streams: 2, Size: 16 << 10,
		RateBitsPerSecond: 80_000_000, Duration: dur(300 * time.Millisecond), ReportInterval: dur(100 * time.Millisecond)})
	tputCheckIntervals(t, ivs, sum)
	if got := sum.GetBytes(); got < 2_000_000 || got > 3_400_000 {
		t.Errorf("%d bytes at 80 Mbit/s in 300ms, want about 3,000,000", got)
	}
	tputWait(t, "the discard to count every byte", func() bool { return d.live.Load() == 0 && d.bytes.Load() == sum.GetBytes() })
}

// Agent.Shutdown ends a running test with AGENT_STOPPING and waits for nothing longer.
func TestThroughputAgentShutdown(t *testing.T) {
	t.Parallel()
	a, conn := serveBufconn(t, agent.Config{})
	e := &env{a: a, conn: conn}
	d := tputTCPPeer(t, false)
	st, err := sockagentv1.NewMeasureServiceClient(conn).Throughput(ctxT(t), &sockagentv1.ThroughputRequest{
		Network: "tcp", Address: d.addr, Duration: dur(time.Minute), ReportInterval: dur(20 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.Recv(); err != nil || m.GetInterval() == nil {
		t.Fatalf("first message %v, %v; want an interval", m, err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.a.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v, want nil", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Shutdown took %s with a throughput test running", el)
	}
	for err == nil {
		_, err = st.Recv()
	}
	wantStatus(t, err, codes.Unavailable, contract.ReasonAgentStopping, "throughput tcp "+d.addr)
	tputWait(t, "the discard's connection to end", func() bool { return d.live.Load() == 0 })
}

// A lost tail counts: the source's Report of what it sent, asked for at the end, makes the
// loss, not only the gaps in the sequence numbers. This source sends Data 0..6 of a test and
// reports 10 sent, as if 7, 8 and 9 were lost on the way.
func TestThroughputUDPReceiveTailLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	started := false
	src := tputUDPPeer(t, func(_ *tputPeer, pc net.PacketConn, from net.Addr, _ int, h wire.Header, _ []byte) {
		switch {
		case h.Type == wire.SourceStart && !started:
			started = true
			data := make([]byte, 100)
			for seq := range uint64(7) {
				wire.PutHeader(data, wire.Header{Type: wire.Data, Test: h.Test, Seq: seq})
				_, _ = pc.WriteTo(data, from)
			}
		case h.Type == wire.ReportRequest:
			_, _ = pc.WriteTo(wire.AppendReport(nil, h.Test, wire.ReportBody{Datagrams: 10, Bytes: 1000}), from)
		}
	})
	_, sum := tputOK(ctxT(t), t, e, &sockagentv1.ThroughputRequest{Network: "udp", Address: src.addr,
		Direction: sockagentv1.Direction_DIRECTION_RECEIVE, Size: 1000, Duration: dur(300 * time.Millisecond)})
	if sum.GetDatagramsReceived() != 7 || sum.GetDatagramsSent() != 10 || math.Abs(sum.GetLoss()-0.3) > 1e-9 {
		t.Errorf("summary: %d datagrams received of %d, loss %g; want 7 of 10, loss 0.3", sum.GetDatagramsReceived(), sum.GetDatagramsSent(), sum.GetLoss())
	}
}
