package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// The rows in table order, with their targets.
func defs() []def {
	return []def{
		{
			key: "attach", figure: "attach relay throughput", baseline: "raw Go TCP 1 stream", unit: "bit/s",
			target: target{atLeast: true, limit: 0.5}, cpuLimit: 2.5,
			note: "sockctl's client -> Attach -> agent socket -> Go reader, 64 KiB chunks on both sides; medians of 6 alternating rounds; CPU: this process (caller, agent, reader) vs the raw writer and reader",
			run:  attachRow,
		},
		{
			key: "probe", figure: "probe TCP echo RTT p50", baseline: "raw Go TCP ping-pong p50", unit: "s",
			target: target{limit: 1.3}, note: "64 B against an agent-served echo; median of per-round p50s, rounds alternate",
			run: probeRow,
		},
		{
			key: "tls", figure: "probe TLS handshakes/s", baseline: "plain Go TLS client loop", unit: "handshake/s",
			target: target{atLeast: true, limit: 0.9}, note: "TCP connect + TLS 1.3 handshake (ECDSA P-256) against an agent-served TLS echo, reset after; median of rounds, rounds alternate",
			run: tlsRow,
		},
		{
			key: "tcp", figure: "throughput TCP 1 stream", baseline: "iperf3 TCP 1 stream", unit: "bit/s",
			target: target{atLeast: true, limit: 0.8}, note: "send to an agent-served discard",
			run: tcpRow,
		},
		{
			key: "udp", figure: "throughput UDP receive rate", baseline: "raw Go UDP receive rate", unit: "datagram/s",
			target: target{atLeast: true, limit: 0.5}, note: "1400 B datagrams, receive from an agent-served source sending uncapped, datagrams received per second",
			run: udpRow,
		},
		{
			key: "sendrecv", figure: "Send+Recv 64 B p50", baseline: "bare gRPC unary p50", unit: "s",
			target: target{limit: 1.9}, note: "two RPCs (Send, exact Recv) on an open TCP pair vs one health Check on a plain grpc-go server",
			run: sendRecvRow,
		},
		{
			key: "metrics", figure: "Send+Recv 64 B p50, metrics on", baseline: "same, metrics off", unit: "s",
			target: target{limit: 1.05}, note: "two in-process agents, one with --metrics-listen's metrics (scraped every second), calls alternate",
			run: metricsRow,
		},
		{
			key: "events", figure: "Send+Recv 64 B p50 with one watcher", baseline: "same, nobody watching", unit: "s",
			target: target{limit: 1.1}, note: "two in-process agents, one followed by a WatchEvents stream (1s data interval), calls alternate",
			run: eventsRow,
		},
		{
			key: "traces", figure: "Send+Recv 64 B p50, traces off", baseline: "same, no tracing hooks", unit: "s",
			target: target{limit: 1.02}, note: "a second in-process agent and connection with the tracing hooks sockagent and sockctl install (off: no OTEL_* endpoint), a span started per call; calls alternate",
			run: tracesRow,
		},
		{
			key: "dialopts", figure: "Dial+Close with options p50", baseline: "Dial+Close without options p50", unit: "s",
			target: target{limit: 1.05}, note: "TCP to a local Go listener; options no_delay, ttl, recv_buffer, keepalive (on, idle, interval, count); 5000 alternating pairs",
			run: dialOptionsRow,
		},
		{
			key: "proxy", figure: "proxy TCP 1 stream, no toxics", baseline: "raw Go TCP 1 stream", unit: "bit/s",
			target: target{atLeast: true, limit: 0.5}, note: "Go writer -> agent proxy (serve proxy) -> Go reader, 64 KiB writes",
			run: proxyRow,
		},
		{
			key: "proxytoxi", figure: "proxy TCP 1 stream, no toxics", baseline: "toxiproxy TCP 1 stream", unit: "bit/s",
			target: target{atLeast: true, limit: 1.5}, note: "the same stream through toxiproxy " + toxiproxyVersion + " (built by sockbench, its HTTP API on 127.0.0.1)",
			run: proxyToxiproxyRow,
		},
		{
			key: "proxylat", figure: "latency toxic 20ms: echo p50 error", baseline: "toxiproxy's, same toxic", unit: "s",
			target: target{absolute: true, limit: 0.001}, zero: true,
			note: "expected: the probe's p50 through the same proxy without the toxic, plus 20ms (downstream); judged on the value, toxiproxy's for reference",
			run:  proxyLatencyRow,
		},
		{
			key: "proxylat99", figure: "latency toxic 20ms: echo p99 error", baseline: "toxiproxy's, same toxic", unit: "s",
			target: target{absolute: true, limit: 0.002}, zero: true,
			note: "expected: the p99 without the toxic, plus 20ms; judged on the value, toxiproxy's for reference",
			run:  proxyLatency99Row,
		},
		{
			key: "proxybw", figure: "bandwidth toxic 100Mbit/s, measured", baseline: "the toxic's rate", unit: "bit/s",
			target: target{within: 0.03}, note: "upstream; a Go writer moves Seconds' worth at the rate, timed from the first write to the reader's EOF",
			run: proxyBandwidthRow,
		},
		{
			key: "getinfo", figure: "GetInfo p50", baseline: "bare gRPC unary p50", unit: "s",
			target: target{limit: 1.1},
			run:    getInfoRow,
		},
		{
			key: "sockctl", figure: "sockctl info wall p50", baseline: "bare Go client binary p50", unit: "s",
			target: target{limit: 1.2}, note: "both built static without symbols, as the README builds sockctl",
			timeout: func(Config) time.Duration { return 6 * time.Minute }, // go build, cold cache
			run:     sockctlRow,
		},
		{
			key: "scenario", figure: "1,000-step scenario wall", baseline: "bare Go client binary, same RPCs", unit: "s",
			target: target{limit: 1.2}, note: "`sockctl run` (the binary) of listen, dial, accept, 497 x send+recv, 3 closes",
			timeout: func(Config) time.Duration { return 6 * time.Minute }, // go build, cold cache
			run:     scenarioRow,
		},
		{
			key: "matrix", figure: "20 x 20 TCP matrix wall, one Sweep per source (10 x 10 in --quick)", baseline: "same, one Probe RPC per cell", unit: "s",
			target: target{limit: 0.8}, note: "in-process agents on loopback; each round serves an echo on every target (not timed), then measures every cell (a TCP connect), 32 at once per source; median of alternating rounds",
			run: matrixRow,
		},
	}
}

