package engine

// MeasureService.Sweep: one row of a connectivity matrix in one call. The agent tries many
// targets (a TCP connect, or an echo round trip) with the probe's own dial and echo code,
// classifies each (open, closed, filtered, unreachable, error) and hands every verdict to the
// caller as it is reached.
//
// Silence is retried before it is a verdict, so one lost SYN or datagram never reads as a
// firewall's drop; first contacts to new addresses are paced, so a sweep of a hundred
// neighbours does not flood the agent's own link with ARP or neighbour discovery at once.
// Every target is checked (network, literal address, the caller's destination policy) before
// the first packet, and the whole sweep is one admission: one blocking call, a socket slot per
// concurrent target and their echo buffers.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/wire"
	"github.com/sockagent/sockagent/agent/policy"
)

// Verdict is what a sweep found at a target.
type Verdict int

// Verdicts (the values of sockagent.v1.SweepVerdict).
const (
	VerdictOpen        Verdict = iota + 1 // connected, or the echo came back
	VerdictClosed                         // refused: TCP reset, or ICMP port unreachable
	VerdictFiltered                       // silence on every attempt
	VerdictUnreachable                    // no route, host or network unreachable on every attempt
	VerdictError                          // anything else, with its reason
)

// MaxSweepTargets bounds the targets of one sweep.
const MaxSweepTargets = 10_000

// Sweep bounds and defaults.
const (
	defaultSweepConcurrency = 32
	maxSweepConcurrency     = 1024
	defaultSweepAttempts    = 2
	// minSweepAttempts: a single lost packet must not be a verdict.
	minSweepAttempts    = 2
	maxSweepAttempts    = 10
	defaultSweepTimeout = time.Second
	maxSweepTimeout     = time.Minute
	defaultSweepSpacing = 100 * time.Millisecond
	maxSweepSpacing     = 10 * time.Second
	maxSweepID          = 256
	// sweepSize is an echo request's size: the probe's UDP header and a little payload.
	sweepSize = 64
	// DefaultMaxSweepPace is the agent's cap on a sweep's first contacts per second when its
	// configuration sets none.
	DefaultMaxSweepPace = 1000
)

// SweepTarget is one destination of a sweep.
type SweepTarget struct {
	Network, Address, ID string
	Mode                 ProbeMode
}

// SweepSpec is a sweep request.
type SweepSpec struct {
	Targets          []SweepTarget
	Concurrency      int
	Attempts         int
	Timeout, Spacing time.Duration
	Pace             int        // new destination addresses per second; 0 = the agent's cap
	resolved         []net.Addr // the targets' addresses, filled in by checkSweep
}

// SweepCell is the verdict on one target.
type SweepCell struct {
	Index           int
	ID              string
	Verdict         Verdict
	Reason, Message string // of the last failed attempt; empty when open
	RTT             time.Duration
	Attempts        int
	Remote, Local   string
}

// checkSweep validates a request and fills in the defaults. Each target's address must be a
// literal IP:port of the network's family: a sweep resolves no names, so what the policy
// judges is what the kernel is given.
func checkSweep(sp *SweepSpec) error {
	n := len(sp.Targets)
	if n == 0 || n > MaxSweepTargets {
		return badArg(contract.ReasonInvalidArgument, "sweep: %d targets; give 1 up to %d", n, MaxSweepTargets)
	}
	if sp.Concurrency == 0 {
		sp.Concurrency = defaultSweepConcurrency
	}
	if sp.Concurrency < 1 || sp.Concurrency > maxSweepConcurrency {
		return badArg(contract.ReasonInvalidArgument, "sweep: concurrency %d out of range; give 0 (%d) up to %d", sp.Concurrency, defaultSweepConcurrency, maxSweepConcurrency)
	}
	sp.Concurrency = min(sp.Concurrency, n)
	if sp.Attempts == 0 {
		sp.Attempts = defaultSweepAttempts
	}
	if sp.Attempts < minSweepAttempts || sp.Attempts > maxSweepAttempts {
		return badArg(contract.ReasonInvalidArgument, "sweep: attempts %d out of range; give 0 (%d) or %d up to %d (one lost packet is not a verdict)", sp.Attempts, defaultSweepAttempts, minSweepAttempts, maxSweepAttempts)
	}
	if sp.Timeout == 0 {
		sp.Timeout = defaultSweepTimeout
	}
	if sp.Timeout < 0 || sp.Timeout > maxSweepTimeout {
		return badArg(contract.ReasonInvalidArgument, "sweep: timeout %s out of range; give 0 (%s) up to %s", sp.Timeout, defaultSweepTimeout, maxSweepTimeout)
	}
	if sp.Spacing == 0 {
		sp.Spacing = defaultSweepSpacing
	}
	if sp.Spacing < 0 || sp.Spacing > maxSweepSpacing {
		return badArg(contract.ReasonInvalidArgument, "sweep: spacing %s out of range; give 0 (%s) up to %s", sp.Spacing, defaultSweepSpacing, maxSweepSpacing)
	}
	if sp.Pace < 0 {
		return badArg(contract.ReasonInvalidArgument, "sweep: pace %d is negative; give 0 (the agent's cap) or a number of new destinations per second", sp.Pace)
	}
	sp.resolved = make([]net.Addr, n)
	for i := range sp.Targets {
		a, err := checkSweepTarget(&sp.Targets[i])
		if err != nil {
			return badArg(Reason(err), "sweep: target %d: %s", i, err.Error())
		}
		sp.resolved[i] = a
	}
	return nil
}

