package agent_test

// Throughput benchmarks: the agent's MeasureService.Throughput (over a real TCP loopback gRPC
// connection, against discard and source sockets the same agent serves) beside its baselines
// measured in the same run: iperf3 and a raw Go TCP stream for TCP, a raw Go UDP receiver for
// UDP. Each figure is reported with b.ReportMetric and the ratios with b.Logf.
//
//	go test -run='^$' -bench=Throughput -benchtime=1x ./agent/
//	SOCKAGENT_BENCH_SECONDS=0.3 go test -run='^$' -bench=Throughput -benchtime=1x ./agent/   # smoke
//
// Targets (issue 6): single-stream TCP at least 0.8x iperf3; UDP at least 0.5x the raw Go
// receive rate. iperf3 missing skips BenchmarkThroughputTCP, unless CI is set: then it fails.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// benchTputSeconds is each measurement's length: SOCKAGENT_BENCH_SECONDS, default 3.
func benchTputSeconds(b *testing.B) time.Duration {
	v := os.Getenv("SOCKAGENT_BENCH_SECONDS")
	if v == "" {
		return 3 * time.Second
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f > 600 {
		b.Fatalf("SOCKAGENT_BENCH_SECONDS=%q: want seconds, more than 0 and at most 600", v)
	}
	return time.Duration(f * float64(time.Second))
}

// benchTputAgent is an agent served on 127.0.0.1:0 with a measure client.
type benchTputAgent struct {
	sc sockagentv1.SocketServiceClient
	mc sockagentv1.MeasureServiceClient
}

func benchTputSetup(b *testing.B) (*benchTputAgent, context.Context) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	b.Cleanup(cancel)
	_, conn := benchAgent(b)
	return &benchTputAgent{sc: sockagentv1.NewSocketServiceClient(conn), mc: sockagentv1.NewMeasureServiceClient(conn)}, ctx
}

// serve opens a listener (tcp) or datagram socket (udp) on 127.0.0.1 served with behaviour.
func (e *benchTputAgent) serve(b *testing.B, ctx context.Context, network string, bh sockagentv1.Behaviour) string {
	b.Helper()
	var s *sockagentv1.Socket
	if network == "tcp" {
		r, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: network, Address: "127.0.0.1:0"})
		if err != nil {
			b.Fatal(err)
		}
		s = r.GetSocket()
	} else {
		r, err := e.sc.Bind(ctx, &sockagentv1.BindRequest{Network: network, Address: "127.0.0.1:0"})
		if err != nil {
			b.Fatal(err)
		}
		s = r.GetSocket()
	}
	if _, err := e.sc.Serve(ctx, &sockagentv1.ServeRequest{SocketId: s.GetSocketId(), Behaviour: bh}); err != nil {
		b.Fatal(err)
	}
	return s.GetLocalAddress()
}

// run runs one Throughput test and returns its summary.
func (e *benchTputAgent) run(b *testing.B, ctx context.Context, r *sockagentv1.ThroughputRequest) *sockagentv1.ThroughputSummary {
	b.Helper()
	st, err := e.mc.Throughput(ctx, r)
	if err != nil {
		b.Fatal(err)
	}
	for {
		m, err := st.Recv()
		if err != nil {
			b.Fatalf("throughput %v: %v", r, err)
		}
		if s := m.GetSummary(); s != nil {
			if len(s.GetErrors()) > 0 {
				b.Fatalf("throughput %v: errors %v", r, s.GetErrors())
			}
			return s
		}
	}
}

// benchIperf3 runs iperf3 for d against a one-off iperf3 server on 127.0.0.1 and returns the
// receiver's bits/s. iperf3 runs whole seconds: d rounded, at least 1s.
func benchIperf3(b *testing.B, ctx context.Context, bin string, d time.Duration) float64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	port := strconv.Itoa(benchFreePort(b))
	srv := exec.CommandContext(ctx, bin, "-s", "-1", "--forceflush", "-B", "127.0.0.1", "-p", port)
	out, err := srv.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = srv.Wait() }()
	defer func() { _ = srv.Process.Kill() }() // the one-off server exits by itself after the test
	listening := make(chan struct{})
	go func() { // waits for the server to listen, then drains its output so it never blocks
		lines := bufio.NewScanner(out)
		seen := false
		for lines.Scan() {
			if !seen && strings.Contains(lines.Text(), "Server listening") {
				close(listening)
				seen = true
			}
		}
	}()
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		b.Fatal("iperf3 -s did not say \"Server listening\" within 10s")
	}
	secs := strconv.Itoa(max(1, int(d.Seconds()+0.5))) // iperf3 -t takes whole seconds
	js, err := exec.CommandContext(ctx, bin, "-c", "127.0.0.1", "-p", port, "-t", secs, "-J").Output()
	if err != nil {
		b.Fatalf("iperf3 -c: %v\n%s", err, js)
	}
	var rep struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(js, &rep); err != nil || rep.End.SumReceived.BitsPerSecond <= 0 {
		b.Fatalf("iperf3 -J output: %v %s\n%.500s", err, rep.Error, js)
	}
	return rep.End.SumReceived.BitsPerSecond
}

