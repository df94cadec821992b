package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

// newWatcher checks every bound at its edge: one over is refused, the bound itself is not.
func TestNewWatcherBounds(t *testing.T) {
	t.Parallel()
	own := &policy.RuleSet{Name: "default"}
	all := &policy.RuleSet{Name: "ops", EventsAll: true}
	ids := func(n int) []string { return make([]string, n) }
	for _, tc := range []struct {
		name string
		set  *policy.RuleSet
		spec WatchSpec
		want string // "" = accepted; else a reason or "denied"
	}{
		{"1024 sockets", own, WatchSpec{Sockets: ids(MaxWatchSockets)}, ""},
		{"1025 sockets", own, WatchSpec{Sockets: ids(MaxWatchSockets + 1)}, "1025 socket ids, at most 1024"},
		{"64 callers", all, WatchSpec{Callers: ids(MaxWatchCallers), AllCallers: true}, ""},
		{"65 callers", all, WatchSpec{Callers: ids(MaxWatchCallers + 1), AllCallers: true}, "65 callers, at most 64"},
		{"interval 0", own, WatchSpec{}, ""},
		{"interval min", own, WatchSpec{Interval: MinDataInterval}, ""},
		{"interval under", own, WatchSpec{Interval: MinDataInterval - 1}, "data_interval 99.999999ms out of range"},
		{"interval max", own, WatchSpec{Interval: MaxDataInterval}, ""},
		{"interval over", own, WatchSpec{Interval: MaxDataInterval + 1}, "out of range"},
		{"interval negative", own, WatchSpec{Interval: -time.Second}, "out of range"},
		{"kinds at both ends", own, WatchSpec{Kinds: []EventKind{EventOpened, EventLimitRefused}}, ""},
		{"kind 0", own, WatchSpec{Kinds: []EventKind{0}}, "event kind 0 unknown"},
		{"kind 11", own, WatchSpec{Kinds: []EventKind{EventLimitRefused + 1}}, "event kind 11 unknown"},
		{"all without events: all", own, WatchSpec{AllCallers: true}, "denied all_callers"},
		{"all with events: all", all, WatchSpec{AllCallers: true}, ""},
		{"own caller", own, WatchSpec{Callers: []string{"me"}}, ""},
		{"another caller", own, WatchSpec{Callers: []string{"me", "you"}}, `denied caller "you"`},
		{"another caller, all", all, WatchSpec{Callers: []string{"you"}, AllCallers: true}, ""},
	} {
		_, err := newWatcher("me", tc.set, tc.spec)
		var d *policy.Denied
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want it accepted", tc.name, err)
		case tc.want == "":
		case strings.HasPrefix(tc.want, "denied"):
			if !errors.As(err, &d) || d.Rule != "events" || d.RuleSet != tc.set.Name || !strings.Contains(err.Error(), strings.TrimPrefix(tc.want, "denied ")) {
				t.Errorf("%s: %v, want a denial by rule events of %s naming %s", tc.name, err, tc.set.Name, tc.want)
			}
		case err == nil || Reason(err) != contract.ReasonInvalidArgument || !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s: %v, want INVALID_ARGUMENT %q", tc.name, err, tc.want)
		}
	}
}

