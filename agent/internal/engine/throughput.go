package engine

// Throughput (MeasureService): the agent opens N connections (TCP) or sockets (UDP) to a
// discard or a source and moves bytes socket to socket, so gRPC is never in the measured path.
//
// One worker goroutine per stream moves the bytes and only touches atomic counters; the RPC's
// goroutine reads them every report_interval and streams an interval report, so a slow client
// never slows the test. Every socket's deadline is the test's end; cancelling the RPC moves it
// into the past, which wakes every worker at once.
//
// TCP connections are closed with a reset (SO_LINGER 0), so a test leaves no TIME_WAIT behind;
// a sender first waits (Linux: TCP_INFO, at most tputDrainWait) until the peer acknowledged
// every byte written, so what the summary counts is what the discard got. UDP speaks the
// datagram format of package wire: Data datagrams with a per-stream test id and sequence
// numbers; a sender asks the discard for a Report at the end, a receiver asks the source with
// SourceStart (repeated every wire.KeepAlive) and ends it with SourceStop and a ReportRequest:
// the source's Report of what it sent makes the loss, lost tail included.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/wire"
	"github.com/sockagent/sockagent/agent/policy"
)

// Throughput's defaults and limits (see ThroughputRequest).
const (
	tputDefaultDuration = 10 * time.Second
	tputMaxDuration     = time.Hour
	tputMaxStreams      = 128
	tputDefaultTCPSize  = 128 << 10
	tputMaxTCPSize      = 4 << 20
	tputDefaultUDPSize  = 1400
	tputMaxUDPSize      = 65000
	tputDefaultUDPRate  = 1_000_000_000
	tputMinInterval     = 10 * time.Millisecond
	tputMaxBuffers      = 64 << 20 // size × streams: the memory a test's buffers may take

	tputDrainWait   = 2 * time.Second        // a TCP sender waits at most this for its last bytes' ACK
	tputReportTries = 5                      // UDP send: ReportRequests sent at the end
	tputReportWait  = 200 * time.Millisecond // ... and how long each waits for the Report
	tputStopRepeats = 3                      // UDP receive: SourceStops sent at the end
	tputUDPBuffer   = 4 << 20                // SO_RCVBUF asked for UDP sockets (the kernel may cap it)
	tputPacingSlack = time.Millisecond       // a paced sender sleeps only when this far ahead
	tputStopPoll    = 100 * time.Millisecond // how often a test checks whether the agent stops
)

// tputParams is a validated ThroughputRequest, defaults applied.
type tputParams struct {
	network, address string
	local            string // host:port to bind, "" for the OS's choice
	udp, receive     bool
	duration         time.Duration // the test's length (tputMaxDuration when only bytes ends it)
	bytes            uint64        // 0: no byte limit
	streams          int
	rate             uint64 // bits/s, all streams together; 0: no cap (TCP only)
	size             int
	interval         time.Duration
}

// ThroughputSpec is a Throughput request in the engine's terms; zero fields take the defaults.
type ThroughputSpec struct {
	Network, Address  string
	Local             string // host or host:port to bind; "" for the OS's choice
	Receive           bool   // receive from a source, instead of sending to a discard
	Duration          time.Duration
	Bytes             uint64
	Streams           uint32
	RateBitsPerSecond uint64
	Size              uint32
	ReportInterval    time.Duration
}

