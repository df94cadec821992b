package engine

// Sessions (leases on sockets), idle reaping and idempotent creation: table logic, no gRPC.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
)

// Session and idle defaults and bounds.
const (
	DefaultSessionTTL  = 30 * time.Second
	MinSessionTTL      = time.Second
	MaxSessionTTL      = 24 * time.Hour
	DefaultIdleTimeout = 10 * time.Minute
	maxSessionName     = 128
	maxRequestID       = 128
	// requestMemory and maxRequests bound how long and how many request_ids are remembered.
	requestMemory = 10 * time.Minute
	maxRequests   = 10000
)

type sessionKey struct{}

// WithSession returns ctx asking that the sockets a call opens join session id.
func WithSession(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, sessionKey{}, id)
}

func sessionFrom(ctx context.Context) string {
	id, _ := ctx.Value(sessionKey{}).(string)
	return id
}

// SessionInfo is a snapshot of one session.
type SessionInfo struct {
	ID, Name, Owner  string
	TTL              time.Duration
	Created, Expires time.Time
	Sockets          int
}

type session struct {
	id, name, owner  string
	ttl              time.Duration
	created, expires time.Time
	timer            *time.Timer // fires expire at the end of the lease
	// socks, calls and bytes count against session_limits: open sockets plus reserved slots,
	// blocking calls in progress and the bytes they hold. Guarded by table.mu.
	socks, calls, bytes, waits int
	// members are the session's sockets in the table, so that ending or listing a session
	// costs its own sockets, never the whole table. Guarded by table.mu.
	members map[*sock]struct{}
}

type instanceKey struct{}

// WithInstance returns ctx expecting that the socket a call names belongs to agent instance
// expected (an instance id or its short form, contract.InstanceHeader): a call on another
// instance answers ErrUnknownSocket naming the restart, whatever the id.
func WithInstance(ctx context.Context, expected string) context.Context {
	return context.WithValue(ctx, instanceKey{}, expected)
}

func instanceFrom(ctx context.Context) string {
	v, _ := ctx.Value(instanceKey{}).(string)
	return v
}

// sameInstance checks that a call naming socket id is meant for this agent instance: the
// instance ctx expects (WithInstance) and the one id carries must both be this one. Else the
// agent restarted since the caller learnt them, and the id names no socket of its: an
// ErrUnknownSocket naming both instances (ErrAgentStopping while the agent stops).
func (t *Table) sameInstance(ctx context.Context, id string) error {
	var other string
	var byHeader bool
	if expected := instanceFrom(ctx); expected != "" {
		if !contract.ValidInstance(expected) {
			return BadArg(contract.ReasonInvalidArgument, "header %s: %d bytes that are no agent instance: give GetInfo.instance_id (%d hex digits) or the %d hex digits after \"s\" of a socket id, or no header",
				contract.InstanceHeader, len(expected), contract.InstanceIDLen, contract.SocketIDInstanceLen)
		}
		if !contract.SameInstance(expected, t.instance) {
			other, byHeader = expected, true
		}
	}
	if inst, _, ok := contract.ParseSocketID(id); ok && other == "" && inst != contract.ShortInstance(t.instance) {
		other = inst
	}
	if other == "" {
		return nil
	}
	if t.isStopped() {
		return ErrAgentStopping
	}
	return &unknownSocketError{instance: t.instance, started: t.started, other: other, byHeader: byHeader}
}

// unknownSocket is the error for a socket id owner has no socket under.
// A stopping agent has dropped every socket: it says it is stopping, not that it restarted.
func (t *Table) unknownSocket(owner, id string) error {
	e := &unknownSocketError{instance: t.instance, started: t.started}
	if inst, _, ok := contract.ParseSocketID(id); ok && inst == contract.ShortInstance(t.instance) {
		e.ours = true
	}
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return ErrAgentStopping
	}
	if r, ok := t.reclaimed[id]; ok && r.owner == owner {
		e.why = r.why
	}
	t.mu.Unlock()
	return e
}

// maxReclaimed bounds how many sockets the agent closed on its own it remembers, to say why.
const maxReclaimed = 10000

type reclaim struct{ owner, why string }

func newSessionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// sessionOfCall returns the session ctx asks for, checked: empty when none, ErrUnknownSession
// when it is not an open session of the caller.
func (t *Table) sessionOfCall(ctx context.Context) (string, error) {
	id := sessionFrom(ctx)
	if id == "" {
		return "", nil
	}
	owner := CallerFrom(ctx).ID
	t.mu.Lock()
	s, ok := t.sessions[id]
	t.mu.Unlock()
	if !ok || s.owner != owner {
		return "", fmt.Errorf("session %s: %w", id, ErrUnknownSession)
	}
	return id, nil
}

func (t *Table) sessionInfoLocked(s *session) SessionInfo {
	return SessionInfo{ID: s.id, Name: s.name, Owner: s.owner, TTL: s.ttl, Created: s.created, Expires: s.expires, Sockets: len(s.members)}
}

// OpenSession starts a session of ctx's caller whose lease lasts ttl (0 = DefaultSessionTTL).
func (t *Table) OpenSession(ctx context.Context, ttl time.Duration, name string) (SessionInfo, error) {
	if ttl == 0 {
		ttl = DefaultSessionTTL
	}
	if ttl < MinSessionTTL || ttl > MaxSessionTTL {
		return SessionInfo{}, badArg(contract.ReasonInvalidArgument, "open session: ttl %s out of range; give 0 (%s) or %s up to %s", ttl, DefaultSessionTTL, MinSessionTTL, MaxSessionTTL)
	}
	if len(name) > maxSessionName {
		return SessionInfo{}, badArg(contract.ReasonInvalidArgument, "open session: name is %d bytes, at most %d", len(name), maxSessionName)
	}
	now := time.Now()
	owner, set := t.who(ctx)
	s := &session{id: newSessionID(), name: name, owner: owner.ID, ttl: ttl, created: now, expires: now.Add(ttl), members: map[*sock]struct{}{}}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return SessionInfo{}, ErrAgentStopping
	}
	own := t.sessionsBy[s.owner]
	if len(own) >= set.Limits.Sessions {
		return SessionInfo{}, &OpError{Op: "open session", Err: &limitError{Limit: "limits.sessions", Max: set.Limits.Sessions, RuleSet: set.Name,
			Detail: fmt.Sprintf("caller %q has %d open sessions; close some (CloseSession) or let their leases expire", s.owner, len(own))}}
	}
	if own == nil {
		own = map[string]*session{}
		t.sessionsBy[s.owner] = own
	}
	own[s.id] = s
	t.sessions[s.id] = s
	s.timer = time.AfterFunc(ttl, func() { t.expire(s) })
	return t.sessionInfoLocked(s), nil
}

// ownedSessionLocked returns the open session id of ctx's caller.
func (t *Table) ownedSessionLocked(ctx context.Context, id string) (*session, error) {
	s, ok := t.sessions[id]
	if !ok || s.owner != CallerFrom(ctx).ID {
		return nil, fmt.Errorf("session %s: %w", id, ErrUnknownSession)
	}
	return s, nil
}

// KeepAlive extends the lease of a session of ctx's caller to now + its ttl.
func (t *Table) KeepAlive(ctx context.Context, id string) (SessionInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, err := t.ownedSessionLocked(ctx, id)
	if err != nil {
		return SessionInfo{}, err
	}
	s.expires = time.Now().Add(s.ttl)
	s.timer.Reset(s.ttl)
	return t.sessionInfoLocked(s), nil
}

// CloseSession ends a session of ctx's caller and closes its sockets.
func (t *Table) CloseSession(ctx context.Context, id string) (SessionInfo, int, error) {
	t.mu.Lock()
	s, err := t.ownedSessionLocked(ctx, id)
	if err != nil {
		t.mu.Unlock()
		return SessionInfo{}, 0, err
	}
	in := t.sessionInfoLocked(s)
	socks := t.endSessionLocked(s)
	t.mu.Unlock()
	t.closeAll(socks, "session_closed", "session "+id+" was closed")
	t.sessionEnded(s.owner, id, "session_closed", "session "+id+" was closed")
	return in, len(socks), nil
}

// expire ends s when its lease is over; a KeepAlive that came meanwhile re-arms the timer.
func (t *Table) expire(s *session) {
	t.mu.Lock()
	if t.sessions[s.id] != s {
		t.mu.Unlock()
		return
	}
	if left := time.Until(s.expires); left > 0 {
		s.timer.Reset(left)
		t.mu.Unlock()
		return
	}
	socks := t.endSessionLocked(s)
	t.mu.Unlock()
	why := fmt.Sprintf("the lease of session %s expired (no KeepAlive within %s)", s.id, s.ttl)
	t.closeAll(socks, "lease_expired", why)
	t.sessionEnded(s.owner, s.id, "lease_expired", why)
}