const (
	chunkSize   = 64 << 10 // attach and raw TCP writes
	readSize    = 128 << 10
	pingSize    = 64
	udpSize     = 1400
	ioSlack     = 30 * time.Second // deadlines on raw sockets beyond a row's planned end
	closeBudget = 5 * time.Second
)

// closeSocket closes an agent socket on a context of its own, so it runs after a row timed out.
func (e *env) closeSocket(id string) { closeSocketOn(e.sc, id) }

// closeSocketOn is closeSocket on the agent sc reaches.
func closeSocketOn(sc sockagentv1.SocketServiceClient, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), closeBudget)
	defer cancel()
	_, _ = sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id})
}

// resetClose closes c with a reset (SO_LINGER 0), so measurement connections leave no TIME_WAIT.
func resetClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// acceptOne accepts one connection within closeBudget.
func acceptOne(l net.Listener) (net.Conn, error) {
	if tl, ok := l.(*net.TCPListener); ok {
		_ = tl.SetDeadline(time.Now().Add(closeBudget))
		defer tl.SetDeadline(time.Time{})
	}
	c, err := l.Accept()
	if err != nil {
		return nil, fmt.Errorf("accept on %s: %w", l.Addr(), err)
	}
	return c, nil
}

// counted is what a reader got before EOF (or err).
type counted struct {
	n   int64
	err error
}

