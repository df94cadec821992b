package bench

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// The proxy rows: the agent's impairment proxy (serve behaviour proxy) beside raw Go TCP and
// toxiproxy, and the accuracy of its latency and bandwidth toxics.
const (
	// benchLatency is the latency toxic the latency rows measure.
	benchLatency = 20 * time.Millisecond
	// benchRate is the bandwidth toxic the bandwidth row measures: 100 Mbit/s.
	benchRate = 12_500_000 // bytes per second
)

// toxiproxyOnce starts toxiproxy for the first row that needs it; the later ones share it
// (or its error). env.close stops it.
func (e *env) toxiproxyOnce(ctx context.Context) (*toxiproxy, error) {
	if e.toxiStarted {
		return e.toxi, e.toxiErr
	}
	e.toxiStarted = true
	bin, err := toxiproxyBinary(ctx, ".", func(f string, a ...any) { e.progress(f, a...) })
	if err == nil {
		e.toxi, err = startToxiproxy(ctx, bin)
	}
	e.toxiErr = err
	return e.toxi, err
}

// serveProxy listens on the agent at 127.0.0.1:0 and serves a proxy to upstream with
// toxics; the function closes it.
func (e *env) serveProxy(ctx context.Context, upstream string, toxics ...*sockagentv1.Toxic) (string, func(), error) {
	l, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		return "", nil, rpcErr("Listen", err)
	}
	id := l.GetSocket().GetSocketId()
	if _, err := e.sc.Serve(ctx, &sockagentv1.ServeRequest{SocketId: id, Behaviour: sockagentv1.Behaviour_BEHAVIOUR_PROXY,
		Upstream: upstream, Toxics: toxics}); err != nil {
		e.closeSocket(id)
		return "", nil, rpcErr("Serve", err)
	}
	return l.GetSocket().GetLocalAddress(), func() { e.closeSocket(id) }, nil
}

// proxyRow: raw Go TCP single stream, then the same stream through the agent's proxy with
// no toxics.
func proxyRow(ctx context.Context, e *env) result {
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{err: err, baseErr: err}
	}
	defer peer.Close()
	var r result
	r.base, _, r.baseErr = rawTCP(peer, e.cfg.Seconds)
	r.value, r.err = e.throughProxy(ctx, peer, nil, 0)
	return r
}

// throughProxy streams through an agent proxy to peer (see streamThrough).
func (e *env) throughProxy(ctx context.Context, peer net.Listener, toxics []*sockagentv1.Toxic, total int64) (float64, error) {
	addr, closeFn, err := e.serveProxy(ctx, peer.Addr().String(), toxics...)
	if err != nil {
		return 0, err
	}
	defer closeFn()
	return streamThrough(addr, peer, e.cfg.Seconds, total)
}

// throughToxiproxy streams through a toxiproxy proxy to peer (see streamThrough).
func (e *env) throughToxiproxy(ctx context.Context, peer net.Listener, name string, toxics []toxiToxic, total int64) (float64, error) {
	tp, err := e.toxiproxyOnce(ctx)
	if err != nil {
		return 0, err
	}
	addr, remove, err := tp.proxy(ctx, name, peer.Addr().String(), toxics...)
	if err != nil {
		return 0, err
	}
	defer remove()
	return streamThrough(addr, peer, e.cfg.Seconds, total)
}

// proxyToxiproxyRow: a single stream through toxiproxy, then through the agent's proxy, no
// toxics on either.
func proxyToxiproxyRow(ctx context.Context, e *env) result {
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{err: err, baseErr: err}
	}
	defer peer.Close()
	var r result
	r.base, r.baseErr = e.throughToxiproxy(ctx, peer, "sockbench_plain", nil, 0)
	r.value, r.err = e.throughProxy(ctx, peer, nil, 0)
	return r
}

