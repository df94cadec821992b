// Package engine is sockagent's socket engine: the table of live sockets, their FIFO gates and
// deadlines, the one admission path for every limit, sessions and idle reaping, the serving
// behaviours, the Attach data pump, and the Probe and Throughput measurements.
//
// It knows nothing of gRPC or of the generated API (a test in package agent proves it with go
// list): its calls take Go values and return errors that Reason maps to the contract's
// reasons; package agent converts requests, responses and errors at the boundary.
//
// Every socket belongs to the caller that opened it (CallerFrom(ctx).ID; an accepted socket to
// the caller of Accept). To any other caller it does not exist: calls on it answer
// ErrUnknownSocket, as for an id never opened, and List leaves it out. The policy decides, per
// caller, what may be opened and used; admit (admit.go) counts what every call holds against
// the agent's, the caller's and the session's limits.
package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

// Config configures a Table.
type Config struct {
	// DefaultTimeout applies to blocking calls whose timeout is 0.
	DefaultTimeout time.Duration
	// MaxRecvBytes bounds one Recv or RecvFrom.
	MaxRecvBytes int
	// MaxMessageBytes is the largest request message the transport accepts (0: no bound
	// beyond the policy's bytes_per_call): what an Attach may hold of a request at once.
	MaxMessageBytes int
	// Policy decides per caller what may be opened and used, and the limits; nil means
	// policy.Default().
	Policy *policy.Policy
	// Instance names the agent instance in UNKNOWN_SOCKET errors and, by its first
	// contract.SocketIDInstanceLen digits, in every socket id; contract.InstanceIDLen
	// lowercase hexadecimal digits, random per start. Empty: the table draws one. Started is
	// when it started.
	Instance string
	Started  time.Time
	// IdleTimeout closes a socket outside a session once no call has used it for this long;
	// 0 or negative never.
	IdleTimeout time.Duration
	// OnReclaim, if set, is told of every socket the engine closes on its own (session closed,
	// lease expired, idle), with the cause and why.
	OnReclaim func(in Info, cause, why string)
	// MaxSweepPace caps a sweep's first contacts to new addresses per second; 0 means
	// DefaultMaxSweepPace.
	MaxSweepPace int
}

// New builds a Table and starts its idle reaper; Stop ends both.
func New(cfg Config) *Table {
	t := newTable(cfg.DefaultTimeout, cfg.MaxRecvBytes, cfg.Policy)
	t.idle, t.onReclaim, t.maxMessage = cfg.IdleTimeout, cfg.OnReclaim, cfg.MaxMessageBytes
	t.maxSweepPace = cfg.MaxSweepPace
	if cfg.Instance != "" {
		t.instance = cfg.Instance
	}
	if !cfg.Started.IsZero() {
		t.started = cfg.Started
	}
	t.startIdleReaper()
	return t
}

// Table owns every live socket of the agent.
type Table struct {
	defaultTimeout time.Duration
	maxRecv        int
	maxMessage     int // Config.MaxMessageBytes
	maxSweepPace   int // Config.MaxSweepPace
	policy         *policy.Policy

	instance string    // the agent instance, named in UNKNOWN_SOCKET and carried by socket ids
	started  time.Time // when the agent instance started
	idle     time.Duration
	leftover atomic.Int64 // bytes held in every socket's leftover (agent_limits.buffered_bytes)

	mu       sync.Mutex
	next     uint64
	socks    map[string]*sock
	stopped  bool
	budget   budget // what admit counts (admit.go)
	sessions map[string]*session
	// sessionsBy and socksBy index sessions and sockets by owner: a caller's listing costs its
	// own, never the whole table's, so one caller's thousands cannot stall another's calls.
	sessionsBy map[string]map[string]*session
	socksBy    map[string]map[string]*sock
	idleTimer  *time.Timer            // the idle reaper, nil when idle <= 0
	reapEvery  time.Duration          // how often the idle reaper looks (startIdleReaper)
	reqs       map[string]*callerReqs // request_ids remembered, per caller
	// reclaimed remembers the sockets the agent closed on its own (ids never come back), so
	// that UNKNOWN_SOCKET says why; reclaimedOrder is oldest first, at most maxReclaimed.
	reclaimed      map[string]reclaim
	reclaimedOrder []string
	// onReclaim, when set, is told of every socket the agent closed on its own (closeAll).
	onReclaim func(in Info, cause, why string)
	// served are the local addresses of the served UDP sockets, which served sockets never
	// answer (serve.go); servedGen changes with them.
	served    servedAddrs
	servedGen atomic.Uint64
	// gone is what the sockets that left the table moved (stats.go).
	gone gone
	// events are the watchers of WatchEvents (events.go).
	events hub
}

