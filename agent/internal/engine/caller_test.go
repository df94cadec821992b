package engine

import (
	"context"
	"testing"
)

type otherKey struct{}

var ctxSink context.Context

// TestCallerContext: the caller rides in its own context type; it must still be a context
// like WithValue's: found through children, replaced by a nearer one, other values and the
// parent's cancellation passed through, one allocation.
func TestCallerContext(t *testing.T) {
	if got := CallerFrom(context.Background()); got.ID != Anonymous.ID || got.Kind != Anonymous.Kind {
		t.Errorf("no caller set: %+v, want Anonymous", got)
	}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), otherKey{}, "x"))
	ctx := WithCaller(parent, Caller{ID: "token:a", Kind: "token", Token: "a", SANs: []string{"h"}})
	child, stop := context.WithCancel(ctx)
	defer stop()
	if c := CallerFrom(child); c.ID != "token:a" || c.Token != "a" || len(c.SANs) != 1 {
		t.Errorf("through a child: %+v", c)
	}
	if v, _ := child.Value(otherKey{}).(string); v != "x" {
		t.Errorf("another key through the caller's context: %q, want x", v)
	}
	if c := CallerFrom(WithCaller(child, Caller{ID: "uid:0"})); c.ID != "uid:0" {
		t.Errorf("nearer caller: %+v, want uid:0", c)
	}
	cancel()
	select {
	case <-child.Done():
	default:
		t.Fatal("cancelling the parent did not reach a child of the caller's context")
	}
	c := CallerFrom(ctx) // a caller not known when compiling: a constant would cost nothing to box
	if n := testing.AllocsPerRun(100, func() { ctxSink = WithCaller(parent, c) }); n != 1 {
		t.Errorf("WithCaller makes %v allocations, want 1", n)
	}
}
