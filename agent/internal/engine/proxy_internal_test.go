package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/policy"
)

// upstreamServer is a plain Go server the proxy forwards to: echo or an endless source.
type upstreamServer struct {
	ln       net.Listener
	accepted sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
	n        int
	active   atomic.Int32
}

func (u *upstreamServer) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

// startUpstream serves network/address with echo (source false) or endless bytes after the
// client's first byte (source true).
func startUpstream(t *testing.T, network, address string, source bool) *upstreamServer {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	u := &upstreamServer{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns = append(u.conns, c)
			u.n++
			u.mu.Unlock()
			u.accepted.Add(1)
			u.active.Add(1)
			go func() {
				defer u.accepted.Done()
				defer u.active.Add(-1)
				defer c.Close()
				if source {
					// A source starts once its client said so: a client that connects
					// through the proxy has its connection before the bytes come.
					buf := make([]byte, 32<<10)
					if _, err := c.Read(buf[:1]); err != nil {
						return
					}
					for {
						if _, err := c.Write(buf); err != nil {
							return
						}
					}
				}
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		u.mu.Lock()
		for _, c := range u.conns {
			_ = c.Close()
		}
		u.mu.Unlock()
		u.accepted.Wait()
	})
	return u
}

// proxyTable is a table whose default caller may reach loopback, with the policy text extra
// appended to the default rule set.
func proxyTable(t *testing.T, extra string) (*Table, context.Context) {
	t.Helper()
	stepAsideInMutation(t, "a proxy test")
	var p *policy.Policy
	if extra != "" {
		var err error
		if p, err = policy.Parse("proxy.yaml", []byte(extra)); err != nil {
			t.Fatal(err)
		}
	}
	tb := newTable(5*time.Second, 1<<20, p)
	t.Cleanup(tb.Stop)
	return tb, WithCaller(context.Background(), Caller{ID: "a"})
}

// startProxy listens on loopback (network "tcp", "udp" or "unix") and serves a proxy to up.
func startProxy(t *testing.T, tb *Table, ctx context.Context, network, up string, toxics ...Toxic) Info {
	t.Helper()
	var (
		in  Info
		err error
	)
	switch network {
	case "udp":
		in, err = tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil)
	case "unix":
		in, err = tb.Listen(ctx, "unix", filepath.Join(filepath.Dir(up), "proxy.sock"), "", nil)
	default:
		in, err = tb.Listen(ctx, network, "127.0.0.1:0", "", nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	in, err = tb.ServeProxy(ctx, in.ID, 0, 0, ProxyConfig{Upstream: up, Toxics: toxics})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func proxyInfo(t *testing.T, tb *Table, ctx context.Context, id string) *ProxyInfo {
	t.Helper()
	in, err := tb.GetFor(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if in.Serving == nil || in.Serving.Proxy == nil {
		t.Fatalf("socket %s shows no proxy: %+v", id, in.Serving)
	}
	return in.Serving.Proxy
}

// echo writes msg and reads it back, returning how long that took.
func echo(t *testing.T, c net.Conn, msg string) time.Duration {
	t.Helper()
	start := time.Now()
	werr := make(chan error, 1)
	go func() { _, err := c.Write([]byte(msg)); werr <- err }()
	buf := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if string(buf) != msg {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
	return time.Since(start)
}

// dialReset dials a proxy that resets its clients: the reset may come before connect
// returns, or at the first read.
func dialReset(t *testing.T, addr string) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 10))
	if n != 0 {
		t.Errorf("read %d bytes from a reset connection", n)
	}
	return err
}

func dialT(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestProxyForwards: without toxics, bytes pass both ways intact over TCP and a UNIX
// stream, and once the client closes, the counters show exactly what moved.
func TestProxyForwards(t *testing.T) {
	t.Parallel()
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tb, ctx := proxyTable(t, fmt.Sprintf("default:\n  unix_paths:\n    allow: [%q]\n", dir))
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(dir, "up.sock")
			}
			up := startUpstream(t, network, addr, false)
			in := startProxy(t, tb, ctx, network, up.ln.Addr().String())
			c := dialT(t, network, in.Local)
			msg := strings.Repeat("0123456789", 100_000)
			echo(t, c, msg)
			echo(t, c, "hello")
			// A half-close passes through: the upstream sees the end, and its answer to the
			// last bytes still comes back before its own end.
			if _, err := c.Write([]byte("bye")); err != nil {
				t.Fatal(err)
			}
			if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if rest, err := io.ReadAll(c); string(rest) != "bye" || err != nil {
				t.Errorf("after a half-close: %q, %v; want bye and EOF", rest, err)
			}
			_ = c.Close()
			waitFor(t, 5*time.Second, "the pair ends", func() bool { return proxyInfo(t, tb, ctx, in.ID).Active == 0 })
			if sv := mustServing(t, tb, in); sv.Errors != 0 {
				t.Errorf("%d errors (%s) after a clean exchange", sv.Errors, sv.LastError)
			}
			pi := proxyInfo(t, tb, ctx, in.ID)
			want := uint64(len(msg) + 5 + 3)
			if pi.BytesUpstream != want || pi.BytesDownstream != want || pi.Connections != 1 || pi.UpstreamFailures != 0 {
				t.Errorf("counters %+v, want %d bytes each way, 1 connection, no failures", pi, want)
			}
			if network == "tcp" && pi.Upstream != up.ln.Addr().String() {
				t.Errorf("upstream %q, want %q", pi.Upstream, up.ln.Addr())
			}
		})
	}
}

