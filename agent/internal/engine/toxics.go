package engine

// Toxics: the impairments a proxy (proxy.go) applies to what it forwards, toxiproxy's model.
// A proxy's toxic set is immutable once validated and swapped whole (UpdateToxics), so a
// forwarding goroutine reads it with one atomic load per chunk or datagram. Each connection
// (stream) draws once per set which toxics apply to it (toxicity), and each datagram draws
// again (datagram toxics).

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
)

// ToxicKind is the impairment a toxic makes.
type ToxicKind int

// Toxic kinds (the kind oneof of sockagent.v1.Toxic).
const (
	ToxicLatency ToxicKind = iota + 1
	ToxicBandwidth
	ToxicSlicer
	ToxicResetPeer
	ToxicTimeout
	ToxicLimitData
	ToxicLoss
	ToxicDuplicate
	ToxicReorder
)

func (k ToxicKind) String() string {
	switch k {
	case ToxicLatency:
		return "latency"
	case ToxicBandwidth:
		return "bandwidth"
	case ToxicSlicer:
		return "slicer"
	case ToxicResetPeer:
		return "reset_peer"
	case ToxicTimeout:
		return "timeout"
	case ToxicLimitData:
		return "limit_data"
	case ToxicLoss:
		return "loss"
	case ToxicDuplicate:
		return "duplicate"
	case ToxicReorder:
		return "reorder"
	}
	return "unknown"
}

// forStream and forDatagram say which proxies a kind of toxic applies to.
func (k ToxicKind) forStream() bool { return k >= ToxicLatency && k <= ToxicLimitData }

func (k ToxicKind) forDatagram() bool {
	return k == ToxicLatency || k == ToxicBandwidth || (k >= ToxicLoss && k <= ToxicReorder)
}

// ToxicDirection is the way through a proxy a toxic acts on.
type ToxicDirection int

// Toxic directions.
const (
	// Upstream is from the proxy's clients to its upstream.
	Upstream ToxicDirection = iota + 1
	// Downstream is from the upstream back to the clients.
	Downstream
)

func (d ToxicDirection) String() string {
	switch d {
	case Upstream:
		return "upstream"
	case Downstream:
		return "downstream"
	}
	return "unknown"
}

// Toxic is one impairment of one direction. Only the fields of its Kind are used.
type Toxic struct {
	Name      string
	Direction ToxicDirection
	// Toxicity is the probability that the toxic applies, from 0 (never) to 1 (always).
	Toxicity float64
	Kind     ToxicKind

	Latency, Jitter time.Duration // latency
	Rate            uint64        // bandwidth: bytes per second
	AverageSize     uint32        // slicer
	SizeVariation   uint32        // slicer
	Delay           time.Duration // slicer: between pieces; reorder: the longest hold
	After           time.Duration // reset_peer: from the connection's accept
	AfterBytes      uint64        // reset_peer: bytes in this direction
	CloseAfter      time.Duration // timeout: from when it took hold; 0 keeps the connection
	Bytes           uint64        // limit_data
	Depth           uint32        // reorder: later datagrams that overtake a held one
}

// Toxic bounds.
const (
	maxToxics       = 32
	maxToxicLatency = time.Minute
	maxSlicerDelay  = time.Second
	maxReorderDepth = 64
	maxReorderDelay = 10 * time.Second
	// defaultReorderDelay is the longest hold of a reorder toxic without a delay.
	defaultReorderDelay = 100 * time.Millisecond
	maxToxicNameLen     = 128
)