// tputParamsOf checks a request field by field and applies the defaults.
func tputParamsOf(r ThroughputSpec) (tputParams, error) {
	const op = "throughput"
	p := tputParams{network: r.Network, address: r.Address, bytes: r.Bytes, rate: r.RateBitsPerSecond, receive: r.Receive}
	if err := checkNetwork(contract.OpThroughput, p.network); err != nil {
		return p, err
	}
	if err := checkAddress(op, p.network, p.address); err != nil {
		return p, err
	}
	p.udp = strings.HasPrefix(p.network, "udp")
	var err error
	if p.duration, err = tputDurationOf("duration", r.Duration, time.Millisecond, tputMaxDuration, "10s, or until bytes"); err != nil {
		return p, err
	}
	if p.duration == 0 {
		p.duration = tputDefaultDuration
		if p.bytes > 0 {
			p.duration = tputMaxDuration
		}
	}
	if p.interval, err = tputDurationOf("report_interval", r.ReportInterval, tputMinInterval, tputMaxDuration, "1s"); err != nil {
		return p, err
	}
	if p.interval == 0 {
		p.interval = time.Second
	}
	p.streams = int(r.Streams)
	switch {
	case p.streams == 0:
		p.streams = 1
	case p.streams > tputMaxStreams:
		return p, badArg(contract.ReasonInvalidArgument, "%s: streams %d out of range; give 0 (1 stream) up to %d", op, p.streams, tputMaxStreams)
	}
	size := int64(r.Size)
	switch {
	case p.udp && size == 0:
		p.size = tputDefaultUDPSize
	case p.udp && (size < wire.HeaderSize || size > tputMaxUDPSize):
		return p, badArg(contract.ReasonInvalidArgument, "%s: size %d out of range for %s; give 0 (%d bytes) or %d to %d bytes per datagram (each carries a %d-byte header)",
			op, size, p.network, tputDefaultUDPSize, wire.HeaderSize, tputMaxUDPSize, wire.HeaderSize)
	case size == 0:
		p.size = tputDefaultTCPSize
	case size > tputMaxTCPSize:
		return p, badArg(contract.ReasonInvalidArgument, "%s: size %d out of range for %s; give 0 (%d bytes) up to %d bytes per write", op, size, p.network, tputDefaultTCPSize, tputMaxTCPSize)
	default:
		p.size = int(size)
	}
	if b := int64(p.size) * int64(p.streams); b > tputMaxBuffers {
		return p, badArg(contract.ReasonInvalidArgument, "%s: size %d × streams %d needs %d bytes of buffers, over the agent's %d; use fewer streams or a smaller size", op, p.size, p.streams, b, tputMaxBuffers)
	}
	if p.udp && p.rate == 0 {
		p.rate = tputDefaultUDPRate
	}
	if l := r.Local; l != "" {
		host, port, err := net.SplitHostPort(l)
		if err != nil {
			host, port = l, "0"
			if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
				host = l[1 : len(l)-1]
			}
		}
		if port != "0" && p.streams > 1 {
			return p, badArg(contract.ReasonInvalidAddress, "%s: local_address %q names port %s, but %d streams cannot share one port; give just the host, or host:0", op, l, port, p.streams)
		}
		p.local = net.JoinHostPort(host, port)
	}
	return p, nil
}

func tputDurationOf(field string, v, lo, hi time.Duration, zero string) (time.Duration, error) {
	if v != 0 && (v < lo || v > hi) {
		return 0, badArg(contract.ReasonInvalidArgument, "throughput: %s %s out of range; give 0 (%s) or %s to %s", field, v, zero, lo, hi)
	}
	return v, nil
}

// ThroughputInterval is one interval report of a test.
type ThroughputInterval struct {
	Start, End                          time.Duration // from the test's start
	Bytes, Datagrams, Lost, Retransmits uint64
	RTT                                 time.Duration
}

// ThroughputSummary is the report of a whole test.
type ThroughputSummary struct {
	Duration           time.Duration
	Bytes, Retransmits uint64
	RTT                time.Duration
	Sent, Received     uint64 // datagrams (UDP)
	Loss               float64
	Streams            int
	Remote             string
	Errors             []ErrorCount
}

// BitsPerSecond is the rate of bytes moved in d.
func BitsPerSecond(bytes uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) * 8 / d.Seconds()
}

// addError counts a stream's error under its reason.
func (r *tputRun) addError(err error) {
	r.errs.add(Reason(err), err.Error())
}

// tputStream is one connection or socket of a test.
type tputStream struct {
	conn      net.Conn
	test      uint64                                // UDP: the stream's test id
	share     uint64                                // UDP receive: bytes asked of the source (0: no limit)
	datagrams atomic.Uint64                         // UDP: Data datagrams sent or received
	next      atomic.Uint64                         // UDP receive: highest sequence number seen + 1
	reported  atomic.Int64                          // UDP: datagrams the discard received / the source sent, by its Report; -1 before
	cookie    atomic.Pointer[[wire.CookieSize]byte] // UDP: the source's or discard's cookie, once it sent one
	ended     atomic.Int64                          // UnixNano when the stream stopped moving bytes
	err       error                                 // why the stream ended early; set by its worker (counted in the test's errors)
}