// TestProxyLatency: a downstream latency of 50ms with 5ms of jitter puts every echo between
// 45ms and 55ms plus scheduling; toxicity 0 never applies it. Not parallel: its bounds are
// tight, so it runs alone in the package.
func TestProxyLatency(t *testing.T) {
	tb, ctx := proxyTable(t, "")
	up := startUpstream(t, "tcp", "127.0.0.1:0", false)
	lat := Toxic{Direction: Downstream, Toxicity: 1, Kind: ToxicLatency, Latency: 50 * time.Millisecond, Jitter: 5 * time.Millisecond}
	in := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String(), lat)
	c := dialT(t, "tcp", in.Local)
	echo(t, c, "warm up") // the first echo waits for the upstream connect too
	var ds []time.Duration
	for i := range 21 {
		ds = append(ds, echo(t, c, fmt.Sprintf("ping %d", i)))
	}
	slices.Sort(ds)
	// Every echo waits at least latency-jitter. A wake-up on a loaded machine can be late, so
	// above: the median within the toxic's bounds plus 5ms, nine in ten within them plus
	// 20ms, and none later than 300ms.
	lo, med, p90, hi := ds[0], ds[len(ds)/2], ds[len(ds)*9/10], ds[len(ds)-1]
	if lo < 45*time.Millisecond || med > 60*time.Millisecond || p90 > 75*time.Millisecond || hi > 300*time.Millisecond {
		t.Errorf("echoes took %v to %v, median %v, 90th percentile %v; want at least 45ms, median under 60ms, 90%% under 75ms", lo, hi, med, p90)
	}
	if hi-lo < time.Millisecond {
		t.Errorf("echoes took %v to %v: no jitter", lo, hi)
	}

	never := lat
	never.Toxicity, never.Latency = 0, 200*time.Millisecond
	in0 := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String(), never)
	c0 := dialT(t, "tcp", in0.Local)
	for i := range 5 {
		if d := echo(t, c0, fmt.Sprintf("ping %d", i)); d > 150*time.Millisecond {
			t.Errorf("echo %d through a toxicity-0 latency took %v", i, d)
		}
	}
}