// wants: the caller's own, or everyone's with all; then the callers, kinds and sockets kept.
func TestWatcherWants(t *testing.T) {
	t.Parallel()
	all := &policy.RuleSet{EventsAll: true}
	mk := func(spec WatchSpec) *watcher {
		w, err := newWatcher("me", all, spec)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	mine := Event{Kind: EventOpened, Caller: "me", SocketID: "s1"}
	theirs := Event{Kind: EventOpened, Caller: "you", SocketID: "s2"}
	accepted := Event{Kind: EventAccepted, Caller: "me", SocketID: "s3", Parent: "s1"}
	childData := Event{Kind: EventData, Caller: "me", SocketID: "s3", Parent: "s1"}
	for _, tc := range []struct {
		name string
		spec WatchSpec
		ev   Event
		want bool
	}{
		{"own", WatchSpec{}, mine, true},
		{"other's", WatchSpec{}, theirs, false},
		{"other's, all", WatchSpec{AllCallers: true}, theirs, true},
		{"callers keep", WatchSpec{AllCallers: true, Callers: []string{"you"}}, theirs, true},
		{"callers drop", WatchSpec{AllCallers: true, Callers: []string{"you"}}, mine, false},
		{"kind kept", WatchSpec{Kinds: []EventKind{EventOpened}}, mine, true},
		{"kind dropped", WatchSpec{Kinds: []EventKind{EventClosed}}, mine, false},
		{"socket kept", WatchSpec{Sockets: []string{"s1"}}, mine, true},
		{"socket dropped", WatchSpec{Sockets: []string{"s9"}}, mine, false},
		{"accepted on a watched listener", WatchSpec{Sockets: []string{"s1"}}, accepted, true},
		{"data of an accepted socket", WatchSpec{Sockets: []string{"s1"}}, childData, false},
	} {
		if got := mk(tc.spec).wants(&tc.ev); got != tc.want {
			t.Errorf("%s: wants %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A full buffer drops and counts; the notice goes where the events were lost, before what
// came after, and take hands over the count even when nothing followed.
func TestWatcherDrops(t *testing.T) {
	t.Parallel()
	w, err := newWatcher("me", &policy.RuleSet{}, WatchSpec{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(100, 0)
	ev := func(i int) Event {
		return Event{Kind: EventOpened, SocketID: fmt.Sprint(i), Time: t0.Add(time.Duration(i))}
	}
	for i := range WatchBuffer + 3 {
		w.push(ev(i))
	}
	got := w.take(nil)
	if len(got) != WatchBuffer+1 || got[WatchBuffer-1].Event.SocketID != fmt.Sprint(WatchBuffer-1) {
		t.Fatalf("took %d items, want the %d buffered and a notice", len(got), WatchBuffer)
	}
	if n := got[WatchBuffer]; n.Dropped != 3 || !n.Event.Time.Equal(t0.Add(WatchBuffer)) {
		t.Fatalf("notice %+v, want 3 dropped from the time of event %d", n, WatchBuffer)
	}
	if got := w.take(nil); len(got) != 0 {
		t.Fatalf("took %v from an empty buffer", got)
	}
	// Fill it again, drop two, then room again: the notice precedes the next event.
	for i := range WatchBuffer + 2 {
		w.push(ev(i))
	}
	first := w.take(nil)
	if len(first) != WatchBuffer+1 || first[WatchBuffer].Dropped != 2 {
		t.Fatalf("second round: %d items, last %+v", len(first), first[len(first)-1])
	}
	for i := range WatchBuffer {
		w.push(ev(i))
	}
	w.push(ev(-1)) // dropped
	w.q = w.q[:WatchBuffer-1]
	w.push(ev(7)) // room for the notice only: the event is dropped and counted too
	got = w.take(nil)
	if n := got[WatchBuffer-1]; n.Dropped != 1 || len(got) != WatchBuffer+1 || got[WatchBuffer].Dropped != 1 {
		t.Fatalf("notice then a dropped event: %d items, %+v %+v", len(got), got[WatchBuffer-1], got[WatchBuffer])
	}
	w.push(ev(8))
	w.push(ev(9))
	got = w.take(nil)
	if len(got) != 2 || got[0].Event.SocketID != "8" || got[1].Event.SocketID != "9" || got[0].Dropped != 0 {
		t.Fatalf("after the drops: %+v", got)
	}
	// Each queued item signals the watcher; the signal does not block on a full channel.
	select {
	case <-w.wake:
	default:
		t.Fatal("no wake-up after pushes")
	}
}

// deliver merges the buffered items with a sample's data events by time, and a closed
// socket's last bytes come as a data event just before its closed event.
func TestDeliverMerge(t *testing.T) {
	t.Parallel()
	w, _ := newWatcher("me", &policy.RuleSet{}, WatchSpec{})
	var got []string
	r := &watchRun{w: w, last: map[string]*counted{"s1": {in: 10, out: 4}}, started: time.Unix(50, 0), send: func(it WatchItem) error {
		got = append(got, fmt.Sprintf("%s:%s:%d/%d", it.Event.Kind, it.Event.SocketID, it.Event.BytesIn, it.Event.BytesOut))
		return nil
	}}
	at := func(s int) time.Time { return time.Unix(100+int64(s), 0) }
	items := []WatchItem{
		{Event: Event{Kind: EventOpened, SocketID: "s2", Time: at(1)}},
		{Event: Event{Kind: EventClosed, SocketID: "s1", Time: at(3), BytesIn: 15, BytesOut: 4}},
		{Event: Event{Kind: EventClosed, SocketID: "s4", Time: at(4), BytesIn: 7, created: at(0)}},           // opened after the watch, never sampled
		{Event: Event{Kind: EventClosed, SocketID: "s5", Time: at(5), BytesIn: 7, created: time.Unix(1, 0)}}, // before the watch, forgotten
		{Event: Event{Kind: EventClosed, SocketID: "s6", Time: at(6), BytesIn: 2, BytesOut: 2, created: at(0)}},
	}
	r.last["s6"] = &counted{in: 2, out: 2} // nothing new
	data := []WatchItem{{Event: Event{Kind: EventData, SocketID: "s3", Time: at(2), BytesOut: 1}}, {Event: Event{Kind: EventData, SocketID: "s7", Time: at(4), BytesOut: 1}}}
	if err := r.deliver(items, data); err != nil {
		t.Fatal(err)
	}
	want := "opened:s2:0/0 data:s3:0/1 data:s1:5/0 closed:s1:15/4 data:s7:0/1 data:s4:7/0 closed:s4:7/0 closed:s5:7/0 closed:s6:2/2"
	if strings.Join(got, " ") != want {
		t.Errorf("delivered\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	if len(r.last) != 0 {
		t.Errorf("counters of closed sockets kept: %v", r.last)
	}
	// A watcher that does not want data events gets no last bytes.
	w2, _ := newWatcher("me", &policy.RuleSet{}, WatchSpec{Kinds: []EventKind{EventClosed}})
	got = nil
	r.w, r.last = w2, map[string]*counted{"s1": {}}
	if err := r.deliver([]WatchItem{{Event: Event{Kind: EventClosed, SocketID: "s1", BytesIn: 3}}}, nil); err != nil || strings.Join(got, " ") != "closed:s1:3/0" {
		t.Errorf("closed-only watcher: %v %v", got, err)
	}
	// A send that fails ends the delivery with its error.
	boom := errors.New("boom")
	r.send = func(WatchItem) error { return boom }
	r.last = map[string]*counted{"s1": {}}
	r.w = w
	if err := r.deliver([]WatchItem{{Event: Event{Kind: EventClosed, SocketID: "s1", BytesIn: 3}}}, nil); !errors.Is(err, boom) {
		t.Errorf("failing send: %v", err)
	}
	if err := r.deliver(nil, data); !errors.Is(err, boom) {
		t.Errorf("failing send of data: %v", err)
	}
}

// watchAll runs a Watch of ctx's caller, collecting what it sends, until stop.
type watchAll struct {
	mu    sync.Mutex
	items []WatchItem
	done  chan error
	stop  context.CancelFunc
}

func startWatch(t *testing.T, tb *Table, ctx context.Context, spec WatchSpec) *watchAll {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	w := &watchAll{done: make(chan error, 1), stop: cancel}
	started := make(chan struct{})
	go func() {
		w.done <- tb.Watch(ctx, spec, func() error { close(started); return nil }, func(it WatchItem) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.items = append(w.items, it)
			return nil
		})
	}()
	select {
	case <-started:
	case err := <-w.done:
		t.Fatalf("watch: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

// waitItems waits (at most 10s) for n items and returns them.
func (w *watchAll) waitItems(t *testing.T, n int) []WatchItem {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		got := append([]WatchItem(nil), w.items...)
		w.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d items after 10s, want %d: %+v", len(got), n, got)
		}
		time.Sleep(time.Millisecond) // polling interval; the count decides
	}
}

func kindsOf(items []WatchItem) string {
	var out []string
	for _, it := range items {
		out = append(out, it.Event.Kind.String()+":"+it.Event.SocketID)
	}
	return strings.Join(out, " ")
}

// The engine's own walk: bytes that moved before the watch are not reported, those after
// are, per interval, including a served socket's; a watch ends with the agent.
func TestWatchSamples(t *testing.T) {
	tb := New(Config{DefaultTimeout: 5 * time.Second, MaxRecvBytes: 1 << 20})
	ctx := WithCaller(context.Background(), Caller{ID: "me"})
	lis, err := tb.Listen(ctx, "tcp", "127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := tb.Dial(ctx, "tcp", lis.Local, "", time.Second, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tb.Accept(ctx, lis.ID, time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Send(ctx, cli.ID, []byte("before"), time.Second); err != nil { // before the watch: not the watcher's
		t.Fatal(err)
	}
	w := startWatch(t, tb, ctx, WatchSpec{Interval: MinDataInterval})
	if _, err := tb.Send(ctx, cli.ID, []byte("after!!"), time.Second); err != nil {
		t.Fatal(err)
	}
	got := w.waitItems(t, 1)
	if d := got[0].Event; d.Kind != EventData || d.SocketID != cli.ID || d.BytesOut != 7 || d.BytesIn != 0 || d.Caller != "me" || d.Local != cli.Local || d.Remote != lis.Local {
		t.Fatalf("first data event %+v, want 7 bytes out of %s", d, cli.ID)
	}
	// The server reads 13: one data event of 13 in (the 6 before the watch included: they
	// reached the server's socket after).
	if data, _, err := tb.Recv(ctx, srv.ID, 0, 13, time.Second); err != nil || string(data) != "beforeafter!!" {
		t.Fatalf("recv %q %v", data, err)
	}
	got = w.waitItems(t, 2)
	if d := got[1].Event; d.Kind != EventData || d.SocketID != srv.ID || d.BytesIn != 13 || d.Parent != lis.ID {
		t.Fatalf("second data event %+v, want 13 bytes into %s", d, srv.ID)
	}
	u := servedEcho(t, tb, ctx, w)
	for _, id := range []string{cli.ID, srv.ID, lis.ID, u.ID} {
		if _, err := tb.Close(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	got = w.waitItems(t, 8)
	if want := "closed:" + cli.ID + " closed:" + srv.ID + " closed:" + lis.ID + " closed:" + u.ID; kindsOf(got[4:8]) != want {
		t.Fatalf("closes: %s, want %s", kindsOf(got[4:8]), want)
	}
	if c := got[4].Event; c.BytesOut != 13 || c.Reason != ClosedByCaller || c.Message != "closed by its caller" {
		t.Errorf("closed client %+v: want its 13 bytes out in all", c)
	}
	tb.Stop()
	if err := <-w.done; !errors.Is(err, ErrAgentStopping) {
		t.Errorf("watch at stop: %v, want AGENT_STOPPING", err)
	}
	w.done <- nil // for the cleanup
	if err := tb.Watch(ctx, WatchSpec{}, func() error { return nil }, func(WatchItem) error { return nil }); !errors.Is(err, ErrAgentStopping) {
		t.Errorf("watch of a stopped table: %v", err)
	}
}

// servedEcho binds a UDP socket served with echo, sends it a datagram, and checks the watch
// w sees it opened and its 4 bytes each way as the served socket's data.
func servedEcho(t *testing.T, tb *Table, ctx context.Context, w *watchAll) Info {
	t.Helper()
	u, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Serve(ctx, u.ID, BehaviourEcho, 0, 0); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", u.Local)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	got := w.waitItems(t, 4)
	if d := got[3].Event; kindsOf(got[2:4]) != "opened:"+u.ID+" data:"+u.ID || d.BytesIn != 4 || d.BytesOut != 4 {
		t.Fatalf("served: %s %+v", kindsOf(got[2:4]), d)
	}
	return u
}

// Sockets are listed for a watcher by its filters: its own, some ids, some callers, all.
func TestWatchedSockets(t *testing.T) {
	tb := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20, Policy: allPolicy(t)})
	defer tb.Stop()
	open := func(caller string) string {
		in, err := tb.Bind(WithCaller(context.Background(), Caller{ID: caller}), "udp", "127.0.0.1:0", "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return in.ID
	}
	a1, a2, b1, c1 := open("a"), open("a"), open("b"), open("c")
	set := tb.policy.Default
	for _, tc := range []struct {
		name string
		spec WatchSpec
		want []string
	}{
		{"own", WatchSpec{}, []string{a1, a2}},
		{"ids", WatchSpec{Sockets: []string{a2, b1, "nope"}}, []string{a2}},
		{"ids, all", WatchSpec{Sockets: []string{a2, b1}, AllCallers: true}, []string{a2, b1}},
		{"callers", WatchSpec{AllCallers: true, Callers: []string{"b", "c"}}, []string{b1, c1}},
		{"all", WatchSpec{AllCallers: true}, []string{a1, a2, b1, c1}},
	} {
		w, err := newWatcher("a", set, tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range tb.watchedSockets(w) {
			got = append(got, s.id)
		}
		if !sameSet(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, id := range []string{a1, a2} {
		_, _ = tb.Close(WithCaller(context.Background(), Caller{ID: "a"}), id)
	}
	// Counters forgotten only when a socket is absent from two samples in a row.
	w, _ := newWatcher("a", set, WatchSpec{})
	r := &watchRun{t: tb, w: w, last: map[string]*counted{"gone": {in: 1}}}
	r.sample(true)
	if p := r.last["gone"]; p == nil || !p.missed {
		t.Fatalf("after one sample without it: %+v", r.last)
	}
	r.sample(true)
	if _, ok := r.last["gone"]; ok {
		t.Fatalf("after two samples without it: still %+v", r.last)
	}
}

func allPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("p.yaml", []byte("default: {events: all}\n"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// Errors: which reasons are a socket's errors, a reset told once, and a served connection's
// end: EOF and EPIPE a peer's close, ECONNRESET a reset, the agent's own close nothing.
func TestEventErrorsAndServedEnds(t *testing.T) {
	tb := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20})
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "me"})
	w := startWatch(t, tb, ctx, WatchSpec{Kinds: []EventKind{EventError, EventReset, EventPeerClosed}})
	u, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close(ctx, u.ID)
	tb.mu.Lock()
	s := tb.socks[u.ID]
	tb.mu.Unlock()
	reset := &net.OpError{Op: "read", Err: syscall.ECONNRESET}
	tb.sockError(s, &OpError{Op: "recv", Err: errors.New("odd"), SocketID: u.ID})       // OS_ERROR
	tb.sockError(s, &OpError{Op: "recv", Err: context.Canceled})                        // not the socket's
	tb.sockError(s, &OpError{Op: "recv", Err: &limitError{Limit: "x"}})                 // not the socket's
	tb.sockError(s, nil)                                                                // nothing
	tb.sockError(s, reset)                                                              // reset, once
	tb.sockError(s, reset)                                                              // not again
	tb.publishSock(EventPeerClosed, s)                                                  // after a reset: not a close
	tb.servedEnded(s, "127.0.0.1:9", io.EOF)                                            // peer closed
	tb.servedEnded(s, "127.0.0.1:9", syscall.EPIPE)                                     // peer closed (a source's peer)
	tb.servedEnded(s, "127.0.0.1:9", net.ErrClosed)                                     // the agent's close: nothing
	tb.servedEnded(s, "127.0.0.1:9", nil)                                               // nothing
	tb.servedEnded(s, "127.0.0.1:8", &net.OpError{Op: "read", Err: syscall.ECONNRESET}) // reset
	tb.callError("me", "", "tcp", "", "127.0.0.1:1", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED})
	tb.callError("me", "", "tcp", "", "127.0.0.1:1", nil)
	tb.callError("me", "", "tcp", "", "127.0.0.1:2", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}) // the last
	got := w.waitItems(t, 7)
	want := "error:" + u.ID + " reset:" + u.ID + " peer_closed:" + u.ID + " peer_closed:" + u.ID + " reset:" + u.ID + " error: error:"
	if kindsOf(got) != want {
		t.Fatalf("events %s\nwant %s", kindsOf(got), want)
	}
	if e := got[0].Event; e.Reason != contract.ReasonOSError {
		t.Errorf("plain error: %+v", e)
	}
	if e := got[2].Event; e.Remote != "127.0.0.1:9" || e.SocketID != u.ID {
		t.Errorf("served peer close: %+v", e)
	}
	if e := got[4].Event; e.Reason != contract.ReasonConnectionReset || e.Remote != "127.0.0.1:8" {
		t.Errorf("served reset: %+v", e)
	}
	if e := got[5].Event; e.Reason != contract.ReasonConnectionRefused || e.Remote != "127.0.0.1:1" || e.Network != "tcp" || e.Caller != "me" {
		t.Errorf("dial error: %+v", e)
	}
	if e := got[6].Event; e.Remote != "127.0.0.1:2" {
		t.Errorf("last event %+v, want the dial to 127.0.0.1:2: nothing else came between", e)
	}
}

// Event kinds have their names; any other is "unknown".
func TestEventKindNames(t *testing.T) {
	t.Parallel()
	want := "opened accepted connected data peer_closed reset error closed session_ended limit_refused"
	var got []string
	for k := EventOpened; k <= EventLimitRefused; k++ {
		got = append(got, k.String())
	}
	if strings.Join(got, " ") != want || EventKind(0).String() != "unknown" || (EventLimitRefused+1).String() != "unknown" {
		t.Errorf("names %v", got)
	}
}

// What watching costs: nothing to a call when nobody watches (the hooks allocate nothing),
// and a watch holds its buffer's bytes (WatchBuffer x eventBytes) against buffered_bytes.
func TestWatchCosts(t *testing.T) {
	tb := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20})
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "me"})
	u, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close(ctx, u.ID)
	tb.mu.Lock()
	s := tb.socks[u.ID]
	tb.mu.Unlock()
	if n := testing.AllocsPerRun(100, func() {
		tb.sockEvent(EventOpened, s)
		tb.closedEvent(u, ClosedByCaller, "x")
	}); n != 0 {
		t.Errorf("hooks with nobody watching: %.0f allocations, want 0", n)
	}
	const need = WatchBuffer * eventBytes
	for _, tc := range []struct {
		bytes int
		ok    bool
	}{{need - 1, false}, {need, true}} {
		p, err := policy.Parse("p.yaml", []byte(fmt.Sprintf("default: {limits: {buffered_bytes: %d}}\n", tc.bytes)))
		if err != nil {
			t.Fatal(err)
		}
		tp := New(Config{DefaultTimeout: time.Second, MaxRecvBytes: 1 << 20, Policy: p})
		cctx, cancel := context.WithCancel(ctx)
		err = tp.Watch(cctx, WatchSpec{}, func() error { cancel(); return nil }, func(WatchItem) error { return nil })
		var le *limitError
		switch {
		case tc.ok && !errors.Is(err, context.Canceled):
			t.Errorf("buffered_bytes %d: %v, want the watch admitted", tc.bytes, err)
		case !tc.ok && (!errors.As(err, &le) || le.Limit != "limits.buffered_bytes"):
			t.Errorf("buffered_bytes %d: %v, want limits.buffered_bytes", tc.bytes, err)
		}
		cancel()
		tp.Stop()
	}
}

// Bytes a socket read before the watch are left out of its data events, in both directions.
func TestWatchBaseline(t *testing.T) {
	tb := New(Config{DefaultTimeout: 5 * time.Second, MaxRecvBytes: 1 << 20})
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "me"})
	a, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close(ctx, a.ID)
	defer tb.Close(ctx, b.ID)
	move := func(n int) {
		t.Helper()
		if _, err := tb.SendTo(ctx, a.ID, b.Local, make([]byte, n), time.Second); err != nil {
			t.Fatal(err)
		}
		if data, _, err := tb.RecvFrom(ctx, b.ID, 0, time.Second); err != nil || len(data) != n {
			t.Fatalf("recvfrom: %d bytes, %v", len(data), err)
		}
	}
	move(5)
	w := startWatch(t, tb, ctx, WatchSpec{Interval: MinDataInterval})
	move(3)
	var in, out uint64
	for _, it := range w.waitItems(t, 2) {
		in += it.Event.BytesIn
		out += it.Event.BytesOut
	}
	if in != 3 || out != 3 {
		t.Errorf("data events: %d in, %d out; want 3 and 3 (the 5 before the watch left out)", in, out)
	}
}