// tputRun is one running test.
type tputRun struct {
	p          tputParams
	streams    []*tputStream
	errs       errorTally
	start, end time.Time
	moved      atomic.Uint64 // payload bytes moved, all streams
	dgrams     atomic.Uint64 // datagrams moved, all streams
	claimed    atomic.Uint64 // under a byte limit: bytes (TCP) or datagrams (UDP send) taken by workers
	moving     atomic.Int64  // workers still moving bytes
	dataDone   chan struct{} // closed when no worker moves bytes any more
	stop       chan struct{} // closed by stopAll
	stopOnce   sync.Once
	aborted    atomic.Bool // cancelled: workers skip their ending exchanges
	wg         sync.WaitGroup
}

// stopAll ends every stream at once by moving its deadlines into the past.
func (r *tputRun) stopAll() {
	r.stopOnce.Do(func() {
		close(r.stop)
		past := time.Unix(farPastUnix, 0)
		for _, s := range r.streams {
			_ = s.conn.SetDeadline(past)
		}
	})
}

// abort stops the test for good (RPC cancelled, agent stopping).
func (r *tputRun) abort() {
	r.aborted.Store(true)
	r.stopAll()
}

func (r *tputRun) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// setDeadline sets a stream's deadline for its ending exchange (UDP report), unless the test
// was aborted: checking after setting means an abort racing with it always wins.
func (r *tputRun) setDeadline(s *tputStream, d time.Time) bool {
	_ = s.conn.SetDeadline(d)
	return !r.aborted.Load()
}

// dataEnded marks the end of a worker's data phase.
func (r *tputRun) dataEnded(s *tputStream) {
	s.ended.Store(time.Now().UnixNano())
	if r.moving.Add(-1) == 0 {
		close(r.dataDone)
	}
}

// failed records a stream's fatal error, unless it is the test's own end (the deadline, or
// stopAll).
func (r *tputRun) failed(s *tputStream, err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) || r.stopped() {
		return
	}
	r.fail(s, err)
}

// fail records a stream's fatal error.
func (r *tputRun) fail(s *tputStream, err error) {
	s.err = &OpError{Op: "throughput", Network: r.p.network, Address: r.p.address, Err: err}
	r.addError(s.err)
}

// pauser sleeps a paced or waiting worker.
type pauser struct {
	r     *tputRun
	timer *time.Timer
}

// sleep waits d; false when the test was stopped meanwhile.
func (pz *pauser) sleep(d time.Duration) bool {
	if pz.timer == nil {
		pz.timer = time.NewTimer(d)
	} else {
		pz.timer.Reset(d)
	}
	select {
	case <-pz.timer.C:
		return true
	case <-pz.r.stop:
		pz.timer.Stop()
		return false
	}
}

// until waits until t (at most the test's end); false when the test is over.
func (pz *pauser) until(t time.Time) bool {
	if t.After(pz.r.end) {
		t = pz.r.end
	}
	return pz.sleep(time.Until(t)) && time.Now().Before(pz.r.end)
}

func (pz *pauser) close() {
	if pz.timer != nil {
		pz.timer.Stop()
	}
}

// due is when a paced stream may start moving byte (or datagram) number n: n units at rate
// units per second from the test's start.
func (r *tputRun) due(n uint64, perSecond float64) time.Time {
	return r.start.Add(time.Duration(float64(n) / perSecond * float64(time.Second)))
}