func newTable(defaultTimeout time.Duration, maxRecv int, pol *policy.Policy) *Table {
	if pol == nil {
		pol = policy.Default()
	}
	return &Table{
		defaultTimeout: defaultTimeout, maxRecv: maxRecv, policy: pol,
		socks: map[string]*sock{}, budget: budget{by: map[string]*holding{}},
		sessions: map[string]*session{}, sessionsBy: map[string]map[string]*session{}, socksBy: map[string]map[string]*sock{}, reqs: map[string]*callerReqs{}, started: time.Now(),
		reclaimed: map[string]reclaim{}, instance: newInstanceID(),
	}
}

// newInstanceID draws an agent instance id of the contract's shape.
func newInstanceID() string {
	var b [contract.InstanceIDLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// who returns the caller of ctx and the policy rule set that applies to it.
func (t *Table) who(ctx context.Context) (Caller, *policy.RuleSet) {
	c := CallerFrom(ctx)
	return c, t.policy.For(policy.Identity{ID: c.ID, Subject: c.Subject, SANs: c.SANs, Token: c.Token})
}

// add registers a new socket in a socket slot of admission a, which it keeps; when the table
// is stopped, or the socket's session ended meanwhile, it closes it and refuses (the slot
// goes back with a's release).
func (t *Table) add(s *sock, a *admission) error {
	s.created = time.Now()
	s.lastUsed.Store(s.created.UnixNano())
	s.readGate, s.writeGate = newGate(), newGate()
	s.closed = make(chan struct{})
	s.held = &t.leftover
	t.mu.Lock()
	var refuse error
	if t.stopped {
		refuse = ErrAgentStopping
	} else if ss, ok := t.sessions[s.session]; s.session != "" && (!ok || ss.owner != s.owner) {
		refuse = fmt.Errorf("session %s: %w", s.session, ErrUnknownSession)
	}
	if refuse != nil {
		t.mu.Unlock()
		_ = s.close()
		return refuse
	}
	t.next++
	s.id = contract.FormatSocketID(t.instance, t.next)
	t.socks[s.id] = s
	own := t.socksBy[s.owner]
	if own == nil {
		own = map[string]*sock{}
		t.socksBy[s.owner] = own
	}
	own[s.id] = s
	if ss := t.sessions[s.session]; ss != nil {
		ss.members[s] = struct{}{}
	}
	a.kept++
	t.mu.Unlock()
	return nil
}

// forgetLocked takes s out of the table and frees its socket slot; the caller closes it.
func (t *Table) forgetLocked(s *sock) {
	if _, ok := t.socks[s.id]; ok {
		t.addGoneLocked(s)
	}
	delete(t.socks, s.id)
	if own := t.socksBy[s.owner]; own != nil {
		delete(own, s.id)
		if len(own) == 0 {
			delete(t.socksBy, s.owner)
		}
	}
	ss := t.sessions[s.session]
	if ss != nil {
		delete(ss.members, s)
	}
	t.freeSocketsLocked(s.owner, ss, 1)
}

// get returns the socket id of ctx's caller, marking it used; another caller's socket is
// ErrUnknownSocket.
func (t *Table) get(ctx context.Context, id string) (*sock, error) {
	s, err := t.peek(ctx, id)
	if err == nil {
		s.lastUsed.Store(time.Now().UnixNano())
		if sv := s.serving.Load(); sv != nil {
			return s, &busyError{fmt.Sprintf("socket is served with %s (Serve); no other call may use it: Close it to stop serving", sv.behaviour)}
		}
	}
	return s, err
}

// peek is get without marking the socket used (GetSocket, ListSockets).
func (t *Table) peek(ctx context.Context, id string) (*sock, error) {
	owner := CallerFrom(ctx).ID
	if err := t.sameInstance(ctx, id); err != nil {
		return nil, err
	}
	t.mu.Lock()
	s, ok := t.socks[id]
	t.mu.Unlock()
	if !ok || s.owner != owner {
		return nil, t.unknownSocket(owner, id)
	}
	return s, nil
}

// Len counts open sockets.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.socks)
}

// List returns every open socket of ctx's caller, oldest first.
func (t *Table) List(ctx context.Context) []Info {
	owner := CallerFrom(ctx).ID
	t.mu.Lock()
	own := t.socksBy[owner]
	ss := make([]*sock, 0, len(own))
	for _, s := range own {
		ss = append(ss, s)
	}
	t.mu.Unlock()
	out := make([]Info, len(ss))
	for i, s := range ss {
		out[i] = s.info()
	}
	sort.Slice(out, func(i, j int) bool {
		_, a, _ := contract.ParseSocketID(out[i].ID)
		_, b, _ := contract.ParseSocketID(out[j].ID)
		return a < b
	})
	return out
}

// Get returns one socket's snapshot, whoever owns it: for the agent's own use (audit lines),
// never to answer a caller (GetFor checks the owner).
func (t *Table) Get(id string) (Info, error) {
	t.mu.Lock()
	s, ok := t.socks[id]
	t.mu.Unlock()
	if !ok {
		return Info{}, &OpError{Op: "get", SocketID: id, Err: ErrUnknownSocket}
	}
	return s.info(), nil
}

// GetFor returns the snapshot of one socket of ctx's caller, with its effective options.
func (t *Table) GetFor(ctx context.Context, id string) (Info, error) {
	s, err := t.peek(ctx, id)
	if err != nil {
		return Info{}, &OpError{Op: "get", SocketID: id, Err: err}
	}
	return s.detailed(), nil
}

// Close closes one socket of ctx's caller and returns its final snapshot.
func (t *Table) Close(ctx context.Context, id string) (Info, error) {
	owner := CallerFrom(ctx).ID
	if err := t.sameInstance(ctx, id); err != nil {
		return Info{}, &OpError{Op: "close", SocketID: id, Err: err}
	}
	t.mu.Lock()
	s, ok := t.socks[id]
	ok = ok && s.owner == owner
	if ok {
		t.forgetLocked(s)
	}
	t.mu.Unlock()
	if !ok {
		return Info{}, &OpError{Op: "close", SocketID: id, Err: t.unknownSocket(owner, id)}
	}
	// Close first, then read the counters: closing stops a serving behaviour and waits for its
	// goroutines, so the response's counters are final (an echo's last write is counted).
	_ = s.close() // the socket is gone either way; a close error has no remedy
	in := s.info()
	in.State = StateClosed
	t.closedEvent(in, ClosedByCaller, "closed by its caller")
	return in, nil
}

// Stop refuses new sockets and closes every open one; blocked calls return AGENT_STOPPING.
func (t *Table) Stop() {
	t.mu.Lock()
	t.stopped = true
	t.stopTimersLocked()
	socks := t.socks
	t.socks, t.socksBy = map[string]*sock{}, map[string]map[string]*sock{}
	t.budget.sockets = 0
	for caller, h := range t.budget.by {
		t.budget.add(caller, holding{sockets: -h.sockets})
	}
	t.mu.Unlock()
	t.events.stop()
	for _, s := range socks { // first mark them all: a peer closed first must not look like EOF
		s.markClosed()
	}
	for _, s := range socks {
		_ = s.close()
	}
}

func (t *Table) isStopped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopped
}

// RuleSet returns the policy rule set that applies to ctx's caller.
func (t *Table) RuleSet(ctx context.Context) *policy.RuleSet {
	_, set := t.who(ctx)
	return set
}

// Policy returns the table's policy.
func (t *Table) Policy() *policy.Policy { return t.policy }