// readFor reads c until n bytes came, and returns how long from start.
func readFor(t *testing.T, c net.Conn, n int) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte("g")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// TestProxyBandwidth: a bandwidth toxic's rate, measured by the client over a bounded
// transfer, is within 3% of the rate given, at 100 Mbit/s and at 1 MB/s. Not parallel, as
// TestProxyLatency.
func TestProxyBandwidth(t *testing.T) {
	for _, tc := range []struct {
		rate  uint64
		bytes int
	}{
		{12_500_000, 25_000_000},
		{1_000_000, 2_000_000},
	} {
		t.Run(fmt.Sprint(tc.rate), func(t *testing.T) {
			tb, ctx := proxyTable(t, "")
			up := startUpstream(t, "tcp", "127.0.0.1:0", true)
			in := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String(), Toxic{Direction: Downstream, Toxicity: 1, Kind: ToxicBandwidth, Rate: tc.rate})
			c := dialT(t, "tcp", in.Local)
			// The first bytes start the clock: the connect is not part of the rate.
			readFor(t, c, 1000)
			took := readFor(t, c, tc.bytes)
			got := float64(tc.bytes) / took.Seconds()
			if math.Abs(got/float64(tc.rate)-1) > 0.03 {
				t.Errorf("%d bytes in %v: %.0f B/s, want %d B/s within 3%%", tc.bytes, took, got, tc.rate)
			}
		})
	}
}

// TestProxySlicer: every piece the client reads is at most average+variation bytes, and all
// the bytes arrive in order.
func TestProxySlicer(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	up := startUpstream(t, "tcp", "127.0.0.1:0", false)
	in := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String(),
		Toxic{Direction: Downstream, Toxicity: 1, Kind: ToxicSlicer, AverageSize: 50, SizeVariation: 10, Delay: 20 * time.Millisecond})
	c := dialT(t, "tcp", in.Local)
	msg := strings.Repeat("abcdefghij", 60)
	start := time.Now()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	reads := 0
	buf := make([]byte, 1000)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(got) < len(msg) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n > 60 {
			t.Errorf("read %d bytes, want at most 60", n)
		}
		reads++
		got = append(got, buf[:n]...)
	}
	if string(got) != msg {
		t.Errorf("got %q, want %q", got, msg)
	}
	// 600 bytes in pieces of 40 to 60: 10 to 15 pieces, each after the last but the first
	// 20ms later.
	if reads < 10 {
		t.Errorf("%d reads, want at least 10", reads)
	}
	if took := time.Since(start); took < 9*20*time.Millisecond {
		t.Errorf("took %v, want at least 9 delays of 20ms", took)
	}

	// The delay is between pieces: a write of one piece does not hold back the next.
	in2 := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String(),
		Toxic{Direction: Downstream, Toxicity: 1, Kind: ToxicSlicer, AverageSize: 50, Delay: time.Second})
	c2 := dialT(t, "tcp", in2.Local)
	echo(t, c2, "one")
	if d := echo(t, c2, "two"); d > 500*time.Millisecond {
		t.Errorf("a one-piece echo after another took %v; the slicer's delay is only between pieces", d)
	}
}

// TestProxyResetPeer: after_bytes lets exactly that many bytes through, then the client gets
// a reset (ECONNRESET), counted once; after resets at that time from the accept.
func TestProxyResetPeer(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	up := startUpstream(t, "tcp", "127.0.0.1:0", true)
	in := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String(), Toxic{Direction: Downstream, Toxicity: 1, Kind: ToxicResetPeer, AfterBytes: 100_000})
	c := dialT(t, "tcp", in.Local)
	if _, err := c.Write([]byte("g")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if n != 100_000 || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read %d bytes then %v, want 100000 then ECONNRESET", n, err)
	}
	waitFor(t, 5*time.Second, "the pair ends", func() bool { return proxyInfo(t, tb, ctx, in.ID).Active == 0 })
	if pi := proxyInfo(t, tb, ctx, in.ID); pi.Resets != 1 || pi.BytesDownstream != 100_000 {
		t.Errorf("resets %d, bytes downstream %d; want 1 and 100000", pi.Resets, pi.BytesDownstream)
	}

	// A chunk that ends exactly at the count resets too.
	echoUp0 := startUpstream(t, "tcp", "127.0.0.1:0", false)
	in1 := startProxy(t, tb, ctx, "tcp", echoUp0.ln.Addr().String(), Toxic{Direction: Upstream, Toxicity: 1, Kind: ToxicResetPeer, AfterBytes: 1000})
	c1 := dialT(t, "tcp", in1.Local)
	if _, err := c1.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	_ = c1.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c1); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after exactly the count: %v, want ECONNRESET", err)
	}

	echoUp := startUpstream(t, "tcp", "127.0.0.1:0", false)
	in2 := startProxy(t, tb, ctx, "tcp", echoUp.ln.Addr().String(), Toxic{Direction: Upstream, Toxicity: 1, Kind: ToxicResetPeer, After: 300 * time.Millisecond})
	start := time.Now()
	c2 := dialT(t, "tcp", in2.Local)
	echo(t, c2, "before")
	echo(t, c2, "still before") // a time's reset lets every byte through until then
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c2.Read(make([]byte, 10))
	took := time.Since(start)
	if !errors.Is(err, syscall.ECONNRESET) || took < 300*time.Millisecond || took > 900*time.Millisecond {
		t.Errorf("after %v: %v, want ECONNRESET between 300ms and 900ms", took, err)
	}
}