// countReader reads c to EOF in readSize reads and reports how many bytes came.
func countReader(c net.Conn) <-chan counted {
	done := make(chan counted, 1)
	go func() {
		buf := make([]byte, readSize)
		var n int64
		for {
			k, err := c.Read(buf)
			n += int64(k)
			if errors.Is(err, io.EOF) {
				done <- counted{n: n}
				return
			}
			if err != nil {
				done <- counted{n: n, err: err}
				return
			}
		}
	}()
	return done
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

func bitsPerSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) * 8 / d.Seconds()
}

// attachRow alternates rounds of raw Go TCP single stream and of the Attach relay, each a
// share of Seconds, and compares the medians of the rounds' rates and CPU per GB: on shared
// cores a burst of other work then spoils a round or two, not one side's whole figure.
func attachRow(ctx context.Context, e *env) result {
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{err: err, baseErr: err}
	}
	defer peer.Close()
	// The caller is sockctl's client connection (ctl/client), as `sockctl attach` makes it.
	conn, err := client.Dial(e.addr, client.Options{})
	if err != nil {
		return result{err: err, baseErr: err}
	}
	defer conn.Close()
	sc := sockagentv1.NewSocketServiceClient(conn)
	rounds := e.iterations(6, 2)
	per := e.cfg.Seconds / time.Duration(rounds)
	var r result
	var rates, cpus, baseRates, baseCPUs []float64
	for range rounds {
		if r.baseErr == nil {
			var rate, cpu float64
			if rate, cpu, r.baseErr = rawTCP(peer, per); r.baseErr == nil {
				baseRates, baseCPUs = append(baseRates, rate), append(baseCPUs, cpu)
			}
		}
		if r.err == nil {
			var rate, cpu float64
			if rate, cpu, r.err = e.attachRelay(ctx, sc, peer, per); r.err == nil {
				rates, cpus = append(rates, rate), append(cpus, cpu)
			}
		}
	}
	r.value, r.cpu, r.base, r.baseCPU = median(rates), median(cpus), median(baseRates), median(baseCPUs)
	return r
}

