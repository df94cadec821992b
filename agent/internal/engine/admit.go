package engine

import (
	"fmt"
	"net"

	"github.com/sockagent/sockagent/agent/policy"
)

// claim is what a call asks of the budgets while it runs. Every RPC that opens a socket,
// blocks, holds bytes or measures makes exactly one claim, through admit, and gives it back
// through release: there is no other way to take a socket slot, a blocking-call slot or a
// buffered byte.
type claim struct {
	// blocking: one blocking call (agent_limits, limits and session_limits .blocking_calls).
	blocking bool
	// bytes held while the call runs (agent_limits and session_limits .buffered_bytes).
	bytes int
	// sockets: slots the call may fill with sockets (agent_limits, limits and session_limits
	// .sockets); a slot a registered socket keeps is freed when that socket closes.
	sockets int
	// drains: the call is a Recv, which takes the bytes left over from interrupted exact
	// reads, so those bytes must not refuse it.
	drains bool
	// waits: the call waits for a peer (Accept, Recv, RecvFrom, Attach). Waiting calls may hold
	// at most waitShare of each blocking-call limit, so calls that complete them (Send, SendTo,
	// Dial) always find room: a budget full of Recvs cannot refuse the Sends they wait for.
	waits bool
	// watch: the call is an event watch (limits.watches per caller).
	watch bool
}

// waitShare is how many of limit blocking calls may wait for a peer: all but a quarter.
func waitShare(limit int) int { return limit - limit/4 }

// budget is what the admission path counts, all under table.mu.
type budget struct {
	calls, bytes int // agent-wide: blocking calls and their buffered bytes
	sockets      int // agent-wide: open sockets, served connections and reserved slots
	waits        int // agent-wide: blocking calls waiting for a peer (claim.waits)
	// by holds each caller's counts, one record per caller that holds anything: a call finds
	// them with one lookup, and a caller with sockets open keeps its record between calls.
	// New makes it.
	by map[string]*holding
}

// holding is what one caller holds.
type holding struct {
	calls   int // blocking calls in progress
	bytes   int // buffered bytes of its calls in progress
	waits   int // blocking calls waiting for a peer (claim.waits)
	sockets int // open sockets, served connections and reserved slots
	watches int // event watches (claim.watch)
}

// of returns what caller holds (a zero record, not stored, when nothing).
func (b *budget) of(caller string) holding {
	if h := b.by[caller]; h != nil {
		return *h
	}
	return holding{}
}

// add changes what caller holds by d (its fields added, each kept at 0 or more) and drops the
// record once it holds nothing.
func (b *budget) add(caller string, d holding) {
	if d == (holding{}) {
		return
	}
	h := b.by[caller]
	if h == nil {
		h = &holding{}
		b.by[caller] = h
	}
	h.calls = max(h.calls+d.calls, 0)
	h.bytes = max(h.bytes+d.bytes, 0)
	h.waits = max(h.waits+d.waits, 0)
	h.sockets = max(h.sockets+d.sockets, 0)
	h.watches = max(h.watches+d.watches, 0)
	if *h == (holding{}) {
		delete(b.by, caller)
	}
}

// admission is a granted claim. release gives back whatever it still holds; a socket the table
// registers (add) keeps one of its socket slots, freed when that socket closes.
type admission struct {
	t      *Table
	caller string
	set    *policy.RuleSet
	sess   *session // nil outside a session
	c      claim
	kept   int
	// released is set, under table.mu, once release gave everything back: grow refuses then,
	// and release does nothing more.
	released bool
}

// admit checks a claim of caller (in session sess, "" for none) against the agent's, the
// caller's and the session's limits together, and takes it whole or not at all. The order of
// the checks fixes which limit a refusal names: agent-wide calls and bytes, the caller's
// calls and bytes, the session's calls and bytes, then sockets agent-wide, the caller's and
// the session's. Watchers hear of every refusal (events.go).
func (t *Table) admit(caller, sess string, set *policy.RuleSet, c claim) (*admission, error) {
	a, err := t.take(caller, sess, set, c)
	if err != nil {
		t.refused(caller, sess, err)
	}
	return a, err
}