// proxyBandwidthRow: a 100 Mbit/s bandwidth toxic on the upstream direction; a Go client
// writes what the rate moves in Config.Seconds and the rate is what the reader saw, from the
// first write to its EOF. The baseline is the toxic's rate itself; toxiproxy's figure with
// its own 100 Mbit/s toxic goes in the note.
func proxyBandwidthRow(ctx context.Context, e *env) result {
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{err: err, baseErr: err}
	}
	defer peer.Close()
	total := int64(benchRate * e.cfg.Seconds.Seconds())
	r := result{base: benchRate * 8}
	tx := &sockagentv1.Toxic{Direction: sockagentv1.ToxicDirection_TOXIC_DIRECTION_UPSTREAM,
		Kind: &sockagentv1.Toxic_Bandwidth{Bandwidth: &sockagentv1.BandwidthToxic{BytesPerSecond: benchRate}}}
	r.value, r.err = e.throughProxy(ctx, peer, []*sockagentv1.Toxic{tx}, total)
	toxi := []toxiToxic{{Name: "bw", Type: "bandwidth", Stream: "upstream", Toxicity: 1, Attributes: map[string]any{"rate": benchRate / 1000}}}
	if v, err := e.throughToxiproxy(ctx, peer, "sockbench_bandwidth", toxi, total); err != nil {
		r.note = err.Error()
	} else {
		r.note = fmt.Sprintf("toxiproxy %.4gx", v/r.base)
	}
	return r
}

// latencyFigures are the probe figures of the latency rows, measured once for both.
type latencyFigures struct {
	ours, toxi [2]time.Duration // |p50 - expected|, |p99 - expected|
	toxiErr    error
	err        error
}

// proxyLatency measures, once per run, echo round trips through the agent's proxy and
// through toxiproxy, each without a toxic and with a 20 ms latency toxic on the downstream
// direction; the expected round trip is the one without the toxic plus 20 ms (p50 and p99
// each against their own).
func (e *env) proxyLatency(ctx context.Context) *latencyFigures {
	if e.lat != nil {
		return e.lat
	}
	e.lat = &latencyFigures{}
	count := uint32(e.iterations(200, 20))
	echo, closeEcho, err := e.serveSocket(ctx, "tcp", sockagentv1.Behaviour_BEHAVIOUR_ECHO)
	if err != nil {
		e.lat.err, e.lat.toxiErr = err, err
		return e.lat
	}
	defer closeEcho()
	tx := &sockagentv1.Toxic{Direction: sockagentv1.ToxicDirection_TOXIC_DIRECTION_DOWNSTREAM,
		Kind: &sockagentv1.Toxic_Latency{Latency: &sockagentv1.LatencyToxic{Latency: durationpb.New(benchLatency)}}}
	e.lat.ours, e.lat.err = latencyError(func(with bool) (string, func(), error) {
		if with {
			return e.serveProxy(ctx, echo, tx)
		}
		return e.serveProxy(ctx, echo)
	}, func(addr string) (*sockagentv1.ProbeResponse, error) { return e.echoProbe(ctx, addr, count) })
	tp, err := e.toxiproxyOnce(ctx)
	if err != nil {
		e.lat.toxiErr = err
		return e.lat
	}
	toxi := toxiToxic{Name: "lat", Type: "latency", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"latency": benchLatency.Milliseconds()}}
	e.lat.toxi, e.lat.toxiErr = latencyError(func(with bool) (string, func(), error) {
		if with {
			return tp.proxy(ctx, "sockbench_latency", echo, toxi)
		}
		return tp.proxy(ctx, "sockbench_nolatency", echo)
	}, func(addr string) (*sockagentv1.ProbeResponse, error) { return e.echoProbe(ctx, addr, count) })
	return e.lat
}