// endSessionLocked forgets s and takes its sockets out of the table; the caller closes them.
func (t *Table) endSessionLocked(s *session) []*sock {
	s.timer.Stop()
	delete(t.sessions, s.id)
	if own := t.sessionsBy[s.owner]; own != nil {
		delete(own, s.id)
		if len(own) == 0 {
			delete(t.sessionsBy, s.owner)
		}
	}
	out := make([]*sock, 0, len(s.members))
	for k := range s.members {
		t.forgetLocked(k)
		out = append(out, k)
	}
	return out
}

// closeAll closes sockets the agent took out of the table on its own, remembering why, and
// reports each to t.reclaimed (cause is "session_closed", "lease_expired", "idle", "revoked"
// or "abandoned").
func (t *Table) closeAll(socks []*sock, cause, why string) {
	if len(socks) == 0 {
		return
	}
	t.mu.Lock()
	for _, s := range socks {
		t.reclaimed[s.id] = reclaim{owner: s.owner, why: why}
		t.reclaimedOrder = append(t.reclaimedOrder, s.id)
	}
	for len(t.reclaimedOrder) > maxReclaimed {
		delete(t.reclaimed, t.reclaimedOrder[0])
		t.reclaimedOrder = t.reclaimedOrder[1:]
	}
	t.mu.Unlock()
	for _, s := range socks { // first mark them all: a peer closed first must not look like EOF
		s.why.Store(&why)
		s.markClosed()
	}
	for _, s := range socks {
		in := s.info()
		_ = s.close() // the socket is gone either way; a close error has no remedy
		if t.onReclaim != nil {
			t.onReclaim(in, cause, why)
		}
		t.closedEvent(s.info(), cause, why)
	}
}