func benchFreePort(b *testing.B) int {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// benchRawTCP streams 128 KiB writes over one loopback connection for d; the receiver's rate.
func benchRawTCPStream(b *testing.B, d time.Duration) float64 {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var (
		got     atomic.Uint64
		elapsed time.Duration
		wg      sync.WaitGroup
	)
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 128<<10)
		start := time.Now()
		for {
			n, err := c.Read(buf)
			got.Add(uint64(n))
			if err != nil {
				elapsed = time.Since(start)
				return
			}
		}
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 128<<10)
	_ = c.SetWriteDeadline(time.Now().Add(d))
	for {
		if _, err := c.Write(buf); err != nil {
			break
		}
	}
	c.Close()
	wg.Wait()
	return float64(got.Load()) * 8 / elapsed.Seconds()
}

// benchRawUDP blasts 1400-byte datagrams from one Go socket to another for d and returns the
// receiver's rate in datagrams per second.
func benchRawUDPRecv(b *testing.B, d time.Duration) float64 {
	b.Helper()
	rc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	_ = rc.SetReadBuffer(4 << 20)
	var (
		got   uint64
		first time.Time
		last  time.Time
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		buf := make([]byte, 2048)
		_ = rc.SetReadDeadline(time.Now().Add(d + time.Second))
		for {
			if _, err := rc.Read(buf); err != nil {
				return
			}
			if got == 0 {
				first = time.Now()
			}
			got++
			last = time.Now()
			_ = rc.SetReadDeadline(last.Add(200 * time.Millisecond))
		}
	})
	sc, err := net.DialUDP("udp", nil, rc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1400)
	for end := time.Now().Add(d); time.Now().Before(end); {
		if _, err := sc.Write(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
	}
	sc.Close()
	wg.Wait()
	if got < 2 {
		b.Fatalf("raw UDP: %d datagrams received", got)
	}
	return float64(got-1) / last.Sub(first).Seconds()
}

func benchTputMedian(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkThroughputTCP: iperf3, a raw Go stream and the Throughput RPC (one TCP stream to a
// served discard), one after the other per iteration; medians and ratios.
func BenchmarkThroughputTCP(b *testing.B) {
	bin, err := exec.LookPath("iperf3")
	if err != nil {
		if os.Getenv("CI") != "" {
			b.Fatalf("iperf3 not found (%v): CI needs it for the TCP baseline; install it (apt-get install iperf3)", err)
		}
		b.Skipf("iperf3 not found (%v); install it for the TCP baseline", err)
	}
	d := benchTputSeconds(b)
	e, ctx := benchTputSetup(b)
	discard := e.serve(b, ctx, "tcp", sockagentv1.Behaviour_BEHAVIOUR_DISCARD)
	var ip, raw, rpc []float64
	for b.Loop() {
		ip = append(ip, benchIperf3(b, ctx, bin, d))
		raw = append(raw, benchRawTCPStream(b, d))
		s := e.run(b, ctx, &sockagentv1.ThroughputRequest{Network: "tcp", Address: discard, Duration: durationpb.New(d)})
		rpc = append(rpc, s.GetBitsPerSecond())
	}
	mi, mr, mt := benchTputMedian(ip), benchTputMedian(raw), benchTputMedian(rpc)
	b.ReportMetric(mi/1e9, "iperf3-Gbit/s")
	b.ReportMetric(mr/1e9, "rawgo-Gbit/s")
	b.ReportMetric(mt/1e9, "throughput-Gbit/s")
	b.ReportMetric(mt/mi, "ratio-vs-iperf3")
	b.ReportMetric(mt/mr, "ratio-vs-rawgo")
	b.Logf("single-stream TCP %s: iperf3 %.1f Gbit/s, raw Go %.1f Gbit/s, Throughput %.1f Gbit/s; ratio %.2fx iperf3 (target >= 0.8), %.2fx raw Go (n=%d)",
		d, mi/1e9, mr/1e9, mt/1e9, mt/mi, mt/mr, len(rpc))
}

// BenchmarkThroughputUDP: a raw Go UDP receiver against a Go sender blasting 1400-byte
// datagrams, and the Throughput RPC receiving from a served source asked for 10 Gbit/s
// (more than either can do); datagrams received per second, medians and the ratio.
func BenchmarkThroughputUDP(b *testing.B) {
	d := benchTputSeconds(b)
	e, ctx := benchTputSetup(b)
	source := e.serve(b, ctx, "udp", sockagentv1.Behaviour_BEHAVIOUR_SOURCE)
	var raw, rpc, loss []float64
	for b.Loop() {
		raw = append(raw, benchRawUDPRecv(b, d))
		s := e.run(b, ctx, &sockagentv1.ThroughputRequest{Network: "udp", Address: source, Direction: sockagentv1.Direction_DIRECTION_RECEIVE,
			Duration: durationpb.New(d), RateBitsPerSecond: 10_000_000_000})
		rpc = append(rpc, float64(s.GetDatagramsReceived())/s.GetDuration().AsDuration().Seconds())
		loss = append(loss, s.GetLoss())
	}
	mr, mt := benchTputMedian(raw), benchTputMedian(rpc)
	b.ReportMetric(mr, "rawgo-datagrams/s")
	b.ReportMetric(mt, "throughput-datagrams/s")
	b.ReportMetric(mt/mr, "ratio-vs-rawgo")
	b.ReportMetric(benchTputMedian(loss), "throughput-loss")
	b.Logf("UDP receive of 1400-byte datagrams %s: raw Go %.0f/s (%.2f Gbit/s), Throughput %.0f/s (%.2f Gbit/s, loss %.3f); ratio %.2fx (target >= 0.5) (n=%d)",
		d, mr, mr*1400*8/1e9, mt, mt*1400*8/1e9, benchTputMedian(loss), mt/mr, len(rpc))
}