// ValidateToxics checks a toxic set for a stream (datagram false) or datagram proxy, fills
// in the default names and reorder parameters, and returns the set as the proxy keeps it.
func ValidateToxics(in []Toxic, datagram bool) ([]Toxic, error) {
	if len(in) > maxToxics {
		return nil, badArg(contract.ReasonInvalidArgument, "toxics: %d toxics; give at most %d", len(in), maxToxics)
	}
	out := make([]Toxic, len(in))
	seen := make(map[string]bool, len(in))
	for i, tx := range in {
		if tx.Name == "" {
			tx.Name = tx.Kind.String() + "_" + tx.Direction.String()
		}
		if err := tx.check(datagram); err != nil {
			return nil, err
		}
		if seen[tx.Name] {
			return nil, badArg(contract.ReasonInvalidArgument, "toxic %q: the name is used twice; give each toxic its own name", tx.Name)
		}
		seen[tx.Name] = true
		if tx.Kind == ToxicReorder {
			tx.Depth = max(tx.Depth, 1)
			if tx.Delay == 0 {
				tx.Delay = defaultReorderDelay
			}
		}
		out[i] = tx
	}
	return out, nil
}

// check validates one named toxic.
func (tx *Toxic) check(datagram bool) error {
	bad := func(format string, args ...any) error {
		return badArg(contract.ReasonInvalidArgument, "toxic %q: "+format, append([]any{tx.Name}, args...)...)
	}
	switch {
	case len(tx.Name) > maxToxicNameLen || strings.ContainsFunc(tx.Name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return badArg(contract.ReasonInvalidArgument, "toxic name %.40q...: give at most %d printable characters", tx.Name, maxToxicNameLen)
	case tx.Direction != Upstream && tx.Direction != Downstream:
		return bad("direction is required: upstream (TOXIC_DIRECTION_UPSTREAM) or downstream (TOXIC_DIRECTION_DOWNSTREAM)")
	case math.IsNaN(tx.Toxicity) || tx.Toxicity < 0 || tx.Toxicity > 1:
		return bad("toxicity %v out of range; give a probability from 0 to 1", tx.Toxicity)
	case tx.Kind < ToxicLatency || tx.Kind > ToxicReorder:
		return bad("a kind is required (latency, bandwidth, slicer, reset_peer, timeout, limit_data, loss, duplicate or reorder)")
	case datagram && !tx.Kind.forDatagram():
		return bad("%s applies to stream proxies (TCP, UNIX stream); a UDP proxy takes latency, bandwidth, loss, duplicate and reorder", tx.Kind)
	case !datagram && !tx.Kind.forStream():
		return bad("%s applies to UDP proxies; a stream proxy takes latency, bandwidth, slicer, reset_peer, timeout and limit_data", tx.Kind)
	}
	return tx.checkParams(bad)
}

// checkParams validates the parameters of tx's kind.
func (tx *Toxic) checkParams(bad func(string, ...any) error) error {
	switch tx.Kind {
	case ToxicLatency:
		if tx.Latency < 0 || tx.Latency > maxToxicLatency {
			return bad("latency %v out of range; give 0 up to %v", tx.Latency, maxToxicLatency)
		}
		if tx.Jitter < 0 || tx.Jitter > tx.Latency {
			return bad("jitter %v out of range; give 0 up to the latency (%v)", tx.Jitter, tx.Latency)
		}
	case ToxicBandwidth:
		if tx.Rate == 0 {
			return bad("bytes_per_second is required; give at least 1 (100 Mbit/s is 12500000)")
		}
	case ToxicSlicer:
		if tx.AverageSize == 0 {
			return bad("average_size is required; give at least 1 byte")
		}
		if tx.SizeVariation >= tx.AverageSize {
			return bad("size_variation %d out of range; give less than average_size (%d)", tx.SizeVariation, tx.AverageSize)
		}
		if tx.Delay < 0 || tx.Delay > maxSlicerDelay {
			return bad("delay %v out of range; give 0 up to %v", tx.Delay, maxSlicerDelay)
		}
	case ToxicResetPeer:
		if tx.After < 0 {
			return bad("after %v is negative; give 0 or more", tx.After)
		}
	case ToxicTimeout:
		if tx.CloseAfter < 0 {
			return bad("close_after %v is negative; give 0 (keep the connections) or more", tx.CloseAfter)
		}
	case ToxicLimitData:
		if tx.Bytes == 0 {
			return bad("bytes is required; give at least 1")
		}
	case ToxicReorder:
		if tx.Depth > maxReorderDepth {
			return bad("depth %d out of range; give 0 (1) up to %d", tx.Depth, maxReorderDepth)
		}
		if tx.Delay < 0 || tx.Delay > maxReorderDelay {
			return bad("delay %v out of range; give 0 (%v) up to %v", tx.Delay, defaultReorderDelay, maxReorderDelay)
		}
	}
	return nil
}

// toxicSet is a validated set as a proxy holds it.
type toxicSet struct{ toxics []Toxic }

// hits draws whether a toxic of toxicity p applies this time.
func hits(p float64) bool { return p >= 1 || (p > 0 && rand.Float64() < p) }

// streamToxics is what applies to one direction of one connection: drawn once from a set
// (toxicity per connection). A zero value applies nothing, and lets the direction take the
// fast path.
type streamToxics struct {
	latency, jitter time.Duration
	hasLatency      bool
	rate            uint64 // bytes per second; 0: no limit
	slicer          *Toxic
	reset           *Toxic
	timeout         *Toxic
	limit           *Toxic
}

func (st *streamToxics) empty() bool {
	return !st.hasLatency && st.rate == 0 && st.slicer == nil && st.reset == nil && st.timeout == nil && st.limit == nil
}

// drawStream draws the toxics of set that apply to direction d of one connection. When a
// kind appears more than once, the last one drawn applies.
func drawStream(set *toxicSet, d ToxicDirection) streamToxics {
	var st streamToxics
	for i := range set.toxics {
		tx := &set.toxics[i]
		if tx.Direction != d || !hits(tx.Toxicity) {
			continue
		}
		switch tx.Kind {
		case ToxicLatency:
			st.latency, st.jitter, st.hasLatency = tx.Latency, tx.Jitter, true
		case ToxicBandwidth:
			st.rate = tx.Rate
		case ToxicSlicer:
			st.slicer = tx
		case ToxicResetPeer:
			st.reset = tx
		case ToxicTimeout:
			st.timeout = tx
		case ToxicLimitData:
			st.limit = tx
		}
	}
	return st
}

// delay draws one chunk's or datagram's latency: latency plus a uniform draw in
// [-jitter, +jitter].
func delay(latency, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return latency
	}
	return latency - jitter + rand.N(2*jitter+1)
}

