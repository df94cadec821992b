package engine

// MeasureService.Probe: TCP connect times and TCP/UDP echo round trips, timed on the agent's
// host around the socket operations only, so gRPC is never in the measured path.
//
// Every dial is judged by the caller's policy as Dial is (network, destination, local
// address). A probe counts as one blocking call of its caller and holds one socket slot while
// it runs. Failed attempts are counted by reason and never fail the call; the RPC deadline
// ends the probe a little before it expires, and the attempts done by then are returned.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/wire"
	"github.com/sockagent/sockagent/agent/policy"
)

// ProbeMode is what a probe times.
type ProbeMode int

// Probe modes (the values of sockagent.v1.ProbeMode; 0 picks by network).
const (
	ProbeAuto ProbeMode = iota // connect on TCP, echo on UDP
	ProbeConnect
	ProbeEcho
	ProbeTLS // connect and TLS handshake (tls.go)
)

func (m ProbeMode) String() string {
	switch m {
	case ProbeConnect:
		return "connect"
	case ProbeEcho:
		return "echo"
	case ProbeTLS:
		return "tls"
	}
	return "auto"
}

// Probe bounds and defaults.
const (
	defaultProbeCount   = 10
	maxProbeCount       = 1_000_000
	defaultProbeSize    = 64
	maxProbeSizeUDP     = 65000
	maxProbeSizeTCP     = 1 << 20
	defaultProbeTimeout = time.Second
	maxProbeWait        = time.Hour // bound of interval and timeout
	// bigEcho is the largest TCP echo request written before reading the response.
	bigEcho = 64 << 10
)

// ProbeSpec is a validated probe request.
type ProbeSpec struct {
	Network, Address, Local string
	Mode                    ProbeMode
	Count, Warmup, Size     int
	Interval, Timeout       time.Duration
	TLS                     *TLSClient // mode tls: the handshakes' client; nil = system roots
}

// ProbeResult is what a probe measured.
type ProbeResult struct {
	Remote, Local  string
	Sent, Received int
	Samples        []time.Duration // successful attempts, in order
	Errors         []ErrorCount
	Elapsed        time.Duration
}

// LatencyStats summarises samples; percentiles are nearest-rank.
type LatencyStats struct {
	Samples                       int
	Min, P50, P90, P99, Max, Mean time.Duration
}