// Throughput runs one test for ctx's caller: the request's checks, policy and limits as for
// Dial, N dials, the workers, and an interval report (through report, on this goroutine) every
// report interval.
func (t *Table) Throughput(ctx context.Context, spec ThroughputSpec, report func(ThroughputInterval) error) (ThroughputSummary, error) {
	p, err := tputParamsOf(spec)
	if err != nil {
		return ThroughputSummary{}, err
	}
	wrap := func(err error) error {
		return &OpError{Op: "throughput", Network: p.network, Address: p.address, Err: err}
	}
	c, set := t.who(ctx)
	if err := set.CheckNetwork(p.network); err != nil {
		return ThroughputSummary{}, wrap(err)
	}
	sess, err := t.sessionOfCall(ctx)
	if err != nil {
		return ThroughputSummary{}, wrap(err)
	}
	d, err := dialer(set, p.network, p.local, t.defaultTimeout)
	if err != nil {
		return ThroughputSummary{}, wrap(err)
	}
	adm, err := t.admit(c.ID, sess, set, claim{blocking: true, sockets: p.streams})
	if err != nil {
		return ThroughputSummary{}, wrap(err)
	}
	defer adm.release()

	r := &tputRun{p: p, dataDone: make(chan struct{}), stop: make(chan struct{})}
	if err := r.dial(ctx, d, set); err != nil {
		return ThroughputSummary{}, wrap(err)
	}
	defer r.closeAll()
	sum, err := r.run(ctx, t, report)
	var oe *OpError
	if err != nil && !errors.As(err, &oe) {
		err = wrap(err)
	}
	return sum, err
}

// dial opens the streams at once; the test runs with those that connected. Only when none
// did does the test fail, with the first stream's error.
func (r *tputRun) dial(ctx context.Context, d net.Dialer, set *policy.RuleSet) error {
	conns := make([]net.Conn, r.p.streams)
	errs := make([]error, r.p.streams)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			c, err := d.DialContext(ctx, r.p.network, r.p.address)
			if err != nil {
				errs[i] = err
				return
			}
			tputSetup(c)
			if d.LocalAddr != nil {
				if err := checkBound(set, c.LocalAddr()); err != nil {
					_ = c.Close()
					errs[i] = err
					return
				}
			}
			conns[i] = c
		})
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			s := &tputStream{conn: c, test: rand.Uint64()}
			s.reported.Store(-1)
			r.streams = append(r.streams, s)
		}
	}
	if len(r.streams) == 0 {
		return errs[0]
	}
	for _, err := range errs {
		if err != nil {
			r.addError(&OpError{Op: "throughput", Network: r.p.network, Address: r.p.address, Err: err})
		}
	}
	if r.p.udp && r.p.receive && r.p.bytes > 0 { // the byte limit, shared out among the streams
		n := uint64(len(r.streams))
		for i, s := range r.streams {
			s.share = r.p.bytes / n
			if uint64(i) < r.p.bytes%n {
				s.share++
			}
		}
	}
	return nil
}

// tputSetup makes a new connection ready: TCP closes with a reset, UDP gets large buffers.
func tputSetup(c net.Conn) {
	switch c := c.(type) {
	case *net.TCPConn:
		_ = c.SetLinger(0)
	case *net.UDPConn:
		_ = c.SetReadBuffer(tputUDPBuffer)
		_ = c.SetWriteBuffer(tputUDPBuffer)
	}
}

// closeAll closes every stream (TCP with a reset, see tputSetup); a UDP receiver first
// tells the source to stop.
func (r *tputRun) closeAll() {
	if r.p.udp && r.p.receive {
		r.stopSources()
	}
	for _, s := range r.streams {
		_ = s.conn.Close()
	}
}

// tputSnap is the test's counters at one moment.
type tputSnap struct {
	at                              time.Time
	bytes, datagrams, lost, retrans uint64
	rtt                             time.Duration
}

func (r *tputRun) snap(at time.Time) tputSnap {
	sn := tputSnap{at: at, bytes: r.moved.Load(), datagrams: r.dgrams.Load()}
	var rtts, n int64
	for _, s := range r.streams {
		if r.p.udp {
			if nx, got := s.next.Load(), s.datagrams.Load(); r.p.receive && nx > got {
				sn.lost += nx - got
			}
			continue
		}
		if st, ok := readTCPInfo(s.conn); ok {
			sn.retrans += st.retrans
			rtts += int64(st.rtt)
			n++
		}
	}
	if n > 0 {
		sn.rtt = time.Duration(rtts / n)
	}
	return sn
}

