package auth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrRevoked is the cause of the context of a call whose token was revoked.
var ErrRevoked = errors.New("the token of the call was revoked")

// Registry holds the agent's current token set and the calls in progress that a token
// authenticated, so that replacing the set ends the calls of the tokens it revokes. The zero
// value has no tokens: token authentication is off, and Replace refuses to turn it on.
type Registry struct {
	cur atomic.Pointer[Tokens]
	// mu orders Replace's swap of cur with the registration of calls, so that no call
	// authenticated by a revoked token registers after Replace looked for it.
	mu    sync.Mutex
	calls map[*Call]struct{}
}

// NewRegistry returns a registry whose current set is t (nil: no token authentication).
func NewRegistry(t *Tokens) *Registry {
	r := &Registry{calls: map[*Call]struct{}{}}
	if t != nil {
		r.cur.Store(t)
	}
	return r
}

// Current is the token set RPCs are checked against; nil when the agent has none.
func (r *Registry) Current() *Tokens { return r.cur.Load() }

// Call is an RPC in progress that a token authenticated.
type Call struct {
	r       *Registry
	name    string // the token's name
	sum     Sum    // its secret's sum: a new secret under the same name revokes the old
	owner   string // the caller, when the token names it ("token:NAME"); else ""
	cancel  context.CancelCauseFunc
	revoked bool // set by Replace, under r.mu
}

// Replace makes t the current token set (a SIGHUP reload). A token that t no longer holds
// (its name gone, or its secret changed) is revoked: the context of every call it
// authenticated is cancelled with ErrRevoked. removed are the names of the old set that t
// does not have: their owners' sockets are the caller's to close. It fails when t is empty or
// the registry has no tokens (authentication cannot be turned on or off at run time).
func (r *Registry) Replace(t *Tokens) (removed []string, err error) {
	if t == nil || t.Len() == 0 {
		return nil, errors.New("set tokens: no tokens")
	}
	r.mu.Lock()
	old := r.cur.Load()
	if old == nil {
		r.mu.Unlock()
		return nil, errors.New("set tokens: the agent was started without token authentication")
	}
	r.cur.Store(t)
	var ended []*Call
	for c := range r.calls {
		if !t.Holds(c.name, c.sum) {
			c.revoked = true
			ended = append(ended, c)
		}
	}
	r.mu.Unlock()
	for _, c := range ended {
		c.cancel(ErrRevoked)
	}
	for _, name := range old.names {
		if _, kept := t.SumOf(name); !kept {
			removed = append(removed, name)
		}
	}
	return removed, nil
}

// Track registers a call that token name of set gen authenticated; owner is the caller when
// the token names it ("token:NAME"), else "". Revoking the token cancels the returned
// context. ok is false when the token was revoked between authentication and now: the call
// must not run (its context is cancelled already).
func (r *Registry) Track(ctx context.Context, name, owner string, gen *Tokens) (_ context.Context, _ *Call, ok bool) {
	sum, _ := gen.SumOf(name)
	c := &Call{r: r, name: name, sum: sum, owner: owner}
	ctx, c.cancel = context.WithCancelCause(ctx)
	r.mu.Lock()
	if cur := r.cur.Load(); cur != gen && !cur.Holds(name, sum) {
		r.mu.Unlock()
		c.cancel(ErrRevoked)
		return ctx, nil, false
	}
	r.calls[c] = struct{}{}
	r.mu.Unlock()
	return ctx, c, true
}

// Done unregisters the call and reports whether its token was revoked while it ran. close
// is the owner whose sockets must be closed now: the call's token name is gone, and the call
// may have opened sockets after Replace's caller closed the owner's; "" when there is none.
func (c *Call) Done() (revoked bool, close string) {
	c.r.mu.Lock()
	delete(c.r.calls, c)
	revoked = c.revoked
	_, nameKept := c.r.cur.Load().SumOf(c.name)
	c.r.mu.Unlock()
	c.cancel(nil)
	if revoked && !nameKept && c.owner != "" {
		return true, c.owner
	}
	return revoked, ""
}

// Tracked is the number of calls registered, for tests and leak checks.
func (r *Registry) Tracked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}
