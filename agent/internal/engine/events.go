package engine

// Events: what happens to sockets, sessions and admission, told to the callers that watch.
//
// The hub costs a call that nobody watches one atomic load: every hook (sockEvent, sockError,
// ...) is small enough to inline and returns at once when the hub has no watcher. With
// watchers, publishing stamps the event under the hub's lock (so a stream's events are in the
// order their times say) and appends it to the buffer of each watcher that may see it; a
// buffer that is full drops the event and counts it, so a watcher that reads slowly (or not
// at all) never slows a socket. The stream says how many were dropped, at the point where
// they were.
//
// Bytes moved are never an event per call: each watcher reads the byte counters of the
// sockets it may see once per data interval and sends one data event per socket that moved.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

// EventKind says what happened.
type EventKind int

// Event kinds.
const (
	EventOpened       EventKind = iota + 1 // Listen or Bind opened a socket
	EventAccepted                          // Accept took a connection
	EventConnected                         // Dial connected a socket
	EventData                              // bytes moved since the watcher's last data event
	EventPeerClosed                        // a read saw the peer's end of stream
	EventReset                             // the peer reset the connection
	EventError                             // a call failed on the network
	EventClosed                            // the socket closed (Reason: who closed it)
	EventSessionEnded                      // a session ended
	EventLimitRefused                      // admission refused a call (Reason: the limit)
	numEventKinds     = iota
)

var eventNames = [numEventKinds + 1]string{"", "opened", "accepted", "connected", "data", "peer_closed", "reset",
	"error", "closed", "session_ended", "limit_refused"}

func (k EventKind) String() string {
	if k < EventOpened || k > EventLimitRefused {
		return "unknown"
	}
	return eventNames[k]
}

// ClosedByCaller is the Reason of a closed event whose socket its caller closed; the agent's
// own closes carry the cause OnReclaim gets ("session_closed", "lease_expired", "idle",
// "revoked", "abandoned").
const ClosedByCaller = "closed"

// Event is one thing that happened on the agent.
type Event struct {
	Kind EventKind
	// Time is when it happened (a data event: when the counters were read).
	Time time.Time
	// SocketID, Parent, Network, Local and Remote describe the socket (Remote: a failed
	// Dial's destination).
	SocketID, Parent, Network, Local, Remote string
	// Caller owns the socket or session, or made the refused call; Session is its session.
	Caller, Session string
	// BytesIn and BytesOut: a data event's bytes since the last one; a closed event's totals.
	BytesIn, BytesOut uint64
	// Reason is an error's reason, who closed, or the limit; Message says it in words.
	Reason, Message string

	created time.Time // a closed socket's creation: whether a watcher counted all its bytes
}

// WatchItem is what a watch delivers: an event, or, when Dropped > 0, the number of events
// dropped at this point of the stream (Event.Time: when the first was dropped).
type WatchItem struct {
	Event   Event
	Dropped uint64
}

// WatchSpec chooses the events of a watch; empty filters keep everything.
type WatchSpec struct {
	Sockets    []string    // events of these sockets (and accepted events of these listeners)
	Kinds      []EventKind // events of these kinds
	Callers    []string    // events of these callers; another than the watcher needs AllCallers
	Interval   time.Duration
	AllCallers bool // every caller's events: the rule set must say "events: all"
}

// Data interval bounds, and the bounds of a watch's filters.
const (
	DefaultDataInterval = time.Second
	MinDataInterval     = 100 * time.Millisecond
	MaxDataInterval     = time.Hour
	MaxWatchSockets     = 1024
	MaxWatchCallers     = 64
	// WatchBuffer is how many events wait for a watcher before further ones are dropped.
	WatchBuffer = 1024
	// eventBytes is what admission counts per buffered event: its strings are addresses, ids
	// and a message of the agent's own.
	eventBytes = 512
)

// hub is the table's list of watchers.
type hub struct {
	n       atomic.Int32 // len(ws): the one thing a hook reads when nobody watches
	mu      sync.Mutex
	ws      map[*watcher]struct{}
	stopped bool
}

// on reports whether anyone watches.
func (h *hub) on() bool { return h.n.Load() > 0 }

func (h *hub) add(w *watcher) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	if h.ws == nil {
		h.ws = map[*watcher]struct{}{}
	}
	h.ws[w] = struct{}{}
	h.n.Store(int32(len(h.ws)))
	return true
}