func (r *tputRun) interval(prev, cur tputSnap) ThroughputInterval {
	iv := ThroughputInterval{Start: prev.at.Sub(r.start), End: cur.at.Sub(r.start), RTT: cur.rtt,
		Bytes: cur.bytes - prev.bytes, Datagrams: cur.datagrams - prev.datagrams}
	if cur.lost > prev.lost {
		iv.Lost = cur.lost - prev.lost
	}
	if cur.retrans > prev.retrans {
		iv.Retransmits = cur.retrans - prev.retrans
	}
	return iv
}

// run starts the workers and reports until they end.
func (r *tputRun) run(ctx context.Context, t *Table, report func(ThroughputInterval) error) (ThroughputSummary, error) {
	p := r.p
	base := r.snap(time.Now()) // TCP_INFO counts from the handshake; the test counts from here
	r.start = time.Now()
	r.end = r.start.Add(p.duration)
	for _, s := range r.streams {
		_ = s.conn.SetDeadline(r.end)
	}
	stopWatch := context.AfterFunc(ctx, r.abort)
	defer stopWatch()
	r.moving.Store(int64(len(r.streams)))
	var sendBuf []byte
	if !p.udp && !p.receive {
		sendBuf = make([]byte, p.size) // read only: every TCP sender writes from it
	}
	for _, s := range r.streams {
		r.wg.Go(func() {
			switch {
			case p.udp && p.receive:
				r.udpReceive(s)
			case p.udp:
				r.udpSend(s)
			case p.receive:
				r.tcpReceive(s)
			default:
				r.tcpSend(s, sendBuf)
			}
		})
	}
	allDone := make(chan struct{})
	kaDone := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(allDone)
	}()
	if p.udp && p.receive {
		go r.keepAlive(allDone, kaDone)
	} else {
		close(kaDone)
	}
	finish := func() {
		r.abort()
		<-allDone
		<-kaDone
	}

	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	poll := time.NewTicker(tputStopPoll)
	defer poll.Stop()
	prev := base
	prev.at = r.start
	data, all, tickC := r.dataDone, allDone, tick.C
	for data != nil || all != nil {
		select {
		case <-data: // the last interval: from the previous report to the end of the data
			data, tickC = nil, nil
			var ended int64
			for _, s := range r.streams {
				ended = max(ended, s.ended.Load())
			}
			cur := r.snap(time.Unix(0, ended))
			if cur.at.Before(prev.at) {
				cur.at = prev.at
			}
			if iv := r.interval(prev, cur); iv.Bytes > 0 || iv.Datagrams > 0 || iv.Lost > 0 || iv.End-iv.Start >= p.interval/4 {
				if err := report(iv); err != nil {
					finish()
					return ThroughputSummary{}, err
				}
			} else {
				cur.at = prev.at // a sliver with nothing moved: the test ended at the last report
			}
			prev = cur
		case <-all:
			all = nil
		case now := <-tickC:
			cur := r.snap(now)
			if err := report(r.interval(prev, cur)); err != nil {
				finish()
				return ThroughputSummary{}, err
			}
			prev = cur
		case <-poll.C:
			if t.isStopped() {
				finish()
				return ThroughputSummary{}, ErrAgentStopping
			}
		case <-ctx.Done():
			finish()
			return ThroughputSummary{}, ctx.Err()
		}
	}
	<-kaDone
	if ctx.Err() != nil {
		return ThroughputSummary{}, ctx.Err()
	}
	if err := r.noStart(); err != nil {
		return ThroughputSummary{}, err
	}
	return r.summary(base, prev), nil
}

// noStart returns the first stream's error when no UDP stream got going: each ended on an
// error and its peer never answered (no Report from the discard, no Data from the source).
// A TCP test fails only when no stream could connect (dial).
func (r *tputRun) noStart() error {
	if !r.p.udp {
		return nil
	}
	for _, s := range r.streams {
		if s.err == nil || s.reported.Load() >= 0 || (r.p.receive && s.datagrams.Load() > 0) {
			return nil
		}
	}
	return r.streams[0].err
}