// Stats computes the latency statistics of samples.
func Stats(samples []time.Duration) LatencyStats {
	st := LatencyStats{Samples: len(samples)}
	if len(samples) == 0 {
		return st
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	rank := func(p int) time.Duration { // nearest rank: the ceil(p/100*n)-th smallest
		r := (p*len(s) + 99) / 100
		return s[max(r, 1)-1]
	}
	st.Min, st.Max, st.Mean = s[0], s[len(s)-1], sum/time.Duration(len(s))
	st.P50, st.P90, st.P99 = rank(50), rank(90), rank(99)
	return st
}

// checkProbe validates a request and fills in the defaults.
func checkProbe(sp *ProbeSpec) error {
	if err := checkNetwork(contract.OpProbe, sp.Network); err != nil {
		return err
	}
	if err := checkAddress("probe: address", sp.Network, sp.Address); err != nil {
		return err
	}
	udp := strings.HasPrefix(sp.Network, "udp")
	if err := checkProbeMode(sp, udp); err != nil {
		return err
	}
	if sp.Count == 0 {
		sp.Count = defaultProbeCount
	}
	if sp.Count < 0 || sp.Count > maxProbeCount {
		return badArg(contract.ReasonInvalidArgument, "probe: count %d out of range; give 0 (%d) up to %d", sp.Count, defaultProbeCount, maxProbeCount)
	}
	if sp.Warmup < 0 || sp.Warmup > maxProbeCount {
		return badArg(contract.ReasonInvalidArgument, "probe: warmup %d out of range; give 0 up to %d", sp.Warmup, maxProbeCount)
	}
	if sp.Size == 0 {
		sp.Size = defaultProbeSize
	}
	switch {
	case udp && (sp.Size < wire.HeaderSize || sp.Size > maxProbeSizeUDP):
		return badArg(contract.ReasonInvalidArgument, "probe: size %d out of range for udp; give 0 (%d) or %d (the probe's header) up to %d", sp.Size, defaultProbeSize, wire.HeaderSize, maxProbeSizeUDP)
	case !udp && (sp.Size < 1 || sp.Size > maxProbeSizeTCP):
		return badArg(contract.ReasonInvalidArgument, "probe: size %d out of range for tcp; give 0 (%d) up to %d", sp.Size, defaultProbeSize, maxProbeSizeTCP)
	}
	if sp.Interval < 0 || sp.Interval > maxProbeWait {
		return badArg(contract.ReasonInvalidArgument, "probe: interval %s out of range; give 0 (back to back) up to %s", sp.Interval, maxProbeWait)
	}
	if sp.Timeout == 0 {
		sp.Timeout = defaultProbeTimeout
	}
	if sp.Timeout < 0 || sp.Timeout > maxProbeWait {
		return badArg(contract.ReasonInvalidArgument, "probe: timeout %s out of range; give 0 (%s) up to %s", sp.Timeout, defaultProbeTimeout, maxProbeWait)
	}
	if sp.Local != "" {
		if err := checkAddress("probe: local_address", sp.Network, sp.Local); err != nil {
			return err
		}
	}
	return nil
}

// checkProbeMode picks the mode for ProbeAuto and refuses a mode the network cannot have, or
// tls settings for a mode without a handshake.
func checkProbeMode(sp *ProbeSpec, udp bool) error {
	switch sp.Mode {
	case ProbeAuto:
		sp.Mode = ProbeConnect
		if udp {
			sp.Mode = ProbeEcho
		}
	case ProbeConnect:
		if udp {
			return badArg(contract.ReasonInvalidArgument, "probe: mode connect needs a tcp network (UDP has no handshake to time); use mode echo for %s", sp.Network)
		}
	case ProbeEcho:
	case ProbeTLS:
		if udp {
			return badArg(contract.ReasonInvalidArgument, "probe: mode tls needs a tcp network, not %s", sp.Network)
		}
	default:
		return badArg(contract.ReasonInvalidArgument, "probe: mode %d unknown; use connect, echo or tls (PROBE_MODE_CONNECT, PROBE_MODE_ECHO, PROBE_MODE_TLS)", sp.Mode)
	}
	if sp.TLS != nil && sp.Mode != ProbeTLS {
		return badArg(contract.ReasonInvalidArgument, "probe: tls given with mode %s; tls is for mode tls (PROBE_MODE_TLS)", sp.Mode)
	}
	return nil
}

// prober runs one probe's attempts.
type prober struct {
	sp     ProbeSpec
	set    *policy.RuleSet
	raddr  net.Addr
	dialer net.Dialer
	end    time.Time // stop starting attempts at this time (just before the RPC deadline)
	res    ProbeResult
	errs   errorTally

	tls        *tls.Config // mode tls: the handshakes' configuration, built once
	conn       net.Conn    // echo: the connection in use; nil after a failure
	wbuf, rbuf []byte
	test       uint64 // udp echo: the test id
}

// Probe runs a probe for ctx's caller.
func (t *Table) Probe(ctx context.Context, sp ProbeSpec) (ProbeResult, error) {
	wrap := func(err error) error {
		return &OpError{Op: "probe", Network: sp.Network, Address: sp.Address, Err: err}
	}
	if err := checkProbe(&sp); err != nil {
		return ProbeResult{}, err
	}
	c, set := t.who(ctx)
	if err := set.CheckNetwork(sp.Network); err != nil {
		return ProbeResult{}, wrap(err)
	}
	if err := bytesLimit(sp.Size, set, "probe with a smaller size"); err != nil {
		return ProbeResult{}, wrap(err)
	}
	p := &prober{sp: sp, set: set}
	var err error
	if p.tls, err = tlsProbeConfig(set, &sp); err != nil {
		return ProbeResult{}, wrap(err)
	}
	d, err := dialer(set, sp.Network, sp.Local, 0)
	if err != nil {
		return ProbeResult{}, wrap(err)
	}
	p.dialer = d
	raddr, err := resolveLocal(sp.Network, sp.Address)
	if err != nil {
		return ProbeResult{}, wrap(err)
	}
	ap, _ := addrPort(raddr)
	if err := checkDest(set, ap); err != nil {
		return ProbeResult{}, wrap(err)
	}
	p.raddr = raddr
	p.res.Remote = raddr.String()
	sess, err := t.sessionOfCall(ctx)
	if err != nil {
		return ProbeResult{}, wrap(err)
	}
	// One socket at a time, and its write and read buffers.
	adm, err := t.admit(c.ID, sess, set, claim{blocking: true, bytes: 2*sp.Size + sp.TLS.pemBytes(), sockets: 1})
	if err != nil {
		return ProbeResult{}, wrap(err)
	}
	defer adm.release()
	if err := p.run(ctx); err != nil {
		return ProbeResult{}, wrap(err)
	}
	return p.res, nil
}

// deadlineMargin is how long before the RPC deadline a probe stops, so its results still
// reach the caller: a twentieth of the time left, between 5ms and 100ms.
func deadlineMargin(left time.Duration) time.Duration {
	return min(max(left/20, 5*time.Millisecond), 100*time.Millisecond)
}

func (p *prober) run(ctx context.Context) error {
	start := time.Now()
	p.end = start.Add(maxProbeWait * 1000)
	if d, ok := ctx.Deadline(); ok {
		p.end = d.Add(-deadlineMargin(d.Sub(start)))
	}
	defer func() {
		if p.conn != nil {
			p.closeConn()
		}
		p.res.Elapsed = time.Since(start)
		p.res.Errors = p.errs.list()
	}()
	if p.sp.Mode == ProbeEcho {
		p.wbuf, p.rbuf = make([]byte, p.sp.Size), make([]byte, max(p.sp.Size, 64<<10))
		for i := range p.wbuf {
			p.wbuf[i] = byte('A' + i%26)
		}
		if p.isUDP() {
			p.rbuf = p.rbuf[:cap(p.rbuf)]
			p.test = rand.Uint64()
		} else {
			p.rbuf = p.rbuf[:p.sp.Size]
		}
	}
	p.res.Samples = make([]time.Duration, 0, p.sp.Count)
	total := p.sp.Warmup + p.sp.Count
	runStart := time.Now()
	for i := range total {
		if p.sp.Interval > 0 && i > 0 {
			next := runStart.Add(time.Duration(i) * p.sp.Interval)
			if next.After(p.end) {
				return nil
			}
			if err := sleepUntil(ctx, next); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return nil
			}
			return err
		}
		now := time.Now()
		if !now.Before(p.end) {
			return nil
		}
		deadline := now.Add(p.sp.Timeout)
		cut := false // the attempt's deadline is the probe's end, not its timeout
		if deadline.After(p.end) {
			deadline, cut = p.end, true
		}
		var (
			rtt time.Duration
			err error
		)
		seq := uint64(i)
		switch p.sp.Mode {
		case ProbeConnect:
			rtt, err = p.connectOnce(ctx, deadline)
		case ProbeTLS:
			rtt, err = p.tlsOnce(ctx, deadline)
		default:
			rtt, err = p.echoOnce(ctx, deadline, seq)
		}
		if err != nil && (cut || ctx.Err() != nil) && isTimeout(err) {
			return ctx.Err() // cut short by the RPC's end: not counted (nil on the deadline)
		}
		if err != nil && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return ctx.Err()
		}
		var denied *policy.Denied
		if errors.As(err, &denied) {
			return err // a policy refusal ends the probe: no attempt may pass
		}
		if i < p.sp.Warmup {
			continue
		}
		p.res.Sent++
		if err != nil {
			p.count(err)
			continue
		}
		p.res.Received++
		p.res.Samples = append(p.res.Samples, rtt)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func sleepUntil(ctx context.Context, at time.Time) error {
	d := time.Until(at)
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil // the loop sees the deadline next
		}
		return ctx.Err()
	}
}