// checkSweepTarget validates one target, fills in its mode and returns its address.
func checkSweepTarget(tg *SweepTarget) (net.Addr, error) {
	if err := checkNetwork(contract.OpProbe, tg.Network); err != nil {
		return nil, err
	}
	if len(tg.ID) > maxSweepID {
		return nil, badArg(contract.ReasonInvalidArgument, "id is %d bytes long; give at most %d", len(tg.ID), maxSweepID)
	}
	ap, err := netip.ParseAddrPort(tg.Address)
	if err != nil || ap.Port() == 0 {
		return nil, badArg(contract.ReasonInvalidAddress, "address %q is not IP:PORT with a port other than 0 (a sweep resolves no names: give the address itself, such as 10.77.0.2:8080 or [fd00::2]:8080)", tg.Address)
	}
	switch ip := ap.Addr(); {
	case strings.HasSuffix(tg.Network, "4") && !ip.Unmap().Is4():
		return nil, badArg(contract.ReasonInvalidAddress, "address %s is not IPv4, which network %s needs", tg.Address, tg.Network)
	case strings.HasSuffix(tg.Network, "6") && !ip.Is6():
		return nil, badArg(contract.ReasonInvalidAddress, "address %s is not IPv6, which network %s needs", tg.Address, tg.Network)
	}
	udp := strings.HasPrefix(tg.Network, "udp")
	switch tg.Mode {
	case ProbeAuto:
		tg.Mode = ProbeConnect
		if udp {
			tg.Mode = ProbeEcho
		}
	case ProbeConnect:
		if udp {
			return nil, badArg(contract.ReasonInvalidArgument, "mode connect needs a tcp network (UDP has no handshake); use mode echo for %s", tg.Network)
		}
	case ProbeEcho:
	default:
		return nil, badArg(contract.ReasonInvalidArgument, "mode %d unknown; use connect or echo (PROBE_MODE_CONNECT, PROBE_MODE_ECHO)", tg.Mode)
	}
	if udp {
		return net.UDPAddrFromAddrPort(ap), nil
	}
	return net.TCPAddrFromAddrPort(ap), nil
}

// Sweep tries every target of sp for ctx's caller and passes each verdict to emit, from one
// goroutine, as it is reached. Targets not finished when the RPC deadline nears are not
// emitted. An error from emit ends the sweep with that error.
func (t *Table) Sweep(ctx context.Context, sp SweepSpec, emit func(SweepCell) error) error {
	if err := checkSweep(&sp); err != nil {
		return err
	}
	c, set := t.who(ctx)
	for i, tg := range sp.Targets {
		ap, _ := addrPort(sp.resolved[i])
		err := set.CheckNetwork(tg.Network)
		if err == nil {
			err = checkDest(set, ap)
		}
		if err != nil {
			return &OpError{Op: "sweep", Network: tg.Network, Address: tg.Address, Err: fmt.Errorf("target %d: %w", i, err)}
		}
	}
	bytes := sp.Concurrency * 2 * sweepSize
	sess, err := t.sessionOfCall(ctx)
	if err != nil {
		return &OpError{Op: "sweep", Err: err}
	}
	adm, err := t.admit(c.ID, sess, set, claim{blocking: true, bytes: bytes, sockets: sp.Concurrency})
	if err != nil {
		return &OpError{Op: "sweep", Err: fmt.Errorf("%w (lower the sweep's concurrency, %d)", err, sp.Concurrency)}
	}
	defer adm.release()
	pace := t.sweepPace(sp.Pace)
	sw := &sweeper{sp: sp, set: set, pacer: newPacer(pace), test: rand.Uint64()}
	return sw.run(ctx, emit)
}

// sweepPace is the pace a sweep runs at: the one asked for, at most the agent's cap.
func (t *Table) sweepPace(asked int) int {
	limit := t.maxSweepPace
	if limit <= 0 {
		limit = DefaultMaxSweepPace
	}
	if asked <= 0 || asked > limit {
		return limit
	}
	return asked
}

// sweeper runs one sweep.
type sweeper struct {
	sp    SweepSpec
	set   *policy.RuleSet
	pacer *pacer
	test  uint64 // the UDP echo header's test id
	end   time.Time
}