// TestProxyTimeout: an upstream timeout toxic lets nothing through and keeps the connection
// open, then closes it close_after later.
func TestProxyTimeout(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	up := startUpstream(t, "tcp", "127.0.0.1:0", false)
	in := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String(), Toxic{Direction: Upstream, Toxicity: 1, Kind: ToxicTimeout, CloseAfter: 400 * time.Millisecond})
	start := time.Now()
	c := dialT(t, "tcp", in.Local)
	if _, err := c.Write([]byte("anyone?")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	if n, err := c.Read(make([]byte, 10)); n != 0 || !errors.Is(err, osDeadline) {
		t.Fatalf("read %d bytes, %v; want nothing before the deadline", n, err)
	}
	if pi := proxyInfo(t, tb, ctx, in.ID); pi.BytesUpstream != 0 || pi.Active != 1 {
		t.Errorf("while black-holed: %d bytes upstream, %d active; want 0 and 1", pi.BytesUpstream, pi.Active)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 10))
	took := time.Since(start)
	if n != 0 || !errors.Is(err, io.EOF) || took < 400*time.Millisecond || took > 1000*time.Millisecond {
		t.Errorf("after %v: %d bytes, %v; want EOF between 400ms and 1s", took, n, err)
	}

	// Without close_after, the connection stays open, silent.
	in2 := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String(), Toxic{Direction: Downstream, Toxicity: 1, Kind: ToxicTimeout})
	c2 := dialT(t, "tcp", in2.Local)
	if _, err := c2.Write([]byte("anyone?")); err != nil {
		t.Fatal(err)
	}
	_ = c2.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c2.Read(make([]byte, 10)); n != 0 || !errors.Is(err, osDeadline) {
		t.Errorf("read %d bytes, %v; want nothing, the connection open", n, err)
	}
	if pi := proxyInfo(t, tb, ctx, in2.ID); pi.Active != 1 || pi.BytesUpstream != 7 || pi.BytesDownstream != 0 {
		t.Errorf("timeout without close_after: %+v; want 1 active, 7 bytes up, none down", pi)
	}
}

// TestProxyLimitData: exactly the limit passes, then the client reads EOF.
func TestProxyLimitData(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	up := startUpstream(t, "tcp", "127.0.0.1:0", true)
	in := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String(), Toxic{Direction: Downstream, Toxicity: 1, Kind: ToxicLimitData, Bytes: 100_001})
	c := dialT(t, "tcp", in.Local)
	if _, err := c.Write([]byte("g")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if n != 100_001 || err != nil {
		t.Errorf("read %d bytes then %v, want exactly 100001 then EOF", n, err)
	}
	waitFor(t, 5*time.Second, "the pair ends", func() bool { return proxyInfo(t, tb, ctx, in.ID).Active == 0 })
	if sv := mustServing(t, tb, in); sv.Errors != 0 || sv.Proxy.BytesDownstream != 100_001 {
		t.Errorf("%d errors (%s), %d bytes down; a toxic's end is no error, and 100001 bytes passed", sv.Errors, sv.LastError, sv.Proxy.BytesDownstream)
	}
}