// ListSessions returns the open sessions of ctx's caller, oldest first.
func (t *Table) ListSessions(ctx context.Context) []SessionInfo {
	owner := CallerFrom(ctx).ID
	t.mu.Lock()
	own := t.sessionsBy[owner]
	out := make([]SessionInfo, 0, len(own))
	for _, s := range own {
		out = append(out, t.sessionInfoLocked(s))
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// NumSessions counts open sessions, all callers.
func (t *Table) NumSessions() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

// startIdleReaper arms the idle reaper when t.idle > 0: sockets outside a session with no
// pending call and unused for t.idle are closed. A served socket is used while it serves: an
// open connection, or any connection or datagram since the reaper last looked, counts as a
// call (noteServedActivity), so a busy server is never reaped and a forgotten one is. It
// checks every idle/4 (10ms to 30s).
func (t *Table) startIdleReaper() {
	if t.idle <= 0 {
		return
	}
	every := min(max(t.idle/4, 10*time.Millisecond), 30*time.Second)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reapEvery = every
	var reap func()
	reap = func() {
		now := time.Now()
		t.mu.Lock()
		if t.stopped {
			t.mu.Unlock()
			return
		}
		var socks []*sock
		for _, s := range t.socks {
			s.noteServedActivity(now)
			if s.session == "" && s.pending.Load() == 0 && now.Sub(time.Unix(0, s.lastUsed.Load())) >= t.idle {
				t.forgetLocked(s)
				socks = append(socks, s)
			}
		}
		t.idleTimer.Reset(every)
		t.mu.Unlock()
		t.closeAll(socks, "idle", fmt.Sprintf("idle for the agent's idle timeout (%s); open sockets in a session to keep them", t.idle))
	}
	t.idleTimer = time.AfterFunc(every, reap)
}

// stopTimersLocked stops the session timers and the idle reaper (with t.mu held, at Stop).
func (t *Table) stopTimersLocked() {
	for _, s := range t.sessions {
		s.timer.Stop()
	}
	t.sessions, t.sessionsBy = map[string]*session{}, map[string]map[string]*session{}
	if t.idleTimer != nil {
		t.idleTimer.Stop()
	}
}

type reqEntry struct {
	id   string
	op   string
	at   time.Time
	done chan struct{} // closed when info and err are set
	info Info
	err  error
}

// callerReqs are the request_ids one caller used within requestMemory: each caller's memory
// is its own, so no caller's requests can push another's out.
type callerReqs struct {
	byID  map[string]*reqEntry
	order []*reqEntry // oldest first; an entry replaced or forgotten stays until pruned
}

// prune forgets the entries over maxRequests and those older than requestMemory.
func (r *callerReqs) prune(now time.Time) {
	for len(r.order) > 0 && (len(r.order) > maxRequests || now.Sub(r.order[0].at) > requestMemory) {
		if e := r.order[0]; r.byID[e.id] == e {
			delete(r.byID, e.id)
		}
		r.order[0] = nil
		r.order = r.order[1:]
	}
}

// forgetRequestLocked forgets a failed request, so that its retry runs again.
func (t *Table) forgetRequestLocked(caller string, e *reqEntry) {
	if r := t.reqs[caller]; r != nil && r.byID[e.id] == e {
		delete(r.byID, e.id)
	}
}

// idempotent runs fn, the creation op of ctx's caller, once per request_id: a repeat within
// requestMemory returns the first result (waiting for it while it runs). A failure is
// forgotten, so its retry runs fn again. An empty request_id always runs fn.
func (t *Table) idempotent(ctx context.Context, op, requestID string, fn func() (Info, error)) (Info, error) {
	if requestID == "" {
		in, err := fn()
		if err == nil && ctx.Err() != nil {
			// Its caller gave up while it ran: the answer reaches nobody, and without a
			// request_id nobody can ask again. The socket was registered first, so a caller
			// that lists its sockets after giving up finds it, or this finds the cancel: gRPC
			// reads a connection's frames in order, the cancel before the next call.
			t.abandoned(in.ID)
			return Info{}, ctx.Err()
		}
		return in, err
	}
	if len(requestID) > maxRequestID {
		return Info{}, badArg(contract.ReasonInvalidArgument, "%s: request_id is %d bytes, at most %d", op, len(requestID), maxRequestID)
	}
	caller := CallerFrom(ctx).ID
	for {
		now := time.Now()
		t.mu.Lock()
		r := t.reqs[caller]
		if r == nil {
			r = &callerReqs{byID: map[string]*reqEntry{}}
			t.reqs[caller] = r
		}
		r.prune(now)
		e, ok := r.byID[requestID]
		if !ok {
			e = &reqEntry{id: requestID, op: op, at: now, done: make(chan struct{})}
			r.byID[requestID] = e
			r.order = append(r.order, e)
			t.mu.Unlock()
			e.info, e.err = fn()
			if e.err != nil {
				t.mu.Lock()
				t.forgetRequestLocked(caller, e)
				t.mu.Unlock()
			}
			close(e.done)
			return e.info, e.err
		}
		t.mu.Unlock()
		if e.op != op {
			return Info{}, badArg(contract.ReasonInvalidArgument, "%s: request_id %q was already used for a %s; give each request its own id", op, requestID, e.op)
		}
		select {
		case <-e.done:
		case <-ctx.Done():
			return Info{}, ctx.Err()
		}
		if e.err == nil {
			return e.info, nil
		}
		// The first call failed and was forgotten: this one runs it again.
	}
}

// abandoned closes socket id, opened for a caller that gave up before the answer came (its
// RPC cancelled, or past its deadline), as the agent's own close with cause "abandoned".
func (t *Table) abandoned(id string) {
	t.mu.Lock()
	s, ok := t.socks[id]
	if ok {
		t.forgetLocked(s)
	}
	t.mu.Unlock()
	if ok {
		t.closeAll([]*sock{s}, "abandoned", "its caller gave up before the answer came (cancelled, or past its deadline); give a request_id to be able to ask again")
	}
}

// CloseOwner closes every socket of owner and ends its sessions, for when the agent withdraws
// owner's right to them (its token was revoked): served sockets stop answering, calls blocked
// on the sockets return SOCKET_CLOSED saying why, and the owner's request_ids are forgotten.
// Each socket is reported to OnReclaim with cause "revoked". It returns how many sockets it
// closed.
func (t *Table) CloseOwner(owner, why string) int {
	t.mu.Lock()
	var socks []*sock
	var ended []string
	for _, s := range t.sessionsBy[owner] {
		socks = append(socks, t.endSessionLocked(s)...)
		ended = append(ended, s.id)
	}
	for _, s := range t.socksBy[owner] {
		t.forgetLocked(s)
		socks = append(socks, s)
	}
	delete(t.reqs, owner)
	t.mu.Unlock()
	t.closeAll(socks, "revoked", why)
	for _, id := range ended {
		t.sessionEnded(owner, id, "revoked", why)
	}
	return len(socks)
}