// summary sums the test up once every worker ended; last is the snapshot at the data's end.
func (r *tputRun) summary(base, last tputSnap) ThroughputSummary {
	s := ThroughputSummary{
		Duration: last.at.Sub(r.start), Bytes: r.moved.Load(), RTT: last.rtt,
		Streams: len(r.streams), Remote: addrString(r.streams[0].conn.RemoteAddr()),
	}
	if last.retrans > base.retrans {
		s.Retransmits = last.retrans - base.retrans
	}
	if r.p.udp {
		if r.p.receive {
			s.Received = r.dgrams.Load()
			for _, st := range r.streams { // the source's count when it reported, else the gaps
				s.Sent += max(st.next.Load(), st.datagrams.Load(), uint64(max(st.reported.Load(), 0)))
			}
		} else {
			s.Sent = r.dgrams.Load()
			for _, st := range r.streams {
				if n := st.reported.Load(); n > 0 {
					s.Received += uint64(n)
				}
			}
		}
		if s.Sent > 0 && s.Received < s.Sent {
			s.Loss = float64(s.Sent-s.Received) / float64(s.Sent)
		}
	}
	s.Errors = r.errs.list()
	return s
}

// tcpSend writes buf as fast as it can (or paced to the rate) until the test's end or its
// byte limit, then waits for the peer to acknowledge every byte.
func (r *tputRun) tcpSend(s *tputStream, buf []byte) {
	pz := pauser{r: r}
	defer pz.close()
	perSecond := float64(r.p.rate) / 8 / float64(len(r.streams)) // bytes per second per stream
	var sent uint64
	for {
		n := uint64(len(buf))
		if lim := r.p.bytes; lim > 0 {
			prev := r.claimed.Add(n) - n
			if prev >= lim {
				break
			}
			n = min(n, lim-prev)
		}
		if r.p.rate > 0 {
			if due := r.due(sent, perSecond); time.Until(due) > tputPacingSlack && !pz.until(due) {
				break
			}
		}
		k, err := s.conn.Write(buf[:n])
		sent += uint64(k)
		r.moved.Add(uint64(k))
		if err != nil {
			r.failed(s, err)
			break
		}
	}
	r.dataEnded(s)
	if s.err != nil {
		return
	}
	// Wait for the ACK of the last byte, so the reset at the end drops nothing the test counted.
	limit := time.Now().Add(tputDrainWait)
	for !r.aborted.Load() && time.Now().Before(limit) {
		st, ok := readTCPInfo(s.conn)
		if !ok || !st.unsent {
			return
		}
		if !pz.sleep(time.Millisecond) {
			return
		}
	}
}

// tcpReceive reads until the test's end, the source closing, or the byte limit.
func (r *tputRun) tcpReceive(s *tputStream) {
	defer r.dataEnded(s)
	buf := make([]byte, r.p.size)
	lim := r.p.bytes
	for {
		n := uint64(len(buf))
		if lim > 0 {
			// Each read reserves what it may read of the limit, so streams reading at once
			// never take more than the limit together.
			if n = r.claimRead(n, lim); n == 0 {
				return // the rest is reserved by other streams' reads, which end the test
			}
		}
		k, err := s.conn.Read(buf[:n])
		if lim > 0 && uint64(k) < n {
			r.claimed.Add(^(n - uint64(k) - 1)) // give back what the read did not use
		}
		if k > 0 {
			if m := r.moved.Add(uint64(k)); lim > 0 && m >= lim {
				r.stopAll()
				return
			}
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			r.failed(s, err)
			return
		}
	}
}

// claimRead reserves up to n of the receive limit's lim bytes that no read has reserved yet;
// 0 when none are left.
func (r *tputRun) claimRead(n, lim uint64) uint64 {
	for {
		c := r.claimed.Load()
		if c >= lim {
			return 0
		}
		take := min(n, lim-c)
		if r.claimed.CompareAndSwap(c, c+take) {
			return take
		}
	}
}