func (sw *sweeper) run(ctx context.Context, emit func(SweepCell) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	sw.end = start.Add(maxProbeWait * 1000)
	if d, ok := ctx.Deadline(); ok {
		sw.end = d.Add(-deadlineMargin(d.Sub(start)))
	}
	jobs := make(chan int)
	cells := make(chan SweepCell)
	var wg sync.WaitGroup
	for range sw.sp.Concurrency {
		wg.Go(func() {
			for i := range jobs {
				if cell, ok := sw.target(ctx, i); ok {
					select {
					case cells <- cell:
					case <-ctx.Done():
						return
					}
				}
			}
		})
	}
	go func() {
		defer close(jobs)
		for i := range sw.sp.Targets {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(cells)
	}()
	var emitErr error
	for cell := range cells {
		if emitErr != nil {
			continue // drain, so the workers end
		}
		if err := emit(cell); err != nil {
			emitErr = err
			cancel()
		}
	}
	if emitErr != nil {
		return emitErr
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// target tries target i until it has a verdict; ok is false when the sweep's end or its
// cancellation came first.
func (sw *sweeper) target(ctx context.Context, i int) (SweepCell, bool) {
	tg := sw.sp.Targets[i]
	raddr := sw.sp.resolved[i]
	cell := SweepCell{Index: i, ID: tg.ID, Remote: raddr.String()}
	ap, _ := addrPort(raddr)
	if err := sw.pacer.wait(ctx, ap.Addr(), sw.end); err != nil {
		return cell, false
	}
	d, _ := dialer(sw.set, tg.Network, "", 0) // no local address: cannot fail
	p := &prober{sp: ProbeSpec{Network: tg.Network, Address: tg.Address, Mode: tg.Mode, Timeout: sw.sp.Timeout, Size: sweepSize},
		set: sw.set, raddr: raddr, dialer: d, test: sw.test}
	if tg.Mode == ProbeEcho {
		p.wbuf, p.rbuf = make([]byte, sweepSize), make([]byte, sweepSize)
		for k := range p.wbuf {
			p.wbuf[k] = byte('A' + k%26)
		}
		if p.isUDP() {
			p.rbuf = make([]byte, 2*sweepSize) // a longer answer shows as a mismatch, not a cut
		}
	}
	defer func() {
		if p.conn != nil {
			p.closeConn()
		}
	}()
	for a := range sw.sp.Attempts {
		if a > 0 {
			if err := sleepUntil(ctx, time.Now().Add(sw.sp.Spacing)); err != nil || ctx.Err() != nil {
				return cell, false
			}
		}
		now := time.Now()
		if !now.Before(sw.end) {
			return cell, false
		}
		deadline, cut := now.Add(sw.sp.Timeout), false
		if deadline.After(sw.end) {
			deadline, cut = sw.end, true
		}
		var (
			rtt time.Duration
			err error
		)
		if tg.Mode == ProbeConnect {
			rtt, err = p.connectOnce(ctx, deadline)
		} else {
			rtt, err = p.echoOnce(ctx, deadline, uint64(i)<<8|uint64(a))
		}
		cell.Attempts = a + 1
		cell.Local = p.res.Local
		if err != nil && (ctx.Err() != nil || (cut && isTimeout(err))) {
			return cell, false // cut short by the sweep's end: no verdict
		}
		v, final := sweepVerdict(err)
		cell.Verdict = v
		if err == nil {
			cell.RTT = rtt
			return cell, true
		}
		cell.Reason, cell.Message = probeReason(err), innermostMsg(err)
		if final {
			return cell, true
		}
	}
	return cell, true
}

// sweepVerdict names the verdict of one attempt's outcome, and whether it is final: silence and
// unreachability are retried, since one lost packet (a SYN, a datagram, an ARP request) must
// not pass for the network's answer; an answer (a connection, an echo, a refusal) is final.
func sweepVerdict(err error) (Verdict, bool) {
	if err == nil {
		return VerdictOpen, true
	}
	if isTimeout(err) {
		return VerdictFiltered, false
	}
	switch Reason(err) {
	case contract.ReasonConnectionRefused:
		return VerdictClosed, true
	case contract.ReasonHostUnreachable, contract.ReasonNetworkUnreachable:
		return VerdictUnreachable, false
	case contract.ReasonTimeout:
		return VerdictFiltered, false
	}
	return VerdictError, true
}

// pacer spaces a sweep's first contacts to new addresses: at most pace per second.
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
	seen     map[netip.Addr]bool
}

func newPacer(pace int) *pacer {
	return &pacer{interval: time.Second / time.Duration(pace), seen: map[netip.Addr]bool{}}
}

// wait returns once a may be contacted: at once for an address contacted before, else at the
// next free slot. It fails when ctx ends first or the slot is past end.
func (pc *pacer) wait(ctx context.Context, a netip.Addr, end time.Time) error {
	pc.mu.Lock()
	if pc.seen[a] {
		pc.mu.Unlock()
		return nil
	}
	pc.seen[a] = true
	now := time.Now()
	at := pc.next
	if at.Before(now) {
		at = now
	}
	pc.next = at.Add(pc.interval)
	pc.mu.Unlock()
	if !at.Before(end) {
		return context.DeadlineExceeded
	}
	_ = sleepUntil(ctx, at) // its only error is ctx's
	return ctx.Err()
}

// The echo request must hold the probe's UDP header (the array's length is negative, and the
// build fails, otherwise).
var _ = [sweepSize - wire.HeaderSize]struct{}{}
