package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/policy"
)

// A caller holds exactly limits.watches watches: the one past it is refused naming the limit,
// and a watcher (the caller's own first watch, with "events: all") hears of that refusal and
// of a socket refused by limits.sockets, each as a limit-refused event naming its limit.
func TestAdmitWatchesAndRefusedEvents(t *testing.T) {
	t.Parallel()
	p, err := policy.Parse("p.yaml", []byte("default: {events: all, limits: {watches: 2, sockets: 1}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tb := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20, Policy: p})
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "a"})
	w := startWatch(t, tb, ctx, WatchSpec{Kinds: []EventKind{EventLimitRefused}})
	startWatch(t, tb, ctx, WatchSpec{Kinds: []EventKind{EventOpened}}) // the second: at the limit
	// Were it admitted, started ends it at once (its error is Watch's), so the test cannot hang.
	err = tb.Watch(ctx, WatchSpec{}, func() error { return errors.New("admitted") }, func(WatchItem) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "limits.watches") || !strings.Contains(err.Error(), `caller "a" has 2 event watches open; end one first`) {
		t.Fatalf("a third watch with watches: 2: %v", err)
	}
	if _, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil); err == nil || !strings.Contains(err.Error(), "limits.sockets") {
		t.Fatalf("a second socket with sockets: 1: %v", err)
	}
	items := w.waitItems(t, 2)
	var got []string
	for _, it := range items {
		if it.Event.Kind != EventLimitRefused || it.Event.Caller != "a" {
			t.Errorf("event %+v, want limit refused for caller a", it.Event)
		}
		got = append(got, it.Event.Reason)
	}
	if strings.Join(got, " ") != "limits.watches limits.sockets" {
		t.Errorf("refused events name %q, want limits.watches then limits.sockets", got)
	}
}

// An ended watch gives its place back: with watches: 1, the caller watches, ends it, and
// watches again; nothing is left counted once the last one ends.
func TestAdmitWatchReleased(t *testing.T) {
	t.Parallel()
	p, err := policy.Parse("p.yaml", []byte("default: {limits: {watches: 1}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tb := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20, Policy: p})
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "a"})
	for i := range 3 {
		w := startWatch(t, tb, ctx, WatchSpec{})
		w.stop()
		if err := <-w.done; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("watch %d ended with %v", i, err)
		}
		w.done <- nil // for startWatch's cleanup
		tb.mu.Lock()
		h := tb.budget.of("a")
		tb.mu.Unlock()
		if h != (holding{}) {
			t.Fatalf("after watch %d ended the caller holds %+v, want nothing", i, h)
		}
	}
}