// rawTCP writes chunkSize chunks over a plain loopback connection for d and returns the rate
// from the first write to the reader's EOF, and the CPU seconds per GB of that span.
func rawTCP(peer net.Listener, d time.Duration) (bps, cpu float64, err error) {
	c, err := net.DialTimeout("tcp", peer.Addr().String(), closeBudget)
	if err != nil {
		return 0, 0, err
	}
	defer resetClose(c)
	s, err := acceptOne(peer)
	if err != nil {
		return 0, 0, err
	}
	defer resetClose(s)
	span := startCPU()
	start := time.Now()
	end := start.Add(d)
	_ = c.SetWriteDeadline(end.Add(ioSlack))
	_ = s.SetReadDeadline(end.Add(ioSlack))
	got := countReader(s)
	buf := pattern(chunkSize)
	var sent int64
	for time.Now().Before(end) {
		n, err := c.Write(buf)
		sent += int64(n)
		if err != nil {
			return 0, 0, fmt.Errorf("raw TCP write after %d bytes: %w", sent, err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, 0, err
	}
	res := <-got
	elapsed, used := time.Since(start), span.elapsed()
	if res.err != nil || res.n != sent {
		return 0, 0, fmt.Errorf("raw TCP reader got %d of %d bytes: %v", res.n, sent, res.err)
	}
	return bitsPerSecond(res.n, elapsed), cpuPerGB(used, res.n), nil
}

// attachRelay dials peer from the agent, attaches to that socket and streams chunkSize
// messages for d; the rate, and the CPU seconds per GB, are from the first message to the
// peer reader's EOF.
func (e *env) attachRelay(ctx context.Context, sc sockagentv1.SocketServiceClient, peer net.Listener, d time.Duration) (bps, cpu float64, err error) {
	dr, err := sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: peer.Addr().String(), Timeout: durationpb.New(closeBudget)})
	if err != nil {
		return 0, 0, rpcErr("Dial", err)
	}
	id := dr.GetSocket().GetSocketId()
	defer e.closeSocket(id)
	s, err := acceptOne(peer)
	if err != nil {
		return 0, 0, err
	}
	defer resetClose(s)
	_ = s.SetReadDeadline(time.Now().Add(d + ioSlack))

	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := sc.Attach(actx)
	if err != nil {
		return 0, 0, rpcErr("Attach", err)
	}
	// recvErr is the stream's status after a failed Send (Send only says io.EOF).
	recvErr := func(sendErr error) error {
		if _, err := st.Recv(); err != nil && !errors.Is(err, io.EOF) {
			return rpcErr("Attach", err)
		}
		return rpcErr("Attach", sendErr)
	}
	if err := st.Send(&sockagentv1.AttachRequest{SocketId: id, ReadSize: chunkSize}); err != nil {
		return 0, 0, recvErr(err)
	}
	// The peer writes nothing: its half-close ends the relay's read direction at once, so
	// only the upload is timed.
	if err := s.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, 0, err
	}
	if r, err := st.Recv(); err != nil {
		return 0, 0, rpcErr("Attach", err)
	} else if !r.GetEof() {
		return 0, 0, fmt.Errorf("attach: got %d bytes from a peer that sent none, want eof", len(r.GetData()))
	}
	got := countReader(s)
	req := &sockagentv1.AttachRequest{Data: pattern(chunkSize)}
	span := startCPU()
	start := time.Now()
	end := start.Add(d)
	var sent int64
	for time.Now().Before(end) {
		if err := st.Send(req); err != nil {
			return 0, 0, recvErr(err)
		}
		sent += chunkSize
	}
	if err := st.CloseSend(); err != nil {
		return 0, 0, recvErr(err)
	}
	var res counted
	select {
	case res = <-got:
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("attach: the peer did not see EOF: %w", ctx.Err())
	}
	elapsed, used := time.Since(start), span.elapsed()
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		return 0, 0, fmt.Errorf("attach did not end with OK: %w", rpcErr("Attach", err))
	}
	if res.err != nil || res.n != sent {
		return 0, 0, fmt.Errorf("attach: the peer got %d of %d bytes: %v", res.n, sent, res.err)
	}
	return bitsPerSecond(res.n, elapsed), cpuPerGB(used, res.n), nil
}

// serveSocket opens a socket on the agent (a TCP listener, or a bound UDP socket) at
// 127.0.0.1:0, serves it with b, and returns its address and a func closing it.
func (e *env) serveSocket(ctx context.Context, network string, b sockagentv1.Behaviour) (string, func(), error) {
	var sock *sockagentv1.Socket
	if network == "udp" {
		r, err := e.sc.Bind(ctx, &sockagentv1.BindRequest{Network: network, Address: "127.0.0.1:0"})
		if err != nil {
			return "", nil, rpcErr("Bind", err)
		}
		sock = r.GetSocket()
	} else {
		r, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: network, Address: "127.0.0.1:0"})
		if err != nil {
			return "", nil, rpcErr("Listen", err)
		}
		sock = r.GetSocket()
	}
	closeFn := func() { e.closeSocket(sock.GetSocketId()) }
	if _, err := e.sc.Serve(ctx, &sockagentv1.ServeRequest{SocketId: sock.GetSocketId(), Behaviour: b}); err != nil {
		closeFn()
		return "", nil, rpcErr("Serve", err)
	}
	return sock.GetLocalAddress(), closeFn, nil
}