// TestProxyUpdateToxics: latency added to an open connection is seen on its next echo, and
// its removal on the one after, on the same connection.
func TestProxyUpdateToxics(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	up := startUpstream(t, "tcp", "127.0.0.1:0", false)
	in := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String())
	c := dialT(t, "tcp", in.Local)
	echo(t, c, "warm up") // the first echo waits for the upstream connect too
	if d := echo(t, c, "fast"); d > 150*time.Millisecond {
		t.Errorf("echo without toxics took %v", d)
	}
	lat := []Toxic{{Direction: Upstream, Toxicity: 1, Kind: ToxicLatency, Latency: 200 * time.Millisecond}}
	start := time.Now()
	got, err := tb.UpdateToxics(ctx, in.ID, lat)
	if err != nil {
		t.Fatal(err)
	}
	// It answers once the connection took the set, which its readers do at once.
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("UpdateToxics took %v", took)
	}
	if tx := got.Serving.Proxy.Toxics; len(tx) != 1 || tx[0].Name != "latency_upstream" {
		t.Errorf("toxics after update %+v, want latency_upstream", tx)
	}
	if d := echo(t, c, "slow"); d < 200*time.Millisecond || d > 500*time.Millisecond {
		t.Errorf("echo with 200ms latency took %v, want 200ms to 500ms", d)
	}
	if _, err := tb.UpdateToxics(ctx, in.ID, nil); err != nil {
		t.Fatal(err)
	}
	if d := echo(t, c, "fast again"); d > 150*time.Millisecond {
		t.Errorf("echo after the latency went took %v", d)
	}
	if n := up.count(); n != 1 {
		t.Errorf("upstream saw %d connections, want 1 (the connection survives updates)", n)
	}
	// Not a proxy, a toxic of the wrong kind, another caller's socket.
	lis, _ := tb.Listen(ctx, "tcp", "127.0.0.1:0", "", nil)
	if _, err := tb.UpdateToxics(ctx, lis.ID, nil); Reason(err) != "WRONG_SOCKET_KIND" {
		t.Errorf("update of a plain listener: %v", err)
	}
	if _, err := tb.UpdateToxics(ctx, in.ID, []Toxic{{Direction: Upstream, Toxicity: 1, Kind: ToxicLoss}}); Reason(err) != "INVALID_ARGUMENT" || !strings.Contains(err.Error(), `toxic "loss_upstream"`) {
		t.Errorf("loss on a stream proxy: %v", err)
	}
	other := WithCaller(context.Background(), Caller{ID: "b"})
	if _, err := tb.UpdateToxics(other, in.ID, nil); !errors.Is(err, ErrUnknownSocket) {
		t.Errorf("another caller's update: %v", err)
	}
}

// TestProxyUpstreamPolicy: an upstream the caller's policy denies is refused at Serve, and
// nothing is connected.
func TestProxyUpstreamPolicy(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "tcp", "127.0.0.1:0", false)
	_, port, _ := net.SplitHostPort(up.ln.Addr().String())
	tb, ctx := proxyTable(t, fmt.Sprintf(`default:
  destinations:
    allow: [{name: anywhere}]
    deny: [{name: not the upstream, cidrs: [127.0.0.1/32], ports: ["%s"]}]
`, port))
	lis, err := tb.Listen(ctx, "tcp", "127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tb.ServeProxy(ctx, lis.ID, 0, 0, ProxyConfig{Upstream: up.ln.Addr().String()})
	if Reason(err) != "POLICY_DENIED" || !strings.Contains(err.Error(), "not the upstream") {
		t.Errorf("serve to a denied upstream: %v, want POLICY_DENIED naming the rule", err)
	}
	if got, _ := tb.GetFor(ctx, lis.ID); got.Serving != nil {
		t.Errorf("the listener is served after a refusal: %+v", got.Serving)
	}
	if n := up.count(); n != 0 {
		t.Errorf("the upstream saw %d connections, want none", n)
	}
	// The proxy's own address would forward to itself.
	if _, err := tb.ServeProxy(ctx, lis.ID, 0, 0, ProxyConfig{Upstream: lis.Local}); Reason(err) != "INVALID_ADDRESS" {
		t.Errorf("serve to itself: %v, want INVALID_ADDRESS", err)
	}
}