func (h *hub) remove(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.ws, w)
	h.n.Store(int32(len(h.ws)))
}

// stop ends every watch (the agent stops) and refuses new ones.
func (h *hub) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	for w := range h.ws {
		close(w.stop)
	}
	h.ws = nil
	h.n.Store(0)
}

// publish stamps ev and gives it to every watcher that may see it.
func (h *hub) publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev.Time = time.Now()
	for w := range h.ws {
		if w.wants(&ev) {
			w.push(ev)
		}
	}
}

// watcher is one watch in progress.
type watcher struct {
	caller  string
	all     bool
	sockets map[string]bool // nil: any
	callers map[string]bool // nil: any the watcher may see
	kinds   uint32          // bit k set: kind k wanted; 0: any
	stop    chan struct{}   // closed when the agent stops
	wake    chan struct{}   // signalled when the buffer gains an item

	mu     sync.Mutex
	q      []WatchItem
	lost   uint64 // events dropped since the last item queued
	lostAt time.Time
}

// sees reports whether the watcher may see what owner's sockets and sessions do.
func (w *watcher) sees(owner string) bool {
	return (w.all || owner == w.caller) && (w.callers == nil || w.callers[owner])
}

func (w *watcher) wants(ev *Event) bool {
	if !w.sees(ev.Caller) || (w.kinds != 0 && w.kinds&(1<<ev.Kind) == 0) {
		return false
	}
	return w.sockets == nil || w.sockets[ev.SocketID] || (ev.Kind == EventAccepted && w.sockets[ev.Parent])
}