// probeRow alternates rounds of a Probe RPC (echo mode, against an agent-served echo) with as
// many raw Go ping-pongs against a Go echo, and compares the medians of the rounds' p50s.
func probeRow(ctx context.Context, e *env) result {
	rounds, per := e.iterations(10, 2), e.iterations(200, 100)
	var r result
	echoAddr, closeEcho, err := e.serveSocket(ctx, "tcp", sockagentv1.Behaviour_BEHAVIOUR_ECHO)
	if err != nil {
		r.err = err
	} else {
		defer closeEcho()
	}
	pp, err := newPingPong()
	if err != nil {
		r.baseErr = err
	} else {
		defer pp.close()
	}
	var ours, base []time.Duration
	for i := range rounds {
		if r.baseErr == nil {
			var p50 time.Duration
			if p50, r.baseErr = pp.round(per); r.baseErr == nil {
				base = append(base, p50)
			}
		}
		if r.err == nil {
			warmup := uint32(10)
			if i == 0 {
				warmup = 50
			}
			p, err := e.mc.Probe(ctx, &sockagentv1.ProbeRequest{
				Network: "tcp", Address: echoAddr, Mode: sockagentv1.ProbeMode_PROBE_MODE_ECHO,
				Count: uint32(per), Size: pingSize, Warmup: warmup, Timeout: durationpb.New(time.Second),
			})
			switch {
			case err != nil:
				r.err = rpcErr("Probe", err)
			case p.GetReceived() != uint32(per):
				r.err = fmt.Errorf("probe: %d of %d round trips succeeded; errors: %v", p.GetReceived(), per, p.GetErrors())
			default:
				ours = append(ours, p.GetRtt().GetP50().AsDuration())
			}
		}
	}
	r.value, r.base = median(ours).Seconds(), median(base).Seconds()
	return r
}

// pingPong is a raw Go TCP echo and a client connected to it.
type pingPong struct {
	lis       net.Listener
	cli, srv  net.Conn
	echoed    chan struct{}
	req, resp []byte
}