func (p *prober) isUDP() bool { return strings.HasPrefix(p.sp.Network, "udp") }

// dial opens a connection to the target within deadline, judged by the policy.
func (p *prober) dial(ctx context.Context, deadline time.Time) (net.Conn, error) {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := p.dialer.DialContext(dctx, p.sp.Network, p.raddr.String())
	if err != nil {
		return nil, err
	}
	if p.sp.Local != "" {
		if err := checkBound(p.set, c.LocalAddr()); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	p.res.Local = c.LocalAddr().String()
	return c, nil
}

// connectOnce times one TCP connect, then resets the connection (no TIME_WAIT).
func (p *prober) connectOnce(ctx context.Context, deadline time.Time) (time.Duration, error) {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	t0 := time.Now()
	c, err := p.dialer.DialContext(dctx, p.sp.Network, p.raddr.String())
	rtt := time.Since(t0)
	if err != nil {
		return 0, err
	}
	p.res.Local = c.LocalAddr().String()
	if p.sp.Local != "" {
		err = checkBound(p.set, c.LocalAddr())
	}
	resetClose(c)
	return rtt, err
}

func resetClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *prober) closeConn() {
	resetClose(p.conn)
	p.conn = nil
}

// echoOnce times one round trip over the probe's connection (dialled first if needed, not
// timed). After a failure the connection is dropped: a late echo must not pass for the next.
func (p *prober) echoOnce(ctx context.Context, deadline time.Time, seq uint64) (time.Duration, error) {
	if p.conn == nil {
		c, err := p.dial(ctx, deadline)
		if err != nil {
			return 0, err
		}
		p.conn = c
	}
	if err := p.conn.SetDeadline(deadline); err != nil {
		p.closeConn()
		return 0, err
	}
	var (
		rtt time.Duration
		err error
	)
	if p.isUDP() {
		rtt, err = p.echoUDP(seq)
	} else {
		rtt, err = p.echoTCP(seq)
	}
	if err != nil && !(p.isUDP() && isTimeout(err)) {
		p.closeConn() // a lost UDP datagram leaves the socket usable; anything else does not
	}
	return rtt, err
}

