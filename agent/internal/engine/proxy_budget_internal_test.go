package engine

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestProxyQueueCharged: the bytes a latency toxic holds count against the Serve caller's
// limits.buffered_bytes (100000 here), so they cap the connection's rate at 100000 bytes per
// 100 ms of latency: 512 KiB take at least 4 latencies (400 ms), where the 2 MiB queue alone
// would let them through in about one. Every byte arrives, in order; the stall is reported as a
// refusal on the served socket; and once the connection ends the caller holds nothing.
func TestProxyQueueCharged(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "default:\n  limits: {buffered_bytes: 100000}\n")
	up := startUpstream(t, "tcp", "127.0.0.1:0", false)
	in := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String(), Toxic{Direction: Upstream, Toxicity: 1, Kind: ToxicLatency, Latency: 100 * time.Millisecond})
	c := dialT(t, "tcp", in.Local)
	want := bytes.Repeat([]byte("0123456789abcdef"), 512<<10/16)
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		werr <- err
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the bytes that came back differ from those sent")
	}
	if took < 400*time.Millisecond || took > 5*time.Second {
		t.Errorf("512 KiB through 100 ms of latency within 100000 bytes took %v, want 400 ms to 5 s", took)
	}
	sv := mustServing(t, tb, in)
	if sv.Errors == 0 || !strings.Contains(sv.LastError, "limits.buffered_bytes") || !strings.HasPrefix(sv.LastError, "LIMIT_EXCEEDED: ") {
		t.Errorf("served socket: %d errors, last %q; want the stall reported as LIMIT_EXCEEDED on limits.buffered_bytes", sv.Errors, sv.LastError)
	}
	_ = c.Close()
	waitFor(t, 5*time.Second, "the pair ends", func() bool { return proxyInfo(t, tb, ctx, in.ID).Active == 0 })
	if ag, mine, _ := budgetOf(tb, "a", nil); ag != 0 || mine != 0 {
		t.Errorf("after the connection ended the agent holds %d bytes, the caller %d; want 0 and 0", ag, mine)
	}
}

// TestProxyDatagramsCharged: each datagram a UDP proxy queues counts against the Serve
// caller's limits.buffered_bytes (1000 here) until it is written: of 20 datagrams of 100 bytes
// held by 1 s of latency, exactly 10 are queued and reach the upstream, 10 are dropped and
// reported; once written, the budget is back to nothing and 10 more pass.
func TestProxyDatagramsCharged(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "default:\n  limits: {buffered_bytes: 1000}\n")
	// A sink, not an echo: answers would be queued, and charged, too.
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	in := startProxy(t, tb, ctx, "udp", sink.LocalAddr().String(), Toxic{Direction: Upstream, Toxicity: 1, Kind: ToxicLatency, Latency: time.Second})
	c := udpClient(t, in.Local)
	payload := bytes.Repeat([]byte("x"), 100)
	for range 20 {
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the proxy reads 20 datagrams", func() bool { return mustServing(t, tb, in).DatagramsIn == 20 })
	if ag, mine, _ := budgetOf(tb, "a", nil); ag != 1000 || mine != 1000 {
		t.Errorf("with 10 datagrams of 100 bytes queued: agent %d, caller %d bytes; want 1000 and 1000", ag, mine)
	}
	sv := mustServing(t, tb, in)
	if sv.Errors != 10 || !strings.HasPrefix(sv.LastError, "LIMIT_EXCEEDED: ") || !strings.Contains(sv.LastError, "limits.buffered_bytes") {
		t.Errorf("served socket: %d errors, last %q; want 10, LIMIT_EXCEEDED on limits.buffered_bytes", sv.Errors, sv.LastError)
	}
	waitFor(t, 5*time.Second, "10 datagrams reach the upstream", func() bool { return proxyInfo(t, tb, ctx, in.ID).DatagramsUpstream == 10 })
	waitFor(t, 5*time.Second, "every byte given back once written", func() bool {
		ag, mine, _ := budgetOf(tb, "a", nil)
		return ag == 0 && mine == 0
	})
	for range 10 {
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "10 more reach the upstream", func() bool { return proxyInfo(t, tb, ctx, in.ID).DatagramsUpstream == 20 })
	if got := mustServing(t, tb, in).Errors; got != 10 {
		t.Errorf("%d errors after 10 more within the budget, want still 10", got)
	}
}