// pieceSize draws the size of a slicer's next piece: average plus a uniform draw in
// [-variation, +variation].
func pieceSize(tx *Toxic) int {
	v := int(tx.SizeVariation)
	if v == 0 {
		return int(tx.AverageSize)
	}
	return int(tx.AverageSize) - v + rand.IntN(2*v+1)
}

// ratePacer paces writes to a rate, a token bucket without burst: each write of n bytes moves the
// earliest time of the next one by n/rate, from the later of then and now, so the rate over
// any transfer longer than one write is the rate given, however the timers wake.
type ratePacer struct {
	next time.Time
}

// reserve takes n bytes at rate and returns when they may be sent: when they would have
// finished passing a link of that rate, so a transfer of B bytes lasts B/rate. A writer
// woken late keeps the schedule (the next writes catch up); one that was idle (waiting for
// bytes to write) starts a new one, so idleness is not saved up as a burst.
func (p *ratePacer) reserve(now time.Time, n int, rate uint64, idle bool) time.Time {
	if idle && p.next.Before(now) || p.next.IsZero() {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
	return p.next
}

// paceQuantum bounds one paced write to what the rate moves in this time, so a low rate
// sends many small writes, not one late burst.
const paceQuantum = 10 * time.Millisecond

// paceSize is the largest write at rate.
func paceSize(rate uint64) int {
	return int(max(min(rate/uint64(time.Second/paceQuantum), 1<<20), 1))
}

// String names a toxic in messages: its name, kind and direction.
func (tx Toxic) String() string {
	return fmt.Sprintf("%s (%s, %s)", tx.Name, tx.Kind, tx.Direction)
}
