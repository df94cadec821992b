package engine

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// udpEcho is a plain Go UDP echo the proxy forwards to; it counts and keeps what it got.
type udpEcho struct {
	pc  *net.UDPConn
	got chan string
}

func startUDPEcho(t *testing.T) *udpEcho {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	u := &udpEcho{pc: pc, got: make(chan string, 10000)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			select {
			case u.got <- string(buf[:n]):
			default:
			}
			_, _ = pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); <-done })
	return u
}

// udpClient dials the proxy at addr.
func udpClient(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.UDPConn)
}

// sendPaced sends n datagrams "0".."n-1" in batches, each batch once the proxy read the last
// (its DatagramsIn), so no datagram is lost to a full socket buffer: only toxics drop them.
func sendPaced(t *testing.T, tb *Table, in Info, c *net.UDPConn, n int) {
	t.Helper()
	ctx := WithCaller(t.Context(), Caller{ID: "a"})
	base := mustServing(t, tb, in).DatagramsIn
	for i := 0; i < n; {
		for j := 0; j < 50 && i < n; j, i = j+1, i+1 {
			if _, err := c.Write([]byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		want := base + uint64(i)
		waitFor(t, 10*time.Second, "the proxy reads the batch", func() bool {
			got, _ := tb.GetFor(ctx, in.ID)
			return got.Serving.DatagramsIn >= want
		})
	}
}

func mustServing(t *testing.T, tb *Table, in Info) *ServingInfo {
	t.Helper()
	got, err := tb.GetFor(WithCaller(t.Context(), Caller{ID: "a"}), in.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got.Serving
}

// TestProxyUDPLoss: a loss toxic of toxicity 0.5 drops each of 2000 datagrams with
// probability 0.5: the count dropped is within 5 standard deviations (5*sqrt(500), 112) of
// 1000, and every other datagram reaches the upstream; toxicity 0 drops none.
func TestProxyUDPLoss(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	up := startUDPEcho(t)
	in := startProxy(t, tb, ctx, "udp", up.pc.LocalAddr().String(), Toxic{Direction: Upstream, Toxicity: 0.5, Kind: ToxicLoss})
	c := udpClient(t, in.Local)
	sendPaced(t, tb, in, c, 2000)
	pi := proxyInfo(t, tb, ctx, in.ID)
	if pi.DatagramsDropped < 1000-112 || pi.DatagramsDropped > 1000+112 {
		t.Errorf("%d of 2000 dropped, want 1000 +- 112", pi.DatagramsDropped)
	}
	waitFor(t, 5*time.Second, "every datagram kept reaches the upstream", func() bool {
		return proxyInfo(t, tb, ctx, in.ID).DatagramsUpstream == 2000-pi.DatagramsDropped
	})
	if pi.Connections != 1 || pi.Active != 1 {
		t.Errorf("%d peers, %d active; want 1 and 1", pi.Connections, pi.Active)
	}

	if _, err := tb.UpdateToxics(ctx, in.ID, []Toxic{{Direction: Upstream, Toxicity: 0, Kind: ToxicLoss}}); err != nil {
		t.Fatal(err)
	}
	before := proxyInfo(t, tb, ctx, in.ID)
	sendPaced(t, tb, in, c, 500)
	waitFor(t, 5*time.Second, "every datagram reaches the upstream", func() bool {
		return proxyInfo(t, tb, ctx, in.ID).DatagramsUpstream == before.DatagramsUpstream+500
	})
	if got := proxyInfo(t, tb, ctx, in.ID).DatagramsDropped; got != before.DatagramsDropped {
		t.Errorf("toxicity 0 dropped %d", got-before.DatagramsDropped)
	}
}

// TestProxyUDPDuplicate: every answer of the upstream reaches the client twice: 20 datagrams
// upstream, 40 downstream, with exact byte counts.
func TestProxyUDPDuplicate(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	up := startUDPEcho(t)
	in := startProxy(t, tb, ctx, "udp", up.pc.LocalAddr().String(), Toxic{Direction: Downstream, Toxicity: 1, Kind: ToxicDuplicate})
	c := udpClient(t, in.Local)
	got := map[string]int{}
	buf := make([]byte, 100)
	for i := range 20 {
		if _, err := c.Write([]byte("d" + strconv.Itoa(i%10))); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got[string(buf[:n])]++
		}
	}
	for i := range 10 {
		if n := got["d"+strconv.Itoa(i)]; n != 4 {
			t.Errorf("d%d came back %d times, want 4", i, n)
		}
	}
	// A datagram is counted once written: the client may read the second copy before the
	// proxy's counter moves, so wait for the last count, then check every counter exactly.
	waitFor(t, 5*time.Second, "the 40th datagram downstream is counted", func() bool {
		return proxyInfo(t, tb, ctx, in.ID).DatagramsDownstream >= 40
	})
	pi := proxyInfo(t, tb, ctx, in.ID)
	if pi.DatagramsDuplicated != 20 || pi.DatagramsUpstream != 20 || pi.DatagramsDownstream != 40 || pi.BytesUpstream != 40 || pi.BytesDownstream != 80 {
		t.Errorf("counters %+v; want 20 duplicated, 20 datagrams (40 bytes) upstream, 40 (80 bytes) downstream", pi)
	}
}

// TestProxyUDPReorder: a datagram held by a reorder toxic of depth 2 reaches the upstream
// after the two that followed it; one with nothing after it goes once its delay is up.
func TestProxyUDPReorder(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	up := startUDPEcho(t)
	in := startProxy(t, tb, ctx, "udp", up.pc.LocalAddr().String(), Toxic{Direction: Upstream, Toxicity: 1, Kind: ToxicReorder, Depth: 2, Delay: 5 * time.Second})
	c := udpClient(t, in.Local)
	if _, err := c.Write([]byte("A")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A is held", func() bool { return proxyInfo(t, tb, ctx, in.ID).DatagramsReordered == 1 })
	if _, err := tb.UpdateToxics(ctx, in.ID, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"B", "C", "D"} {
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	for range 4 {
		select {
		case g := <-up.got:
			order = append(order, g)
		case <-time.After(5 * time.Second):
			t.Fatalf("upstream got %v, then nothing", order)
		}
	}
	if strings.Join(order, "") != "BCAD" {
		t.Errorf("upstream order %v, want B C A D", order)
	}

	// Held with nothing after it: released by its delay.
	if _, err := tb.UpdateToxics(ctx, in.ID, []Toxic{{Direction: Upstream, Toxicity: 1, Kind: ToxicReorder, Depth: 2, Delay: 200 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Write([]byte("E")); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-up.got:
		if took := time.Since(start); g != "E" || took < 200*time.Millisecond || took > 800*time.Millisecond {
			t.Errorf("upstream got %q after %v, want E after 200ms to 800ms", g, took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("E never reached the upstream")
	}
}

// TestProxyUDPLatencyAndIdle: datagram latency delays each echo by its bounds; a peer idle for
// proxyPeerIdle is forgotten and its socket slot given back.
func TestProxyUDPLatency(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	up := startUDPEcho(t)
	in := startProxy(t, tb, ctx, "udp", up.pc.LocalAddr().String(),
		Toxic{Direction: Downstream, Toxicity: 1, Kind: ToxicLatency, Latency: 40 * time.Millisecond},
		Toxic{Direction: Downstream, Toxicity: 1, Kind: ToxicBandwidth, Rate: 1 << 30})
	c := udpClient(t, in.Local)
	buf := make([]byte, 100)
	for i := range 5 {
		start := time.Now()
		if _, err := c.Write([]byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != strconv.Itoa(i) {
			t.Fatalf("echo %d: %q, %v", i, buf[:n], err)
		}
		if took := time.Since(start); took < 40*time.Millisecond || took > 250*time.Millisecond {
			t.Errorf("echo %d took %v, want 40ms to 250ms", i, took)
		}
	}
	// A UDP proxy refuses stream toxics.
	if _, err := tb.UpdateToxics(ctx, in.ID, []Toxic{{Direction: Upstream, Toxicity: 1, Kind: ToxicSlicer, AverageSize: 1}}); Reason(err) != "INVALID_ARGUMENT" || !strings.Contains(err.Error(), "applies to stream proxies") {
		t.Errorf("slicer on a UDP proxy: %v", err)
	}
	if _, err := tb.Close(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.budget.sockets != 0 {
		t.Errorf("%d socket slots taken after Close", tb.budget.sockets)
	}
}

// TestProxyUDPBandwidth: ten datagrams of 1000 bytes at 10000 bytes/s reach the upstream in
// one second (each when it would have passed such a link), in order.
func TestProxyUDPBandwidth(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	up := startUDPEcho(t)
	in := startProxy(t, tb, ctx, "udp", up.pc.LocalAddr().String(), Toxic{Direction: Upstream, Toxicity: 1, Kind: ToxicBandwidth, Rate: 10_000})
	c := udpClient(t, in.Local)
	start := time.Now()
	for i := range 10 {
		b := make([]byte, 1000)
		b[0] = byte('0' + i)
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		select {
		case g := <-up.got:
			if len(g) != 1000 || g[0] != byte('0'+i) {
				t.Fatalf("datagram %d: %d bytes starting %q", i, len(g), g[:1])
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("datagram %d never came", i)
		}
	}
	if took := time.Since(start); took < 900*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("10000 bytes at 10000 bytes/s took %v, want about 1s", took)
	}
}

// TestProxyUDPIdle: a peer idle for proxyPeerIdle is forgotten, its socket slot given back,
// and a datagram after that opens a new one. Not parallel: it shortens proxyPeerIdle.
func TestProxyUDPIdle(t *testing.T) {
	old := proxyPeerIdle
	proxyPeerIdle = 300 * time.Millisecond
	t.Cleanup(func() { proxyPeerIdle = old })
	tb, ctx := proxyTable(t, "")
	up := startUDPEcho(t)
	in := startProxy(t, tb, ctx, "udp", up.pc.LocalAddr().String())
	c := udpClient(t, in.Local)
	buf := make([]byte, 10)
	roundTrip := func() {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	start := time.Now()
	waitFor(t, 5*time.Second, "the idle peer is forgotten", func() bool { return proxyInfo(t, tb, ctx, in.ID).Active == 0 })
	if took := time.Since(start); took < 250*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("forgotten after %v, want about 300ms", took)
	}
	tb.mu.Lock()
	sockets := tb.budget.sockets
	tb.mu.Unlock()
	if sockets != 1 {
		t.Errorf("%d socket slots taken, want 1 (the proxy's own)", sockets)
	}
	roundTrip()
	if pi := proxyInfo(t, tb, ctx, in.ID); pi.Connections != 2 || pi.Active != 1 {
		t.Errorf("%d peers, %d active; want 2 and 1", pi.Connections, pi.Active)
	}
}
