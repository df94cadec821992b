package agent_test

// Probe against an echo the agent serves, beside a raw Go ping-pong on loopback measured in the
// same run: the target is Probe TCP echo p50 <= 1.3x the raw ping-pong p50.
//
//	go test -run='^$' -bench=Probe -benchtime=5x ./agent/
//
// Each iteration runs one raw ping-pong of benchProbeN round trips and one Probe of as many,
// alternately, so machine noise hits both alike; the reported figures are the medians of the
// iterations' p50s.

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

const (
	benchProbeN    = 2000
	benchProbeSize = 64
)

// benchProbeAgent serves an agent over real TCP loopback gRPC and returns its clients; every
// socket opened through them is closed at the end.
func benchProbeAgent(b *testing.B) (sockagentv1.SocketServiceClient, sockagentv1.MeasureServiceClient, context.Context) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	b.Cleanup(cancel)
	a, conn := benchAgent(b)
	sc := sockagentv1.NewSocketServiceClient(conn)
	b.Cleanup(func() {
		list, err := sc.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
		if err != nil {
			b.Error(err)
		}
		for _, s := range list.GetSockets() {
			if _, err := sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: s.GetSocketId()}); err != nil {
				b.Errorf("close %s: %v", s.GetSocketId(), err)
			}
		}
		if n := a.NumSockets(); n != 0 {
			b.Errorf("%d sockets open at the end, want 0", n)
		}
	})
	return sc, sockagentv1.NewMeasureServiceClient(conn), ctx
}

// benchServedEcho opens a listener (tcp) or bound socket (udp) served with echo and returns
// its address.
func benchServedEcho(b *testing.B, ctx context.Context, sc sockagentv1.SocketServiceClient, network string) string {
	b.Helper()
	var s *sockagentv1.Socket
	if network == "tcp" {
		r, err := sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
		if err != nil {
			b.Fatal(err)
		}
		s = r.GetSocket()
	} else {
		r, err := sc.Bind(ctx, &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0"})
		if err != nil {
			b.Fatal(err)
		}
		s = r.GetSocket()
	}
	if _, err := sc.Serve(ctx, &sockagentv1.ServeRequest{SocketId: s.GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO}); err != nil {
		b.Fatal(err)
	}
	return s.GetLocalAddress()
}

// benchRawTCP is the baseline: a client conn and an echo goroutine of the test, 64-byte
// request/response, n round trips; it returns the p50.
func benchRawTCP(b *testing.B, n int) time.Duration {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, benchProbeSize)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	req, resp := make([]byte, benchProbeSize), make([]byte, benchProbeSize)
	rtts := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	c.Close()
	<-done
	return benchMedian(rtts)
}

// benchRawUDP is the UDP baseline: a connected client socket and an echo goroutine.
func benchRawUDP(b *testing.B, n int) time.Duration {
	b.Helper()
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			k, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if _, err := srv.WriteToUDPAddrPort(buf[:k], from); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("udp", srv.LocalAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	req, resp := make([]byte, benchProbeSize), make([]byte, 65536)
	rtts := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(resp); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	c.Close()
	srv.Close()
	<-done
	return benchMedian(rtts)
}

func benchProbeP50(b *testing.B, ctx context.Context, mc sockagentv1.MeasureServiceClient, network, address string) time.Duration {
	b.Helper()
	r, err := mc.Probe(ctx, &sockagentv1.ProbeRequest{Network: network, Address: address, Mode: sockagentv1.ProbeMode_PROBE_MODE_ECHO,
		Count: benchProbeN, Size: benchProbeSize, Warmup: 10})
	if err != nil {
		b.Fatal(err)
	}
	if r.GetReceived() != benchProbeN {
		b.Fatalf("probe %s: received %d of %d (errors %v)", network, r.GetReceived(), benchProbeN, r.GetErrors())
	}
	return r.GetRtt().GetP50().AsDuration()
}

func benchProbeVsRaw(b *testing.B, network string, raw func(*testing.B, int) time.Duration) {
	sc, mc, ctx := benchProbeAgent(b)
	addr := benchServedEcho(b, ctx, sc, network)
	var raws, probes []time.Duration
	for b.Loop() {
		raws = append(raws, raw(b, benchProbeN))
		probes = append(probes, benchProbeP50(b, ctx, mc, network, addr))
	}
	r, p := benchMedian(raws), benchMedian(probes)
	if r <= 0 {
		b.Fatalf("raw %s p50 %s", network, r)
	}
	ratio := float64(p) / float64(r)
	b.ReportMetric(float64(r.Nanoseconds()), "raw-p50-ns")
	b.ReportMetric(float64(p.Nanoseconds()), "probe-p50-ns")
	b.ReportMetric(ratio, "ratio")
	b.Logf("%s echo %dB x%d: raw Go ping-pong p50=%s  Probe p50=%s  ratio=%.2fx (target <= 1.3x for tcp; %d runs)",
		network, benchProbeSize, benchProbeN, r, p, ratio, len(raws))
}

// BenchmarkProbeTCPEchoVsRaw: Probe TCP echo p50 / raw Go TCP ping-pong p50.
func BenchmarkProbeTCPEchoVsRaw(b *testing.B) { benchProbeVsRaw(b, "tcp", benchRawTCP) }

// BenchmarkProbeUDPEchoVsRaw: Probe UDP echo p50 / raw Go UDP ping-pong p50.
func BenchmarkProbeUDPEchoVsRaw(b *testing.B) { benchProbeVsRaw(b, "udp", benchRawUDP) }

// benchDiscardBytes is what one iteration of BenchmarkServeDiscardVsRaw writes to each discard.
const benchDiscardBytes = 256 << 20

// benchWriteAll writes benchDiscardBytes to address in 128 KiB writes and returns the time.
func benchWriteAll(b *testing.B, address string) time.Duration {
	b.Helper()
	c, err := net.Dial("tcp", address)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 128<<10)
	t0 := time.Now()
	for sent := 0; sent < benchDiscardBytes; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(t0)
}

// BenchmarkServeDiscardVsRaw: one TCP stream into a served discard, beside the same stream into
// a discard goroutine of the test (io.Copy to io.Discard with a 128 KiB buffer).
func BenchmarkServeDiscardVsRaw(b *testing.B) {
	sc, _, ctx := benchProbeAgent(b)
	r, err := sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := sc.Serve(ctx, &sockagentv1.ServeRequest{SocketId: r.GetSocket().GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_DISCARD}); err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 128<<10)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			for {
				if _, err := c.Read(buf); err != nil {
					break
				}
			}
			c.Close()
		}
	}()
	var raws, served []time.Duration
	for b.Loop() {
		raws = append(raws, benchWriteAll(b, l.Addr().String()))
		served = append(served, benchWriteAll(b, r.GetSocket().GetLocalAddress()))
	}
	l.Close()
	<-done
	gbps := func(d time.Duration) float64 { return float64(benchDiscardBytes) * 8 / d.Seconds() / 1e9 }
	rw, sv := gbps(benchMedian(raws)), gbps(benchMedian(served))
	b.ReportMetric(rw, "raw-Gbit/s")
	b.ReportMetric(sv, "served-Gbit/s")
	b.ReportMetric(sv/rw, "ratio")
	b.Logf("tcp discard, one stream of %d MiB: raw Go %.1f Gbit/s  served discard %.1f Gbit/s  ratio %.2fx (%d runs)",
		benchDiscardBytes>>20, rw, sv, sv/rw, len(raws))
}