func newPingPong() (_ *pingPong, err error) {
	p := &pingPong{req: pattern(pingSize), resp: make([]byte, pingSize), echoed: make(chan struct{})}
	if p.lis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if p.cli, err = net.DialTimeout("tcp", p.lis.Addr().String(), closeBudget); err != nil {
		p.lis.Close()
		return nil, err
	}
	if p.srv, err = acceptOne(p.lis); err != nil {
		p.cli.Close()
		p.lis.Close()
		return nil, err
	}
	go func() { // the echo: what it reads it writes back, until the client closes
		defer close(p.echoed)
		buf := make([]byte, 4096)
		for {
			n, err := p.srv.Read(buf)
			if n > 0 {
				if _, werr := p.srv.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for range 50 { // warm up
		if _, err := p.once(); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

// once times one round trip of pingSize bytes.
func (p *pingPong) once() (time.Duration, error) {
	_ = p.cli.SetDeadline(time.Now().Add(closeBudget))
	t0 := time.Now()
	if _, err := p.cli.Write(p.req); err != nil {
		return 0, fmt.Errorf("ping-pong write: %w", err)
	}
	if _, err := io.ReadFull(p.cli, p.resp); err != nil {
		return 0, fmt.Errorf("ping-pong read: %w", err)
	}
	return time.Since(t0), nil
}

// round times n round trips and returns their median.
func (p *pingPong) round(n int) (time.Duration, error) {
	s := make([]time.Duration, 0, n)
	for range n {
		d, err := p.once()
		if err != nil {
			return 0, err
		}
		s = append(s, d)
	}
	return median(s), nil
}

func (p *pingPong) close() {
	resetClose(p.cli)
	<-p.echoed
	resetClose(p.srv)
	p.lis.Close()
}

// throughput runs a Throughput test and returns its summary.
func (e *env) throughput(ctx context.Context, req *sockagentv1.ThroughputRequest) (*sockagentv1.ThroughputSummary, error) {
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := e.mc.Throughput(tctx, req)
	if err != nil {
		return nil, rpcErr("Throughput", err)
	}
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("throughput: the stream ended without a summary")
		}
		if err != nil {
			return nil, rpcErr("Throughput", err)
		}
		if s := r.GetSummary(); s != nil {
			if len(s.GetErrors()) > 0 {
				return nil, fmt.Errorf("throughput: streams failed: %v", s.GetErrors())
			}
			return s, nil
		}
	}
}

// throughputRequest is a single-stream test of d, reporting once.
func throughputRequest(network, addr string, d time.Duration) *sockagentv1.ThroughputRequest {
	return &sockagentv1.ThroughputRequest{
		Network: network, Address: addr, Direction: sockagentv1.Direction_DIRECTION_SEND,
		Duration: durationpb.New(d), Streams: 1, ReportInterval: durationpb.New(max(d, 10*time.Millisecond)),
	}
}

// tcpRow: iperf3 single stream, then Throughput to an agent-served discard.
func tcpRow(ctx context.Context, e *env) result {
	var r result
	r.base, r.baseCPU, r.note, r.baseErr = iperf3(ctx, e.cfg.Seconds)
	addr, closeFn, err := e.serveSocket(ctx, "tcp", sockagentv1.Behaviour_BEHAVIOUR_DISCARD)
	if err != nil {
		r.err = err
		return r
	}
	defer closeFn()
	span := startCPU()
	s, err := e.throughput(ctx, throughputRequest("tcp", addr, e.cfg.Seconds))
	if err != nil {
		r.err = err
		return r
	}
	r.value, r.cpu = s.GetBitsPerSecond(), cpuPerGB(span.elapsed(), int64(s.GetBytes()))
	return r
}

// udpRow: a Go sender blasting at a Go receiver, then Throughput receiving (uncapped) from an
// agent-served source; both count datagrams received per second. Receiving from a source, not
// sending to a served discard, measures the agent's own receiver: the served UDP discard reads
// slower than it, and would be the figure instead.
func udpRow(ctx context.Context, e *env) result {
	var r result
	r.base, r.baseCPU, r.baseErr = rawUDP(e.cfg.Seconds)
	addr, closeFn, err := e.serveSocket(ctx, "udp", sockagentv1.Behaviour_BEHAVIOUR_SOURCE)
	if err != nil {
		r.err = err
		return r
	}
	defer closeFn()
	req := throughputRequest("udp", addr, e.cfg.Seconds)
	req.Direction = sockagentv1.Direction_DIRECTION_RECEIVE
	req.Size = udpSize
	req.RateBitsPerSecond = 1 << 40 // uncapped, as the Go sender
	span := startCPU()
	s, err := e.throughput(ctx, req)
	used := span.elapsed()
	if err != nil {
		r.err = err
		return r
	}
	if s.GetDatagramsReceived() == 0 {
		r.err = fmt.Errorf("throughput: no datagrams received from the source (%d sent)", s.GetDatagramsSent())
		return r
	}
	r.value = float64(s.GetDatagramsReceived()) / s.GetDuration().AsDuration().Seconds()
	r.cpu = cpuPerGB(used, int64(s.GetDatagramsReceived())*udpSize)
	r.note = fmt.Sprintf("loss %.0f%%", 100*s.GetLoss())
	return r
}

// rawUDP sends udpSize datagrams as fast as it can for d at a receiver with a 4 MiB buffer
// and returns the datagrams received per second of sending, and the CPU seconds (sender and
// receiver) per GB received.
func rawUDP(d time.Duration) (rate, cpu float64, err error) {
	rc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, 0, err
	}
	defer rc.Close()
	_ = rc.SetReadBuffer(4 << 20)
	sc, err := net.DialUDP("udp", nil, rc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		return 0, 0, err
	}
	defer sc.Close()
	span := startCPU()
	start := time.Now()
	end := start.Add(d)
	_ = rc.SetReadDeadline(end.Add(ioSlack))
	got := make(chan int64, 1)
	go func() {
		buf := make([]byte, 2048)
		var n int64
		for {
			if _, err := rc.Read(buf); err != nil {
				got <- n
				return
			}
			n++
		}
	}()
	buf := pattern(udpSize)
	for time.Now().Before(end) {
		_, _ = sc.Write(buf) // a full receive queue drops, as for the agent; errors are not counted
	}
	sending := time.Since(start)
	_ = rc.SetReadDeadline(time.Now().Add(100 * time.Millisecond)) // drain what is queued
	n := <-got
	return float64(n) / sending.Seconds(), cpuPerGB(span.elapsed(), n*udpSize), nil
}