// udpSend sends Data datagrams paced to the stream's share of the rate, in bursts, until the
// test's end or the byte limit; then asks the discard how many arrived.
func (r *tputRun) udpSend(s *tputStream) {
	pz := pauser{r: r}
	defer pz.close()
	buf := make([]byte, r.p.size)
	perSecond := float64(r.p.rate) / 8 / float64(r.p.size) / float64(len(r.streams)) // datagrams
	var maxDgrams uint64
	if r.p.bytes > 0 {
		maxDgrams = (r.p.bytes + uint64(r.p.size) - 1) / uint64(r.p.size)
	}
	var seq uint64
	for {
		if maxDgrams > 0 && r.claimed.Add(1) > maxDgrams {
			break
		}
		if due := r.due(seq, perSecond); time.Until(due) > tputPacingSlack && !pz.until(due) {
			break
		}
		wire.PutHeader(buf, wire.Header{Type: wire.Data, Test: s.test, Seq: seq})
		if _, err := s.conn.Write(buf); err != nil {
			r.failed(s, err)
			break
		}
		seq++
		s.datagrams.Store(seq)
		r.dgrams.Add(1)
		r.moved.Add(uint64(len(buf)))
	}
	r.dataEnded(s)
	if seq > 0 {
		r.askReport(s)
	}
}

// askReport asks the discard how many of the stream's datagrams it received, a few times.
func (r *tputRun) askReport(s *tputStream) {
	buf := make([]byte, 2*wire.ReportSize)
	var err error
	for range tputReportTries {
		if !r.setDeadline(s, time.Now().Add(tputReportWait)) {
			return
		}
		if _, err = s.conn.Write(wire.AppendReportRequest(nil, s.test, s.cookie.Load())); err != nil {
			break
		}
		for {
			var n int
			n, err = s.conn.Read(buf)
			if err != nil {
				break
			}
			h, body, perr := wire.ParseHeader(buf[:n])
			if perr != nil || h.Test != s.test {
				continue
			}
			if h.Type == wire.Cookie { // the discard reports only to an address that proved it receives
				if c, cerr := wire.ParseCookie(body); cerr == nil && (s.cookie.Load() == nil || *s.cookie.Load() != c) {
					s.cookie.Store(&c)
					if _, err = s.conn.Write(wire.AppendReportRequest(nil, s.test, &c)); err != nil {
						break
					}
				}
				continue
			}
			if h.Type != wire.Report {
				continue
			}
			if rep, perr := wire.ParseReport(body); perr == nil {
				s.reported.Store(int64(rep.Datagrams))
				return
			}
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
	}
	if r.aborted.Load() {
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("no report from the discard after %d requests in %s; is %s a sockagent discard (SocketService.Serve)? (%w)",
			tputReportTries, tputReportTries*tputReportWait, r.p.address, os.ErrDeadlineExceeded)
	}
	r.addError(&OpError{Op: "throughput", Network: r.p.network, Address: r.p.address, Err: err})
}

// udpReceive asks the source for datagrams and counts them, and the gaps in their sequence
// numbers, until the test's end, the stream's share of the byte limit, or silence.
func (r *tputRun) udpReceive(s *tputStream) {
	buf := make([]byte, r.p.size)
	if got := r.udpReceiveData(s, buf); got > 0 && !r.aborted.Load() {
		r.sourceReport(s, buf)
	}
}

// udpReceiveData is udpReceive's data phase; it returns the datagrams received.
func (r *tputRun) udpReceiveData(s *tputStream, buf []byte) (got uint64) {
	defer r.dataEnded(s)
	if _, err := s.conn.Write(r.startDatagram(s)); err != nil {
		r.failed(s, err)
		return
	}
	// Silence ends a stream: before the first datagram, after three SourceStarts; after it,
	// once the source stopped (its byte limit, or it went away).
	perDgram := time.Duration(float64(r.p.size) * 8 * float64(len(r.streams)) / float64(r.p.rate) * float64(time.Second))
	firstWait, idle := 3*wire.KeepAlive+wire.KeepAlive/2, max(2*wire.KeepAlive, 4*perDgram)
	refresh := func(wait time.Duration) bool {
		d := time.Now().Add(wait)
		if d.After(r.end) {
			d = r.end
		}
		return r.setDeadline(s, d) && !r.stopped()
	}
	if !refresh(firstWait) {
		return 0
	}
	var (
		bytes   uint64
		lastSet = time.Now()
	)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && got == 0 && !r.stopped() {
				r.fail(s, fmt.Errorf("no data from the source in %s; is %s a sockagent source (SocketService.Serve)? (%w)",
					time.Since(r.start).Round(time.Millisecond), r.p.address, os.ErrDeadlineExceeded))
				return got
			}
			r.failed(s, err)
			return got
		}
		h, body, perr := wire.ParseHeader(buf[:n])
		if perr != nil || h.Test != s.test {
			continue
		}
		if h.Type == wire.Cookie { // the source wants its cookie back before it sends
			if c, cerr := wire.ParseCookie(body); cerr == nil && (s.cookie.Load() == nil || *s.cookie.Load() != c) {
				s.cookie.Store(&c)
				if _, err := s.conn.Write(r.startDatagram(s)); err != nil {
					r.failed(s, err)
					return got
				}
			}
			continue
		}
		if h.Type != wire.Data {
			continue
		}
		got++
		bytes += uint64(n)
		s.datagrams.Store(got)
		if h.Seq >= s.next.Load() {
			s.next.Store(h.Seq + 1)
		}
		r.dgrams.Add(1)
		r.moved.Add(uint64(n))
		if s.share > 0 && (bytes >= s.share || (h.Seq+1)*uint64(r.p.size) >= s.share) {
			return got
		}
		if now := time.Now(); now.Sub(lastSet) > idle/4 {
			lastSet = now
			if !refresh(idle) {
				return got
			}
		}
	}
}

