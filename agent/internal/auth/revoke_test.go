package auth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestRegistryReplaceRefuses: authentication can be neither turned off (no tokens) nor on (a
// registry started without tokens) at run time; a refused Replace keeps the current set.
func TestRegistryReplaceRefuses(t *testing.T) {
	t.Parallel()
	toks := mustTokens(t, "a:a-secret\n")
	r := NewRegistry(toks)
	for _, bad := range []*Tokens{nil, {}} {
		if removed, err := r.Replace(bad); err == nil || err.Error() != "set tokens: no tokens" || removed != nil {
			t.Errorf("Replace(%v) = %v, %v", bad, removed, err)
		}
	}
	if r.Current() != toks {
		t.Error("a refused Replace changed the current set")
	}
	off := NewRegistry(nil)
	if off.Current() != nil {
		t.Fatal("NewRegistry(nil) has tokens")
	}
	if _, err := off.Replace(toks); err == nil || !strings.Contains(err.Error(), "started without token authentication") {
		t.Errorf("Replace on a registry without tokens: %v", err)
	}
	if off.Current() != nil {
		t.Error("Replace turned token authentication on")
	}
}

// track registers a call of token name authenticated by gen, owned by "token:NAME".
func track(t *testing.T, r *Registry, name string, gen *Tokens) (context.Context, *Call) {
	t.Helper()
	ctx, c, ok := r.Track(t.Context(), name, "token:"+name, gen)
	if !ok || c == nil {
		t.Fatalf("Track(%s) refused", name)
	}
	return ctx, c
}

func cancelled(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// TestRegistryRevokes: Replace ends the calls of the tokens it drops or re-keys, and only
// those; it reports the names that are gone; Done tells each call whether it was revoked and
// whose sockets to close.
func TestRegistryRevokes(t *testing.T) {
	t.Parallel()
	gen1 := mustTokens(t, "alice:alice-1\nbob:bob-1\ncarol:carol-1\n")
	r := NewRegistry(gen1)
	aliceCtx, alice := track(t, r, "alice", gen1)
	bobCtx, bob := track(t, r, "bob", gen1)
	carolCtx, carol := track(t, r, "carol", gen1)
	// A certificate caller that also sent bob's token: no owner to close.
	certCtx, cert, ok := r.Track(t.Context(), "bob", "", gen1)
	if !ok {
		t.Fatal("Track of a certificate caller refused")
	}
	if r.Tracked() != 4 {
		t.Fatalf("Tracked() = %d, want 4", r.Tracked())
	}

	// bob is gone, carol has a new secret, alice is kept; dave is new.
	gen2 := mustTokens(t, "alice:alice-1\ncarol:carol-2\ndave:dave-1\n")
	removed, err := r.Replace(gen2)
	if err != nil || !slices.Equal(removed, []string{"bob"}) {
		t.Fatalf("Replace = %q, %v; want [bob]", removed, err)
	}
	if r.Current() != gen2 {
		t.Error("Replace did not make the new set current")
	}
	for name, tc := range map[string]struct {
		ctx  context.Context
		want bool
	}{"alice": {aliceCtx, false}, "bob": {bobCtx, true}, "carol": {carolCtx, true}, "cert+bob": {certCtx, true}} {
		if got := cancelled(tc.ctx); got != tc.want {
			t.Errorf("%s: cancelled = %v, want %v", name, got, tc.want)
		} else if got && !errors.Is(context.Cause(tc.ctx), ErrRevoked) {
			t.Errorf("%s: cause %v, want ErrRevoked", name, context.Cause(tc.ctx))
		}
	}
	for name, tc := range map[string]struct {
		c       *Call
		revoked bool
		close   string
	}{
		"alice":    {alice, false, ""},
		"bob":      {bob, true, "token:bob"}, // gone: what it opened meanwhile is closed
		"carol":    {carol, true, ""},        // re-keyed: the name keeps its sockets
		"cert+bob": {cert, true, ""},         // the certificate owns the sockets
	} {
		if revoked, close := tc.c.Done(); revoked != tc.revoked || close != tc.close {
			t.Errorf("%s: Done() = %v, %q; want %v, %q", name, revoked, close, tc.revoked, tc.close)
		}
	}
	if r.Tracked() != 0 {
		t.Errorf("Tracked() = %d after every Done, want 0", r.Tracked())
	}
	if !cancelled(aliceCtx) || context.Cause(aliceCtx) != context.Canceled {
		t.Errorf("a finished call's context: cause %v, want context.Canceled", context.Cause(aliceCtx))
	}
}

// TestRegistryTrackAfterReplace: a call authenticated by a set that was replaced meanwhile
// runs when the new set still holds its token (same name, same secret), and is refused, its
// context cancelled, when it does not.
func TestRegistryTrackAfterReplace(t *testing.T) {
	t.Parallel()
	gen1 := mustTokens(t, "alice:alice-1\nbob:bob-1\ncarol:carol-1\n")
	r := NewRegistry(gen1)
	if _, err := r.Replace(mustTokens(t, "alice:alice-1\ncarol:carol-2\n")); err != nil {
		t.Fatal(err)
	}
	if _, c, ok := r.Track(t.Context(), "alice", "token:alice", gen1); !ok {
		t.Error("alice, kept by the new set, refused")
	} else {
		c.Done()
	}
	for _, name := range []string{"bob", "carol"} {
		ctx, c, ok := r.Track(t.Context(), name, "token:"+name, gen1)
		if ok || c != nil || !errors.Is(context.Cause(ctx), ErrRevoked) {
			t.Errorf("%s: Track = %v, %v, cause %v; want refused, ErrRevoked", name, c, ok, context.Cause(ctx))
		}
	}
	if r.Tracked() != 0 {
		t.Errorf("Tracked() = %d, want 0", r.Tracked())
	}
	// A later Replace that drops alice does not revoke a call that already finished.
	_, c := track(t, r, "carol", r.Current())
	if removed, err := r.Replace(mustTokens(t, "carol:carol-2\n")); err != nil || !slices.Equal(removed, []string{"alice"}) {
		t.Errorf("Replace = %q, %v; want [alice]", removed, err)
	}
	if revoked, close := c.Done(); revoked || close != "" {
		t.Errorf("carol, kept: Done() = %v, %q", revoked, close)
	}
}