// take is admit's check and count, under t.mu.
func (t *Table) take(caller, sess string, set *policy.RuleSet, c claim) (*admission, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return nil, ErrAgentStopping
	}
	ss := t.sessions[sess]
	if err := t.checkCallsLocked(caller, sess, ss, set, c); err != nil {
		return nil, err
	}
	if err := t.checkWaitsLocked(caller, sess, ss, set, c); err != nil {
		return nil, err
	}
	if err := t.checkSocketsLocked(caller, sess, ss, set, c.sockets); err != nil {
		return nil, err
	}
	d := holding{bytes: c.bytes, sockets: c.sockets}
	if c.watch {
		if n := t.budget.of(caller).watches; n >= set.Limits.Watches {
			return nil, &limitError{Limit: "limits.watches", Max: set.Limits.Watches, RuleSet: set.Name,
				Detail: fmt.Sprintf("caller %q has %d event watches open; end one first", caller, n)}
		}
		d.watches = 1
	}
	if c.blocking {
		d.calls = 1
	}
	if c.waits {
		d.waits = 1
	}
	t.countLocked(caller, ss, d)
	return &admission{t: t, caller: caller, set: set, sess: ss, c: c}, nil
}

func (t *Table) checkCallsLocked(caller, sess string, ss *session, set *policy.RuleSet, c claim) error {
	b := &t.budget
	maxCalls, maxBytes := t.policy.MaxBlockingCalls, t.policy.MaxBufferedBytes
	if c.blocking && b.calls >= maxCalls {
		return &limitError{Limit: "agent_limits.blocking_calls", Max: maxCalls,
			Detail: fmt.Sprintf("the agent has %d blocking calls in progress; wait for some to end", b.calls)}
	}
	if c.bytes > maxBytes {
		return &limitError{Limit: "agent_limits.buffered_bytes", Max: maxBytes,
			Detail: fmt.Sprintf("%d bytes in one call; use smaller calls", c.bytes)}
	}
	left := 0
	if !c.drains {
		left = int(t.leftover.Load())
	}
	if c.bytes > 0 && b.bytes+left+c.bytes > maxBytes {
		held := fmt.Sprintf("%d bytes for calls in progress", b.bytes)
		if left > 0 {
			held += fmt.Sprintf(" and %d left over from interrupted exact reads (Recv or Close those sockets)", left)
		}
		return &limitError{Limit: "agent_limits.buffered_bytes", Max: maxBytes,
			Detail: fmt.Sprintf("the agent holds %s and this call needs %d; wait for some to end", held, c.bytes)}
	}
	mine := b.of(caller)
	if n := mine.calls; c.blocking && n >= set.Limits.BlockingCalls {
		return &limitError{Limit: "limits.blocking_calls", Max: set.Limits.BlockingCalls, RuleSet: set.Name,
			Detail: fmt.Sprintf("caller %q has %d blocking calls in progress; wait for some to end", caller, n)}
	}
	if n := mine.bytes; c.bytes > 0 && n+c.bytes > set.Limits.BufferedBytes {
		return &limitError{Limit: "limits.buffered_bytes", Max: set.Limits.BufferedBytes, RuleSet: set.Name,
			Detail: fmt.Sprintf("caller %q holds %d bytes for calls in progress and this call needs %d; wait for some to end or use smaller calls", caller, n, c.bytes)}
	}
	if ss == nil {
		return nil
	}
	lim := set.SessionLimits
	switch {
	case c.blocking && ss.calls >= lim.BlockingCalls:
		return &limitError{Limit: "session_limits.blocking_calls", Max: lim.BlockingCalls, RuleSet: set.Name,
			Detail: fmt.Sprintf("session %s has %d blocking calls in progress; wait for some to end", sess, ss.calls)}
	case c.bytes > 0 && ss.bytes+c.bytes > lim.BufferedBytes:
		return &limitError{Limit: "session_limits.buffered_bytes", Max: lim.BufferedBytes, RuleSet: set.Name,
			Detail: fmt.Sprintf("session %s holds %d bytes for calls in progress and this call needs %d; wait for some to end or use smaller calls", sess, ss.bytes, c.bytes)}
	}
	return nil
}

// checkWaitsLocked keeps a quarter of every blocking-call limit for calls that do not wait for
// a peer (waitShare).
func (t *Table) checkWaitsLocked(caller, sess string, ss *session, set *policy.RuleSet, c claim) error {
	if !c.waits {
		return nil
	}
	b := &t.budget
	why := "blocking calls wait for a peer (Accept, Recv, RecvFrom, Attach), all they may hold: a quarter of the limit is kept for the calls that complete them (Send, SendTo, Dial); wait for some to end"
	switch maxCalls := t.policy.MaxBlockingCalls; {
	case b.waits >= waitShare(maxCalls):
		return &limitError{Limit: "agent_limits.blocking_calls", Max: maxCalls,
			Detail: fmt.Sprintf("%d of the agent's %s", b.waits, why)}
	case b.of(caller).waits >= waitShare(set.Limits.BlockingCalls):
		return &limitError{Limit: "limits.blocking_calls", Max: set.Limits.BlockingCalls, RuleSet: set.Name,
			Detail: fmt.Sprintf("%d of caller %q's %s", b.of(caller).waits, caller, why)}
	case ss != nil && ss.waits >= waitShare(set.SessionLimits.BlockingCalls):
		return &limitError{Limit: "session_limits.blocking_calls", Max: set.SessionLimits.BlockingCalls, RuleSet: set.Name,
			Detail: fmt.Sprintf("%d of session %s's %s", ss.waits, sess, why)}
	}
	return nil
}