// latencyError probes a proxy made by open without and then with the latency toxic, and
// returns how far the p50 and p99 with it are from those without it plus benchLatency.
func latencyError(open func(with bool) (string, func(), error), probe func(addr string) (*sockagentv1.ProbeResponse, error)) ([2]time.Duration, error) {
	var rtt [2]*sockagentv1.LatencyStats
	for i, with := range []bool{false, true} {
		addr, closeFn, err := open(with)
		if err != nil {
			return [2]time.Duration{}, err
		}
		p, err := probe(addr)
		closeFn()
		if err != nil {
			return [2]time.Duration{}, err
		}
		rtt[i] = p.GetRtt()
	}
	abs := func(d time.Duration) time.Duration { return max(d, -d) }
	return [2]time.Duration{
		abs(rtt[1].GetP50().AsDuration() - rtt[0].GetP50().AsDuration() - benchLatency),
		abs(rtt[1].GetP99().AsDuration() - rtt[0].GetP99().AsDuration() - benchLatency),
	}, nil
}

// echoProbe runs count echo round trips of pingSize bytes against addr, all of which must
// succeed.
func (e *env) echoProbe(ctx context.Context, addr string, count uint32) (*sockagentv1.ProbeResponse, error) {
	p, err := e.mc.Probe(ctx, &sockagentv1.ProbeRequest{Network: "tcp", Address: addr, Mode: sockagentv1.ProbeMode_PROBE_MODE_ECHO,
		Count: count, Size: pingSize, Warmup: 5, Timeout: durationpb.New(2 * time.Second)})
	switch {
	case err != nil:
		return nil, rpcErr("Probe", err)
	case p.GetReceived() != count:
		return nil, fmt.Errorf("probe %s: %d of %d round trips succeeded; errors: %v", addr, p.GetReceived(), count, p.GetErrors())
	}
	return p, nil
}

// proxyLatencyRow and proxyLatency99Row: how far the p50 (p99) round trip through a 20 ms
// latency toxic is from the expected, ours beside toxiproxy's.
func proxyLatencyRow(ctx context.Context, e *env) result   { return e.latencyRow(ctx, 0) }
func proxyLatency99Row(ctx context.Context, e *env) result { return e.latencyRow(ctx, 1) }

func (e *env) latencyRow(ctx context.Context, i int) result {
	lf := e.proxyLatency(ctx)
	return result{value: lf.ours[i].Seconds(), err: lf.err, base: lf.toxi[i].Seconds(), baseErr: lf.toxiErr}
}

// streamThrough connects to addr, which forwards to peer, and writes chunkSize chunks for d
// (total > 0: exactly total bytes), then half-closes; the rate is the bytes peer's reader got
// over the time from the first write to its EOF.
func streamThrough(addr string, peer net.Listener, d time.Duration, total int64) (float64, error) {
	c, err := net.DialTimeout("tcp", addr, closeBudget)
	if err != nil {
		return 0, err
	}
	defer resetClose(c)
	s, err := acceptOne(peer)
	if err != nil {
		return 0, err
	}
	defer resetClose(s)
	start := time.Now()
	end := start.Add(d)
	limit := end.Add(ioSlack)
	if total > 0 { // the rate-limited row: its own time, at most thrice what it plans
		limit = start.Add(3*d + ioSlack)
	}
	_ = c.SetWriteDeadline(limit)
	_ = s.SetReadDeadline(limit)
	got := countReader(s)
	buf := pattern(chunkSize)
	var sent int64
	more := func() bool { return time.Now().Before(end) }
	if total > 0 {
		more = func() bool { return sent < total }
	}
	for more() {
		b := buf
		if total > 0 && total-sent < int64(len(b)) {
			b = b[:total-sent]
		}
		n, err := c.Write(b)
		sent += int64(n)
		if err != nil {
			return 0, fmt.Errorf("write to %s after %d bytes: %w", addr, sent, err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	res := <-got
	elapsed := time.Since(start)
	if res.err != nil || res.n != sent {
		return 0, fmt.Errorf("the reader behind %s got %d of %d bytes: %v", addr, res.n, sent, res.err)
	}
	return bitsPerSecond(res.n, elapsed), nil
}