// push queues an item, or drops and counts it when the buffer is full.
func (w *watcher) push(ev Event) {
	w.mu.Lock()
	if w.lost > 0 && len(w.q) < WatchBuffer {
		w.q = append(w.q, WatchItem{Dropped: w.lost, Event: Event{Time: w.lostAt}})
		w.lost = 0
	}
	if len(w.q) >= WatchBuffer {
		if w.lost == 0 {
			w.lostAt = ev.Time
		}
		w.lost++
		w.mu.Unlock()
		return
	}
	w.q = append(w.q, WatchItem{Event: ev})
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take returns what is queued, and the count of what was dropped after it, emptying the
// buffer; spare is reused for the next items.
func (w *watcher) take(spare []WatchItem) []WatchItem {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.q
	if w.lost > 0 {
		out = append(out, WatchItem{Dropped: w.lost, Event: Event{Time: w.lostAt}})
		w.lost = 0
	}
	w.q = spare[:0]
	return out
}

// newWatcher checks spec for caller c under rule set set.
func newWatcher(c string, set *policy.RuleSet, spec WatchSpec) (*watcher, error) {
	w := &watcher{caller: c, all: spec.AllCallers, stop: make(chan struct{}), wake: make(chan struct{}, 1)}
	switch {
	case len(spec.Sockets) > MaxWatchSockets:
		return nil, badArg(contract.ReasonInvalidArgument, "watch events: %d socket ids, at most %d; watch without socket_ids to see all of them", len(spec.Sockets), MaxWatchSockets)
	case len(spec.Callers) > MaxWatchCallers:
		return nil, badArg(contract.ReasonInvalidArgument, "watch events: %d callers, at most %d; watch without callers to see all of them", len(spec.Callers), MaxWatchCallers)
	case spec.Interval != 0 && (spec.Interval < MinDataInterval || spec.Interval > MaxDataInterval):
		return nil, badArg(contract.ReasonInvalidArgument, "watch events: data_interval %s out of range; give 0 (%s) or %s up to %s", spec.Interval, DefaultDataInterval, MinDataInterval, MaxDataInterval)
	}
	if spec.AllCallers && !set.EventsAll {
		return nil, &policy.Denied{What: "watching every caller's events (all_callers)", Rule: "events", RuleSet: set.Name, NoMatch: true,
			Hint: "the rule set must say \"events: all\"; without all_callers a caller watches its own sockets"}
	}
	if len(spec.Sockets) > 0 {
		w.sockets = make(map[string]bool, len(spec.Sockets))
		for _, id := range spec.Sockets {
			w.sockets[id] = true
		}
	}
	if len(spec.Callers) > 0 {
		w.callers = make(map[string]bool, len(spec.Callers))
		for _, id := range spec.Callers {
			if id != c && !spec.AllCallers {
				return nil, &policy.Denied{What: fmt.Sprintf("watching the events of caller %q", id), Rule: "events", RuleSet: set.Name, NoMatch: true,
					Hint: "another caller's events need all_callers, which the rule set must allow with \"events: all\""}
			}
			w.callers[id] = true
		}
	}
	for _, k := range spec.Kinds {
		if k < EventOpened || k > EventLimitRefused {
			return nil, badArg(contract.ReasonInvalidArgument, "watch events: event kind %d unknown; give kinds from opened (1) to limit_refused (%d)", int(k), int(EventLimitRefused))
		}
		w.kinds |= 1 << k
	}
	return w, nil
}

// counted is what a watcher last reported of one socket's bytes.
type counted struct {
	in, out uint64
	missed  bool // absent from the last sample: forgotten if absent from the next too
}

// watchRun is the state of one Watch between its sends.
type watchRun struct {
	t       *Table
	w       *watcher
	send    func(WatchItem) error
	started time.Time
	last    map[string]*counted
	spare   []WatchItem
}

// Watch streams to send the events ctx's caller may see that spec keeps, until ctx ends
// (its error) or the agent stops (ErrAgentStopping). started runs once the watch is in force:
// every event after it is seen. A watch holds one waiting blocking call of its caller, its
// buffer's bytes, and one of its caller's limits.watches.
func (t *Table) Watch(ctx context.Context, spec WatchSpec, started func() error, send func(WatchItem) error) error {
	wrap := func(err error) error { return &OpError{Op: "watch events", Err: err} }
	c, set := t.who(ctx)
	w, err := newWatcher(c.ID, set, spec)
	if err != nil {
		return wrap(err)
	}
	interval := cmp.Or(spec.Interval, DefaultDataInterval)
	adm, err := t.admit(c.ID, "", set, claim{blocking: true, waits: true, watch: true, bytes: WatchBuffer * eventBytes})
	if err != nil {
		return wrap(err)
	}
	defer adm.release()
	if !t.events.add(w) {
		return wrap(ErrAgentStopping)
	}
	defer t.events.remove(w)
	r := &watchRun{t: t, w: w, send: send, started: time.Now(), last: map[string]*counted{}}
	r.sample(false)
	if err := started(); err != nil {
		return err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := r.deliver(r.w.take(r.spare), nil); err != nil {
			return err
		}
		select {
		case <-w.wake:
		case <-tick.C:
			if err := r.deliver(r.w.take(r.spare), r.sample(true)); err != nil {
				return err
			}
		case <-w.stop:
			return wrap(ErrAgentStopping)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// deliver sends items and data events merged by time; a closed socket's last bytes go in a
// data event just before its closed event.
func (r *watchRun) deliver(items, data []WatchItem) error {
	defer func() { r.spare = items[:0] }()
	for len(items) > 0 || len(data) > 0 {
		var it WatchItem
		if len(data) > 0 && (len(items) == 0 || !items[0].Event.Time.Before(data[0].Event.Time)) {
			it, data = data[0], data[1:]
		} else {
			it, items = items[0], items[1:]
		}
		if it.Dropped == 0 && it.Event.Kind == EventClosed {
			if d, ok := r.closedRest(&it.Event); ok {
				if err := r.send(d); err != nil {
					return err
				}
			}
		}
		if err := r.send(it); err != nil {
			return err
		}
	}
	return nil
}

// closedRest is the data event of what a closed socket moved since the watcher's last one
// for it: all it moved when it was opened after the watch started and never sampled.
func (r *watchRun) closedRest(ev *Event) (WatchItem, bool) {
	p := r.last[ev.SocketID]
	delete(r.last, ev.SocketID)
	if p == nil {
		if ev.created.Before(r.started) || !r.w.kinds0(EventData) {
			return WatchItem{}, false
		}
		p = &counted{}
	}
	if !r.w.kinds0(EventData) || (ev.BytesIn <= p.in && ev.BytesOut <= p.out) {
		return WatchItem{}, false
	}
	d := *ev
	d.Kind, d.Reason, d.Message = EventData, "", ""
	d.BytesIn, d.BytesOut = ev.BytesIn-min(p.in, ev.BytesIn), ev.BytesOut-min(p.out, ev.BytesOut)
	return WatchItem{Event: d}, true
}

// kinds0 reports whether the watcher wants events of kind k.
func (w *watcher) kinds0(k EventKind) bool { return w.kinds == 0 || w.kinds&(1<<k) != 0 }

// sample reads the byte counters of the sockets the watcher may see and, when emit is set,
// returns one data event for each that moved since the last sample (stamped when the table
// was read, before any socket left it since). Sockets absent from two samples in a row are
// forgotten.
func (r *watchRun) sample(emit bool) []WatchItem {
	now := time.Now()
	socks := r.t.watchedSockets(r.w)
	var out []WatchItem
	seen := make(map[string]bool, len(socks))
	for _, s := range socks {
		seen[s.id] = true
		in, outB := s.moved()
		p := r.last[s.id]
		if p == nil {
			p = &counted{}
			r.last[s.id] = p
			if !emit { // the baseline: bytes moved before the watch are not the watcher's
				p.in, p.out = in, outB
			}
		}
		p.missed = false
		if in == p.in && outB == p.out {
			continue
		}
		if emit && r.w.kinds0(EventData) {
			i := s.info()
			out = append(out, WatchItem{Event: Event{Kind: EventData, Time: now, SocketID: s.id, Parent: s.parent, Network: s.network,
				Local: i.Local, Remote: i.Remote, Caller: s.owner, Session: s.session, BytesIn: in - min(p.in, in), BytesOut: outB - min(p.out, outB)}})
		}
		p.in, p.out = in, outB
	}
	// One sample's events in the order the sockets were opened, whatever the table's order.
	slices.SortFunc(out, func(a, b WatchItem) int { return socketOrder(a.Event.SocketID, b.Event.SocketID) })
	for id, p := range r.last {
		if seen[id] {
			continue
		}
		if p.missed {
			delete(r.last, id)
		} else {
			p.missed = true
		}
	}
	return out
}

// watchedSockets lists the open sockets w may see that its filters keep.
func (t *Table) watchedSockets(w *watcher) []*sock {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*sock
	keep := func(s *sock) {
		if s != nil && w.sees(s.owner) {
			out = append(out, s)
		}
	}
	switch {
	case w.sockets != nil:
		for id := range w.sockets {
			keep(t.socks[id])
		}
	case w.all && w.callers == nil:
		for _, s := range t.socks {
			keep(s)
		}
	case w.callers != nil:
		for c := range w.callers {
			for _, s := range t.socksBy[c] {
				keep(s)
			}
		}
	default:
		for _, s := range t.socksBy[w.caller] {
			keep(s)
		}
	}
	return out
}

// moved is what s read and wrote, a serving behaviour's bytes included.
func (s *sock) moved() (in, out uint64) {
	in, out = s.bytesRecv.Load(), s.bytesSent.Load()
	if sv := s.serving.Load(); sv != nil {
		in += sv.bytesIn.Load()
		out += sv.bytesOut.Load()
	}
	return in, out
}

// InstanceID is the agent instance the table serves (Config.Instance, or the one it drew).
func (t *Table) InstanceID() string { return t.instance }

// The hooks below are what the rest of the engine calls; each costs one atomic load when
// nobody watches.

// sockEvent tells watchers that s was opened, accepted, connected or read its peer's end.
func (t *Table) sockEvent(k EventKind, s *sock) {
	if t.events.on() {
		t.publishSock(k, s)
	}
}

// Socket notes kept per socket, so that a watcher hears of an end of stream or a reset once.
const (
	notedEOF uint32 = 1 << iota
	notedReset
)

func (t *Table) publishSock(k EventKind, s *sock) {
	// A peer closes once; the end of stream reads show after a reset is not a close.
	if k == EventPeerClosed && (s.noted.Load()&notedReset != 0 || !s.note(notedEOF)) {
		return
	}
	t.events.publish(infoEvent(k, s.info()))
}

// note sets a note of s and reports whether it was new.
func (s *sock) note(bit uint32) bool {
	for {
		old := s.noted.Load()
		if old&bit != 0 {
			return false
		}
		if s.noted.CompareAndSwap(old, old|bit) {
			return true
		}
	}
}

func infoEvent(k EventKind, in Info) Event {
	return Event{Kind: k, SocketID: in.ID, Parent: in.Parent, Network: in.Network, Local: in.Local, Remote: in.Remote,
		Caller: in.Owner, Session: in.Session, created: in.Created}
}

// closedEvent tells watchers that a socket closed: by its caller (ClosedByCaller) or by the
// agent (cause and why), with its life's totals.
func (t *Table) closedEvent(in Info, cause, why string) {
	if !t.events.on() {
		return
	}
	ev := infoEvent(EventClosed, in)
	ev.BytesIn, ev.BytesOut = in.BytesRecv, in.BytesSent
	if in.Serving != nil {
		ev.BytesIn += in.Serving.BytesIn
		ev.BytesOut += in.Serving.BytesOut
	}
	ev.Reason, ev.Message = cause, why
	t.events.publish(ev)
}

// sockError tells watchers of a call on s that failed on the network: a reset (once per
// socket), or an error with its reason. Timeouts, cancellations, closes and refused requests
// are not the socket's errors and tell nothing.
func (t *Table) sockError(s *sock, err error) {
	if err != nil && t.events.on() {
		t.publishError(s.info(), err, s)
	}
}

// callError is sockError for a Dial, Listen or Bind that opened no socket: the event names the
// caller, the network and the address.
func (t *Table) callError(caller, session, network, local, remote string, err error) {
	if err != nil && t.events.on() {
		t.publishError(Info{Owner: caller, Session: session, Network: network, Local: local, Remote: remote}, err, nil)
	}
}

func (t *Table) publishError(in Info, err error, s *sock) {
	reason := Reason(err)
	if !socketErrorReasons[reason] {
		return
	}
	k := EventError
	if reason == contract.ReasonConnectionReset {
		if s != nil && !s.note(notedReset) {
			return
		}
		k = EventReset
	}
	ev := infoEvent(k, in)
	ev.Reason, ev.Message = reason, err.Error()
	t.events.publish(ev)
}

// socketErrorReasons are the reasons of errors the network gave a call: what an error event
// reports.
var socketErrorReasons = map[string]bool{
	contract.ReasonConnectionRefused: true, contract.ReasonConnectionReset: true, contract.ReasonHostUnreachable: true,
	contract.ReasonNetworkUnreachable: true, contract.ReasonAddressInUse: true, contract.ReasonAddressNotAvailable: true,
	contract.ReasonBrokenPipe: true, contract.ReasonNotConnected: true, contract.ReasonNameNotResolved: true,
	contract.ReasonPathNotFound: true, contract.ReasonAccessDenied: true, contract.ReasonMessageTooLarge: true,
	contract.ReasonTooManyOpenFiles: true, contract.ReasonNoBufferSpace: true, contract.ReasonOSError: true,
}

// servedEnded tells watchers how a connection served on s ended: the peer's end of stream,
// a reset, or an error. A served connection has no id: the event names the served socket
// and the connection's peer.
func (t *Table) servedEnded(s *sock, remote string, err error) {
	if !t.events.on() {
		return
	}
	in := s.info()
	in.Remote = remote
	switch {
	case errors.Is(err, net.ErrClosed): // the agent closed it: the served socket's closed event says so
	case errors.Is(err, io.EOF), errors.Is(err, syscall.EPIPE): // a source's peer that went away
		t.events.publish(infoEvent(EventPeerClosed, in))
	case err != nil:
		t.publishError(in, err, nil)
	}
}

// sessionEnded tells watchers that session id of owner ended, with the cause and why.
func (t *Table) sessionEnded(owner, id, cause, why string) {
	if t.events.on() {
		t.events.publish(Event{Kind: EventSessionEnded, Caller: owner, Session: id, Reason: cause, Message: why})
	}
}

// refused tells watchers that admission refused a claim of caller (in session sess) by a
// limit.
func (t *Table) refused(caller, sess string, err error) {
	var le *limitError
	if t.events.on() && errors.As(err, &le) {
		t.events.publish(Event{Kind: EventLimitRefused, Caller: caller, Session: sess, Reason: le.Limit, Message: err.Error()})
	}
}

// socketOrder orders socket ids of one instance by their count.
func socketOrder(a, b string) int {
	_, na, _ := contract.ParseSocketID(a)
	_, nb, _ := contract.ParseSocketID(b)
	return cmp.Compare(na, nb)
}