func (t *Table) checkSocketsLocked(caller, sess string, ss *session, set *policy.RuleSet, n int) error {
	if n == 0 {
		return nil
	}
	b := &t.budget
	switch {
	case b.sockets+n > t.policy.MaxSockets:
		return &limitError{Limit: "agent_limits.sockets", Max: t.policy.MaxSockets,
			Detail: fmt.Sprintf("the agent has %d open sockets and served connections; close some first", b.sockets)}
	case b.of(caller).sockets+n > set.Limits.Sockets:
		return &limitError{Limit: "limits.sockets", Max: set.Limits.Sockets, RuleSet: set.Name,
			Detail: fmt.Sprintf("caller %q has %d open sockets and served connections; close some first", caller, b.of(caller).sockets)}
	case ss != nil && ss.socks+n > set.SessionLimits.Sockets:
		return &limitError{Limit: "session_limits.sockets", Max: set.SessionLimits.Sockets, RuleSet: set.Name,
			Detail: fmt.Sprintf("session %s has %d open sockets; close some first", sess, ss.socks)}
	}
	return nil
}

// release gives back the blocking call, the bytes and every socket slot not kept. It is safe
// to call more than once.
func (a *admission) release() {
	if a == nil {
		return
	}
	t := a.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if a.released {
		return
	}
	a.released = true
	d := holding{bytes: -a.c.bytes}
	if a.c.blocking {
		d.calls = -1
	}
	if a.c.waits {
		d.waits = -1
	}
	if a.c.watch {
		d.watches = -1
	}
	if n := a.c.sockets - a.kept; n > 0 {
		d.sockets = -n
	}
	t.countLocked(a.caller, a.sess, d)
}

// grow adds n bytes to what admission a holds while it lives, checked against the agent's,
// the caller's and the session's buffered_bytes as a claim of n more would be: the bytes a
// proxied connection's toxics hold between reading and writing count against the caller
// that served it. It fails with net.ErrClosed once a was released, and publishes no event (the
// caller decides what a refusal is worth reporting: refusedBytes).
func (a *admission) grow(n int) error {
	t := a.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if a.released {
		return net.ErrClosed
	}
	sess := ""
	if a.sess != nil {
		sess = a.sess.id
	}
	if err := t.checkCallsLocked(a.caller, sess, a.sess, a.set, claim{bytes: n}); err != nil {
		return err
	}
	a.c.bytes += n
	t.addBytesLocked(a.caller, a.sess, n)
	return nil
}

// shrink gives back n of the bytes grow added (no more than a holds); nothing once a was
// released.
func (a *admission) shrink(n int) {
	if n <= 0 {
		return
	}
	t := a.t
	t.mu.Lock()
	defer t.mu.Unlock()
	n = min(n, a.c.bytes)
	if a.released || n == 0 {
		return
	}
	a.c.bytes -= n
	t.addBytesLocked(a.caller, a.sess, -n)
}

// countLocked adds d to what the agent, caller and session ss (nil: none) hold: what admit
// claims (d > 0), and release, grow, shrink and closing sockets add or give back. The agent's
// counts and a session's sockets stay at 0 or more.
func (t *Table) countLocked(caller string, ss *session, d holding) {
	b := &t.budget
	b.calls = max(b.calls+d.calls, 0)
	b.waits = max(b.waits+d.waits, 0)
	b.bytes = max(b.bytes+d.bytes, 0)
	b.sockets = max(b.sockets+d.sockets, 0)
	b.add(caller, d)
	if ss != nil {
		ss.calls += d.calls
		ss.waits += d.waits
		ss.bytes += d.bytes
		ss.socks = max(ss.socks+d.sockets, 0)
	}
}

// addBytesLocked counts n buffered bytes more (n < 0: fewer): what grow adds and shrink gives
// back.
func (t *Table) addBytesLocked(caller string, ss *session, n int) {
	t.countLocked(caller, ss, holding{bytes: n})
}

// freeSocketsLocked frees n socket slots of owner (and of session ss, when not nil).
func (t *Table) freeSocketsLocked(owner string, ss *session, n int) {
	t.countLocked(owner, ss, holding{sockets: -n})
}