// TestProxyLimits: with limits.sockets 2, the listener and a served connection fill the
// caller's budget, so the upstream connection is refused: the client is reset and the
// failure counted with its reason.
func TestProxyLimits(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "default:\n  limits: {sockets: 2}\n")
	up := startUpstream(t, "tcp", "127.0.0.1:0", false)
	in := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String())
	if err := dialReset(t, in.Local); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client: %v; want a reset", err)
	}
	pi := proxyInfo(t, tb, ctx, in.ID)
	if pi.UpstreamFailures != 1 || !strings.HasPrefix(pi.LastUpstreamError, "LIMIT_EXCEEDED: ") || !strings.Contains(pi.LastUpstreamError, "limits.sockets") {
		t.Errorf("failures %d, last %q; want 1, LIMIT_EXCEEDED on limits.sockets", pi.UpstreamFailures, pi.LastUpstreamError)
	}
	if n := up.count(); n != 0 {
		t.Errorf("the upstream saw %d connections, want none", n)
	}
}

// TestProxyUpstreamRefused: an upstream that refuses resets the client, with the reason.
func TestProxyUpstreamRefused(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	// The proxy's own port is taken first: the port closed below, which refuses, cannot then
	// be handed to it (it was once, and the proxy refused to forward to itself).
	in, err := tb.Listen(ctx, "tcp", "127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	if in, err = tb.ServeProxy(ctx, in.ID, 0, 0, ProxyConfig{Upstream: addr}); err != nil {
		t.Fatal(err)
	}
	if err := dialReset(t, in.Local); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client: %v, want a reset", err)
	}
	if pi := proxyInfo(t, tb, ctx, in.ID); pi.UpstreamFailures != 1 || !strings.HasPrefix(pi.LastUpstreamError, "CONNECTION_REFUSED: ") {
		t.Errorf("failures %d, last %q; want 1 CONNECTION_REFUSED", pi.UpstreamFailures, pi.LastUpstreamError)
	}
}

// TestProxyCloseTearsDown: closing the proxy socket ends every pair on both sides and gives
// back every socket slot.
func TestProxyCloseTearsDown(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	up := startUpstream(t, "tcp", "127.0.0.1:0", false)
	in := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String(),
		Toxic{Direction: Downstream, Toxicity: 1, Kind: ToxicLatency, Latency: time.Millisecond})
	var cs []net.Conn
	for i := range 3 {
		c := dialT(t, "tcp", in.Local)
		echo(t, c, fmt.Sprint(i))
		cs = append(cs, c)
	}
	if got := proxyInfo(t, tb, ctx, in.ID).Active; got != 3 {
		t.Fatalf("%d active, want 3", got)
	}
	tb.mu.Lock()
	sockets := tb.budget.sockets
	tb.mu.Unlock()
	if sockets != 7 {
		t.Errorf("%d socket slots taken, want 7 (listener, 3 served, 3 upstream)", sockets)
	}
	if _, err := tb.Close(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 10)); n != 0 || err == nil || errors.Is(err, osDeadline) {
			t.Errorf("client %d after Close: %d bytes, %v", i, n, err)
		}
	}
	tb.mu.Lock()
	sockets = tb.budget.sockets
	tb.mu.Unlock()
	if sockets != 0 {
		t.Errorf("%d socket slots still taken after Close", sockets)
	}
	waitFor(t, 5*time.Second, "every upstream connection sees its end", func() bool { return up.active.Load() == 0 })
}

var osDeadline = os.ErrDeadlineExceeded