var errEchoMismatch = errors.New("the bytes echoed differ from the bytes sent")

func (p *prober) echoTCP(seq uint64) (time.Duration, error) {
	if len(p.wbuf) >= 8 {
		binary.BigEndian.PutUint64(p.wbuf, seq)
	}
	t0 := time.Now()
	if len(p.wbuf) <= bigEcho {
		if _, err := p.conn.Write(p.wbuf); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(p.conn, p.rbuf); err != nil {
			return 0, err
		}
	} else {
		// Past the socket buffers an echo writes back while the request is still being
		// written: read it meanwhile, or both ends wait for each other.
		werr := make(chan error, 1)
		go func() {
			_, err := p.conn.Write(p.wbuf)
			werr <- err
		}()
		_, rerr := io.ReadFull(p.conn, p.rbuf)
		if rerr != nil {
			_ = p.conn.SetDeadline(time.Unix(farPastUnix, 0)) // wake the writer
		}
		if err := <-werr; err != nil && rerr == nil {
			return 0, err
		}
		if rerr != nil {
			return 0, rerr
		}
	}
	rtt := time.Since(t0)
	if !bytes.Equal(p.rbuf, p.wbuf) {
		return 0, errEchoMismatch
	}
	return rtt, nil
}

func (p *prober) echoUDP(seq uint64) (time.Duration, error) {
	wire.PutHeader(p.wbuf, wire.Header{Type: wire.Data, Test: p.test, Seq: seq})
	t0 := time.Now()
	if _, err := p.conn.Write(p.wbuf); err != nil {
		return 0, err
	}
	for {
		n, err := p.conn.Read(p.rbuf)
		if err != nil {
			if isTimeout(err) {
				return 0, fmt.Errorf("no echo of datagram %d within %s: %w", seq, p.sp.Timeout, os.ErrDeadlineExceeded)
			}
			return 0, err
		}
		h, _, herr := wire.ParseHeader(p.rbuf[:n])
		if herr != nil || h.Type != wire.Data || h.Test != p.test || h.Seq != seq {
			continue // a late echo, or not ours
		}
		rtt := time.Since(t0)
		if !bytes.Equal(p.rbuf[:n], p.wbuf) {
			return 0, errEchoMismatch
		}
		return rtt, nil
	}
}

// count records a failed attempt under its reason.
func (p *prober) count(err error) { p.errs.add(probeReason(err), innermostMsg(err)) }

func probeReason(err error) string {
	switch {
	case errors.Is(err, errEchoMismatch):
		return contract.ReasonEchoMismatch
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return contract.ReasonEOF
	}
	return Reason(err)
}

func innermostMsg(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "the target closed the connection before echoing the request"
	}
	return err.Error()
}