// sourceReport ends a receive stream's test with the source: SourceStop, then ReportRequest,
// a few times, until the source's Report of the datagrams it sent arrives. Data of the test
// still arriving meanwhile left the source after the test's end here: it is taken off the
// source's count, as it is not in what the test received. Loss is then what the source sent
// and this did not receive, the tail included; without a Report it stays the gaps in the
// sequence numbers.
func (r *tputRun) sourceReport(s *tputStream, buf []byte) {
	stop := wire.AppendControl(nil, wire.SourceStop, s.test)
	var late int64
	for range tputReportTries {
		if !r.setDeadline(s, time.Now().Add(tputReportWait)) {
			return
		}
		if _, err := s.conn.Write(stop); err != nil {
			return
		}
		if _, err := s.conn.Write(wire.AppendReportRequest(nil, s.test, s.cookie.Load())); err != nil {
			return
		}
		for {
			n, err := s.conn.Read(buf)
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					return
				}
				break
			}
			h, body, perr := wire.ParseHeader(buf[:n])
			if perr != nil || h.Test != s.test {
				continue
			}
			switch h.Type {
			case wire.Data:
				late++
			case wire.Cookie:
				if c, cerr := wire.ParseCookie(body); cerr == nil && (s.cookie.Load() == nil || *s.cookie.Load() != c) {
					s.cookie.Store(&c)
					if _, err := s.conn.Write(wire.AppendReportRequest(nil, s.test, &c)); err != nil {
						return
					}
				}
			case wire.Report:
				if rep, perr := wire.ParseReport(body); perr == nil {
					s.reported.Store(max(int64(rep.Datagrams)-late, 0))
					return
				}
			}
		}
	}
}

func (r *tputRun) startDatagram(s *tputStream) []byte {
	st := wire.StartBody{
		RateBitsPerSecond: r.p.rate / uint64(len(r.streams)), Size: uint32(r.p.size),
		Duration: r.p.duration, Bytes: s.share,
	}
	if c := s.cookie.Load(); c != nil {
		st.Cookie = c[:]
	}
	return wire.AppendStart(nil, s.test, st)
}

// keepAlive repeats every stream's SourceStart every wire.KeepAlive until the workers end.
func (r *tputRun) keepAlive(allDone <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tk := time.NewTicker(wire.KeepAlive)
	defer tk.Stop()
	for {
		select {
		case <-tk.C:
			for _, s := range r.streams {
				_, _ = s.conn.Write(r.startDatagram(s)) // a failure shows in the worker's reads
			}
		case <-allDone:
			return
		case <-r.stop:
			return
		}
	}
}

// stopSources tells the source to stop every stream (a few times: datagrams get lost).
func (r *tputRun) stopSources() {
	for _, s := range r.streams {
		_ = s.conn.SetWriteDeadline(time.Now().Add(tputReportWait))
		stop := wire.AppendControl(nil, wire.SourceStop, s.test)
		for range tputStopRepeats {
			_, _ = s.conn.Write(stop) // best effort: the source also stops once KeepAlives stop
		}
	}
}
