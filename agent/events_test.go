package agent_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// eventWatch is one WatchEvents stream of a test.
type eventWatch struct {
	st     grpc.ServerStreamingClient[sockagentv1.WatchEventsResponse]
	cancel context.CancelFunc
}

// watch opens a watch as ctx's caller and waits for its response headers: from then on the
// watch is in force.
func watchEvents(t *testing.T, ctx context.Context, sc sockagentv1.SocketServiceClient, req *sockagentv1.WatchEventsRequest) *eventWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	st, err := sc.WatchEvents(ctx, req)
	if err == nil {
		_, err = st.Header()
	}
	if err != nil {
		cancel()
		t.Fatalf("watch events %v: %v", req, err)
	}
	w := &eventWatch{st: st, cancel: cancel}
	t.Cleanup(w.stop)
	return w
}

// stop ends the watch and waits for the stream to end.
func (w *eventWatch) stop() {
	w.cancel()
	for {
		if _, err := w.st.Recv(); err != nil {
			return
		}
	}
}

// next returns the next item of the stream.
func (w *eventWatch) next(t *testing.T) *sockagentv1.WatchEventsResponse {
	t.Helper()
	r, err := w.st.Recv()
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	return r
}

// event returns the next event, failing on a drop notice.
func (w *eventWatch) event(t *testing.T) *sockagentv1.Event {
	t.Helper()
	r := w.next(t)
	if r.GetEvent() == nil {
		t.Fatalf("watch: %v, want an event", r)
	}
	return r.GetEvent()
}

// watchErr opens a watch and returns the error it ends with before any event.
func watchErr(ctx context.Context, sc sockagentv1.SocketServiceClient, req *sockagentv1.WatchEventsRequest) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := sc.WatchEvents(ctx, req)
	if err != nil {
		return err
	}
	r, err := st.Recv()
	if err == nil {
		return fmt.Errorf("watch answered %v, want an error", r)
	}
	return err
}

// ev is what a test expects of an event: its kind and socket, and the fields it sets.
type ev struct {
	kind           sockagentv1.EventKind
	socket, parent string
	reason         string
	in, out        uint64
}

func (e ev) String() string {
	return fmt.Sprintf("%s %s parent=%s reason=%s in=%d out=%d", strings.TrimPrefix(e.kind.String(), "EVENT_KIND_"), e.socket, e.parent, e.reason, e.in, e.out)
}

func evOf(e *sockagentv1.Event) ev {
	return ev{kind: e.GetKind(), socket: e.GetSocketId(), parent: e.GetParentId(), reason: e.GetReason(), in: e.GetBytesIn(), out: e.GetBytesOut()}
}

const (
	kOpened    = sockagentv1.EventKind_EVENT_KIND_OPENED
	kAccepted  = sockagentv1.EventKind_EVENT_KIND_ACCEPTED
	kConnected = sockagentv1.EventKind_EVENT_KIND_CONNECTED
	kData      = sockagentv1.EventKind_EVENT_KIND_DATA
	kPeer      = sockagentv1.EventKind_EVENT_KIND_PEER_CLOSED
	kReset     = sockagentv1.EventKind_EVENT_KIND_RESET
	kError     = sockagentv1.EventKind_EVENT_KIND_ERROR
	kClosed    = sockagentv1.EventKind_EVENT_KIND_CLOSED
	kSession   = sockagentv1.EventKind_EVENT_KIND_SESSION_ENDED
	kLimit     = sockagentv1.EventKind_EVENT_KIND_LIMIT_REFUSED
)

// The textbook exchange, watched: exactly its events, in order, with ids, addresses, caller,
// instance and bytes; data events coalesce the bytes (13 out of the client, 13 into the
// server) and the closed events carry each socket's totals.
func TestWatchEventsExchange(t *testing.T) {
	e := newEnv(t)
	info, err := e.ac.GetInfo(ctxT(t), &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	w := watchEvents(t, ctxT(t), e.sc, &sockagentv1.WatchEventsRequest{DataInterval: dur(100 * time.Millisecond)})
	lis := e.listen(t, "tcp", "127.0.0.1:0")
	cli := e.dial(t, "tcp", lis.GetLocalAddress())
	srv := e.accept(t, lis.GetSocketId())
	e.send(t, cli.GetSocketId(), "Hello, World!")
	if got := e.recvExact(t, srv.GetSocketId(), 13); got != "Hello, World!" {
		t.Fatalf("recv %q", got)
	}
	var got []*sockagentv1.Event
	in, out := map[string]uint64{}, map[string]uint64{}
	start := time.Now()
	for in[srv.GetSocketId()] < 13 || out[cli.GetSocketId()] < 13 {
		x := w.event(t)
		got = append(got, x)
		in[x.GetSocketId()] += x.GetBytesIn()
		out[x.GetSocketId()] += x.GetBytesOut()
	}
	// The data came within two intervals of the recv, and no sooner than the sampler runs.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("data events %s after the exchange, want within 2s at a 100ms interval", d)
	}
	if _, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: cli.GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	r, err := e.sc.Recv(ctxT(t), &sockagentv1.RecvRequest{SocketId: srv.GetSocketId(), Timeout: dur(5 * time.Second)})
	if err != nil || !r.GetEof() {
		t.Fatalf("recv after the peer closed: %v %v, want eof", r, err)
	}
	for _, id := range []string{srv.GetSocketId(), lis.GetSocketId()} {
		if _, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: id}); err != nil {
			t.Fatal(err)
		}
	}
	for len(got) < 9 {
		got = append(got, w.event(t))
	}
	want := []ev{
		{kind: kOpened, socket: lis.GetSocketId()},
		{kind: kConnected, socket: cli.GetSocketId()},
		{kind: kAccepted, socket: srv.GetSocketId(), parent: lis.GetSocketId()},
		{kind: kData, socket: cli.GetSocketId(), out: 13},
		{kind: kData, socket: srv.GetSocketId(), parent: lis.GetSocketId(), in: 13},
		{kind: kClosed, socket: cli.GetSocketId(), reason: "closed", out: 13},
		{kind: kPeer, socket: srv.GetSocketId(), parent: lis.GetSocketId()},
		{kind: kClosed, socket: srv.GetSocketId(), parent: lis.GetSocketId(), reason: "closed", in: 13},
		{kind: kClosed, socket: lis.GetSocketId(), reason: "closed"},
	}
	// The two data events may come in one sample or two: compare them as a set.
	var gotEv []ev
	for _, x := range got {
		gotEv = append(gotEv, evOf(x))
	}
	if len(gotEv) != len(want) || !sameEvents(gotEv[:3], want[:3]) || !sameEvents(gotEv[5:], want[5:]) ||
		!(sameEvents(gotEv[3:5], want[3:5]) || sameEvents([]ev{gotEv[4], gotEv[3]}, want[3:5])) {
		t.Fatalf("events:\n%s\nwant:\n%s", evList(gotEv), evList(want))
	}
	checkExchange(t, got, info.GetInstanceId(), start, lis, cli, srv)
	if got[5].GetMessage() != "closed by its caller" {
		t.Errorf("closed event message %q", got[5].GetMessage())
	}
}

// checkExchange checks what every event of the exchange says besides its kind: agent
// instance, caller, network, time order and the socket's addresses.
func checkExchange(t *testing.T, got []*sockagentv1.Event, instance string, start time.Time, lis, cli, srv *sockagentv1.Socket) {
	t.Helper()
	prev := time.Time{}
	for _, x := range got {
		if x.GetInstanceId() != instance || x.GetCaller() != "anonymous" || x.GetNetwork() != "tcp" || x.GetSessionId() != "" {
			t.Errorf("event %v: want instance %s, caller anonymous, network tcp, no session", x, instance)
		}
		if tm := x.GetTime().AsTime(); tm.Before(prev) || tm.Before(start.Add(-10*time.Second)) || time.Since(tm) > 20*time.Second {
			t.Errorf("event %v at %s: times must not go back (previous %s)", x, tm, prev)
		} else {
			prev = tm
		}
		switch x.GetSocketId() {
		case cli.GetSocketId():
			if x.GetLocalAddress() != cli.GetLocalAddress() || x.GetRemoteAddress() != lis.GetLocalAddress() {
				t.Errorf("client event %v: want %s -> %s", x, cli.GetLocalAddress(), lis.GetLocalAddress())
			}
		case srv.GetSocketId():
			if x.GetLocalAddress() != lis.GetLocalAddress() || x.GetRemoteAddress() != cli.GetLocalAddress() {
				t.Errorf("server event %v: want %s -> %s", x, lis.GetLocalAddress(), cli.GetLocalAddress())
			}
		case lis.GetSocketId():
			if x.GetLocalAddress() != lis.GetLocalAddress() || x.GetRemoteAddress() != "" {
				t.Errorf("listener event %v: want %s", x, lis.GetLocalAddress())
			}
		}
	}
}

func sameEvents(a, b []ev) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func evList(l []ev) string {
	var b strings.Builder
	for _, e := range l {
		fmt.Fprintf(&b, "  %v\n", e)
	}
	return b.String()
}

// Filters: by socket (an accepted connection counts for its listener), by kind, by the
// watcher's own caller id; a watch that asks for others without "events: all" is refused,
// and bad filters are INVALID_ARGUMENT naming the bound.
func TestWatchEventsFilters(t *testing.T) {
	e := newEnv(t)
	lis := e.listen(t, "tcp", "127.0.0.1:0")
	other := e.listen(t, "tcp", "127.0.0.1:0")
	bySocket := watchEvents(t, ctxT(t), e.sc, &sockagentv1.WatchEventsRequest{SocketIds: []string{lis.GetSocketId()}})
	byKind := watchEvents(t, ctxT(t), e.sc, &sockagentv1.WatchEventsRequest{Kinds: []sockagentv1.EventKind{kClosed}, Callers: []string{"anonymous"}})
	cli := e.dial(t, "tcp", lis.GetLocalAddress())
	srv := e.accept(t, lis.GetSocketId())
	for _, id := range []string{cli.GetSocketId(), srv.GetSocketId(), other.GetSocketId(), lis.GetSocketId()} {
		if _, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: id}); err != nil {
			t.Fatal(err)
		}
	}
	wantSeq(t, bySocket, []ev{
		{kind: kAccepted, socket: srv.GetSocketId(), parent: lis.GetSocketId()},
		{kind: kClosed, socket: lis.GetSocketId(), reason: "closed"},
	})
	wantSeq(t, byKind, []ev{
		{kind: kClosed, socket: cli.GetSocketId(), reason: "closed"},
		{kind: kClosed, socket: srv.GetSocketId(), parent: lis.GetSocketId(), reason: "closed"},
		{kind: kClosed, socket: other.GetSocketId(), reason: "closed"},
		{kind: kClosed, socket: lis.GetSocketId(), reason: "closed"},
	})

	for _, tc := range []struct {
		req    *sockagentv1.WatchEventsRequest
		code   codes.Code
		reason string
		msg    string
	}{
		{&sockagentv1.WatchEventsRequest{Callers: []string{"token:bob"}}, codes.PermissionDenied, contract.ReasonPolicyDenied, `watching the events of caller "token:bob" not allowed by policy rule "events"`},
		{&sockagentv1.WatchEventsRequest{AllCallers: true}, codes.PermissionDenied, contract.ReasonPolicyDenied, `the rule set must say "events: all"`},
		{&sockagentv1.WatchEventsRequest{DataInterval: dur(99 * time.Millisecond)}, codes.InvalidArgument, contract.ReasonInvalidArgument, "data_interval 99ms out of range; give 0 (1s) or 100ms up to 1h0m0s"},
		{&sockagentv1.WatchEventsRequest{DataInterval: dur(time.Hour + time.Second)}, codes.InvalidArgument, contract.ReasonInvalidArgument, "out of range"},
		{&sockagentv1.WatchEventsRequest{DataInterval: dur(-time.Second)}, codes.InvalidArgument, contract.ReasonInvalidArgument, "out of range"},
		{&sockagentv1.WatchEventsRequest{Kinds: []sockagentv1.EventKind{0}}, codes.InvalidArgument, contract.ReasonInvalidArgument, "kind 0 unknown"},
		{&sockagentv1.WatchEventsRequest{Kinds: []sockagentv1.EventKind{11}}, codes.InvalidArgument, contract.ReasonInvalidArgument, "kind 11 unknown"},
		{&sockagentv1.WatchEventsRequest{SocketIds: make([]string, 1025)}, codes.InvalidArgument, contract.ReasonInvalidArgument, "1025 socket ids, at most 1024"},
		{&sockagentv1.WatchEventsRequest{Callers: make([]string, 65), AllCallers: true}, codes.InvalidArgument, contract.ReasonInvalidArgument, "65 callers, at most 64"},
	} {
		wantStatus(t, watchErr(ctxT(t), e.sc, tc.req), tc.code, tc.reason, tc.msg)
	}
	// At the bounds: 1024 ids, 100ms and 1h are accepted.
	watchEvents(t, ctxT(t), e.sc, &sockagentv1.WatchEventsRequest{SocketIds: make([]string, 1024), DataInterval: dur(100 * time.Millisecond)}).stop()
	watchEvents(t, ctxT(t), e.sc, &sockagentv1.WatchEventsRequest{DataInterval: dur(time.Hour)}).stop()
}

// wantSeq reads len(want) events and compares them, then cancels the watch.
func wantSeq(t *testing.T, w *eventWatch, want []ev) {
	t.Helper()
	var got []ev
	for range want {
		got = append(got, evOf(w.event(t)))
	}
	if !sameEvents(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", evList(got), evList(want))
	}
	w.stop()
}

// A caller sees only its own sockets' events; a rule set with "events: all" lets its callers
// watch everyone's (all_callers), or some callers'.
func TestWatchEventsOtherCallers(t *testing.T) {
	e := polEnv(t, "rule_sets:\n  - {name: ops, callers: [\"token:bob\"], events: all}\n", true)
	alice, bob, carol := e.as(t, "alice"), e.as(t, "bob"), e.as(t, "carol")
	own := watchEvents(t, alice.ctx, e.sc, &sockagentv1.WatchEventsRequest{})
	everyone := watchEvents(t, bob.ctx, e.sc, &sockagentv1.WatchEventsRequest{AllCallers: true})
	onlyCarol := watchEvents(t, bob.ctx, e.sc, &sockagentv1.WatchEventsRequest{AllCallers: true, Callers: []string{"token:carol"}})
	wantStatus(t, watchErr(alice.ctx, e.sc, &sockagentv1.WatchEventsRequest{AllCallers: true}), codes.PermissionDenied, contract.ReasonPolicyDenied,
		`watching every caller's events (all_callers) not allowed by policy rule "events"`, `(rule set "default")`)
	c := carol.bind(t, "udp", "127.0.0.1:0")
	b := bob.bind(t, "udp", "127.0.0.1:0")
	a := alice.bind(t, "udp", "127.0.0.1:0")
	if x := own.event(t); evOf(x) != (ev{kind: kOpened, socket: a.GetSocketId()}) || x.GetCaller() != "token:alice" {
		t.Errorf("alice's watch: first event %v, want her own socket %s opened", x, a.GetSocketId())
	}
	var seen []string
	for range 3 {
		x := everyone.event(t)
		seen = append(seen, x.GetCaller()+" "+x.GetSocketId())
	}
	if want := []string{"token:carol " + c.GetSocketId(), "token:bob " + b.GetSocketId(), "token:alice " + a.GetSocketId()}; strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Errorf("bob's all_callers watch: %v, want %v", seen, want)
	}
	if x := onlyCarol.event(t); x.GetCaller() != "token:carol" || x.GetSocketId() != c.GetSocketId() {
		t.Errorf("bob's watch of carol: %v", x)
	}
	// Alice's watch ended with her own event: closing it shows nothing of the others' before.
	if _, err := e.sc.Close(alice.ctx, &sockagentv1.CloseRequest{SocketId: a.GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	if x := own.event(t); evOf(x) != (ev{kind: kClosed, socket: a.GetSocketId(), reason: "closed"}) {
		t.Errorf("alice's watch: %v, want her socket closed (nothing of bob's or carol's)", x)
	}
}

// A watcher that never reads slows no socket: calls stay fast while its events are dropped,
// and the stream, once read, says how many were dropped, in their place.
func TestWatchEventsSlowWatcher(t *testing.T) {
	e := newEnv(t)
	lis := e.listen(t, "tcp", "127.0.0.1:0")
	cli := e.dial(t, "tcp", lis.GetLocalAddress())
	srv := e.accept(t, lis.GetSocketId())
	// Opened and closed only: the flood below is 2 events a cycle.
	// The watch outlives the flood, however slow the machine: its own deadline.
	wctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := watchEvents(t, wctx, e.sc, &sockagentv1.WatchEventsRequest{Kinds: []sockagentv1.EventKind{kOpened, kClosed}})
	const cycles = 1500 // 3,000 events: more than the buffer and the stream's window hold
	var ids []string
	start := time.Now()
	var worst time.Duration
	for i := range cycles {
		t0 := time.Now()
		r, err := e.sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0"})
		if err != nil {
			t.Fatalf("cycle %d: bind: %v", i, err)
		}
		ids = append(ids, r.GetSocket().GetSocketId())
		if _, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: r.GetSocket().GetSocketId()}); err != nil {
			t.Fatalf("cycle %d: close: %v", i, err)
		}
		// Send+Recv on the pair beside the flood: never held up by the watcher.
		e.send(t, cli.GetSocketId(), "x")
		if got := e.recvExact(t, srv.GetSocketId(), 1); got != "x" {
			t.Fatalf("cycle %d: recv %q", i, got)
		}
		worst = max(worst, time.Since(t0))
		if time.Since(start) > 90*time.Second {
			t.Fatalf("%d cycles took over 90s", i)
		}
	}
	// A publish that waited for the watcher would hold a cycle until its 20s deadline.
	if worst > 5*time.Second {
		t.Errorf("slowest bind+close+send+recv cycle beside a stuck watcher: %s, want under 5s", worst)
	}
	t.Logf("%d cycles in %s, slowest %s", cycles, time.Since(start), worst)
	// Read it all: a prefix of the events in order, then one drop notice for all the rest.
	var delivered []string
	var dropped uint64
	for uint64(len(delivered))+dropped < 2*cycles {
		r := w.next(t)
		switch {
		case r.GetDropped() != nil:
			if dropped > 0 {
				t.Fatalf("a second drop notice %v after %d", r, dropped)
			}
			dropped = r.GetDropped().GetCount()
			if r.GetDropped().GetTime().AsTime().Before(start) {
				t.Errorf("drop notice time %s before the flood", r.GetDropped().GetTime().AsTime())
			}
		case dropped > 0:
			t.Fatalf("event %v after the drop notice: the flood was over when the reading began", r)
		default:
			delivered = append(delivered, r.GetEvent().GetSocketId()+" "+r.GetEvent().GetKind().String())
		}
	}
	if dropped == 0 || len(delivered) < agentWatchBuffer {
		t.Fatalf("delivered %d, dropped %d; want at least the buffer (%d) delivered and the rest dropped", len(delivered), dropped, agentWatchBuffer)
	}
	for i, d := range delivered {
		kind := "EVENT_KIND_OPENED"
		if i%2 == 1 {
			kind = "EVENT_KIND_CLOSED"
		}
		if want := ids[i/2] + " " + kind; d != want {
			t.Fatalf("delivered event %d: %s, want %s (the events before the drop, in order)", i, d, want)
		}
	}
	t.Logf("delivered %d, dropped %d", len(delivered), dropped)
}

// agentWatchBuffer is engine.WatchBuffer, the events a watcher's buffer holds.
const agentWatchBuffer = 1024

// Sessions: a session's end closes its sockets (closed, reason session_closed) and is an
// event of its own; a lease that runs out says lease_expired.
func TestWatchEventsSessionEnded(t *testing.T) {
	e := newEnv(t)
	ss := sockagentv1.NewSessionServiceClient(e.conn)
	w := watchEvents(t, ctxT(t), e.sc, &sockagentv1.WatchEventsRequest{})
	s1, err := ss.OpenSession(ctxT(t), &sockagentv1.OpenSessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := s1.GetSession().GetSessionId()
	r, err := e.sc.Listen(metadata.AppendToOutgoingContext(ctxT(t), contract.SessionHeader, id), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ss.CloseSession(ctxT(t), &sockagentv1.CloseSessionRequest{SessionId: id}); err != nil {
		t.Fatal(err)
	}
	lis := r.GetSocket().GetSocketId()
	got := []*sockagentv1.Event{w.event(t), w.event(t), w.event(t)}
	want := []ev{{kind: kOpened, socket: lis}, {kind: kClosed, socket: lis, reason: "session_closed"}, {kind: kSession, reason: "session_closed"}}
	for i, x := range got {
		if evOf(x) != want[i] || x.GetSessionId() != id || x.GetCaller() != "anonymous" {
			t.Errorf("event %d: %v, want %v in session %s", i, x, want[i], id)
		}
	}
	if msg := "session " + id + " was closed"; got[1].GetMessage() != msg || got[2].GetMessage() != msg {
		t.Errorf("messages %q, %q; want %q", got[1].GetMessage(), got[2].GetMessage(), msg)
	}
	s2, err := ss.OpenSession(ctxT(t), &sockagentv1.OpenSessionRequest{Ttl: dur(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	x := w.event(t)
	if evOf(x) != (ev{kind: kSession, reason: "lease_expired"}) || x.GetSessionId() != s2.GetSession().GetSessionId() ||
		!strings.Contains(x.GetMessage(), "expired (no KeepAlive within 1s)") {
		t.Errorf("lease: %v", x)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("lease end event %s after opening a 1s session", d)
	}
}

// Admission refusals are events naming the limit, and so are errors the network gave (a
// refused Dial, without a socket) and a peer's reset (once).
func TestWatchEventsRefusalsAndErrors(t *testing.T) {
	e := polEnv(t, "default: {limits: {sockets: 2, watches: 1}}\n", false)
	w := watchEvents(t, ctxT(t), e.sc, &sockagentv1.WatchEventsRequest{Kinds: []sockagentv1.EventKind{kLimit, kError, kReset, kPeer}})
	wantLimit(t, watchErr(ctxT(t), e.sc, &sockagentv1.WatchEventsRequest{}), "limits.watches", 1)
	x := w.event(t)
	if evOf(x) != (ev{kind: kLimit, reason: "limits.watches"}) || x.GetCaller() != "anonymous" || !strings.Contains(x.GetMessage(), `limit limits.watches (1) exceeded (rule set "default"): caller "anonymous" has 1 event watches open; end one first`) {
		t.Errorf("refused watch: %v", x)
	}

	// A peer that resets: a raw listener on loopback closing with SO_LINGER 0.
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cli := e.dial(t, "tcp", raw.Addr().String())
	pc, err := raw.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	pc.Close()
	for range 2 { // the reset is told once, however many calls meet it
		_, err := e.sc.Recv(ctxT(t), &sockagentv1.RecvRequest{SocketId: cli.GetSocketId(), Timeout: dur(5 * time.Second)})
		if status.Code(err) != codes.Aborted {
			t.Logf("recv after reset: %v", err)
		}
	}
	x = w.event(t)
	if evOf(x) != (ev{kind: kReset, socket: cli.GetSocketId(), reason: contract.ReasonConnectionReset}) || x.GetRemoteAddress() != raw.Addr().String() {
		t.Errorf("reset: %v", x)
	}
	// The socket limit (2, the client holds one): the second listen is refused.
	e.listen(t, "tcp", "127.0.0.1:0")
	_, err = e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	wantLimit(t, err, "limits.sockets", 2)
	x = w.event(t)
	if evOf(x) != (ev{kind: kLimit, reason: "limits.sockets"}) || !strings.Contains(x.GetMessage(), "limit limits.sockets (2) exceeded") {
		t.Errorf("refused listen: %v", x)
	}
	closed := closedPortAgent(t)
	if _, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: cli.GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	_, err = e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: closed})
	wantStatus(t, err, codes.Unavailable, contract.ReasonConnectionRefused)
	x = w.event(t)
	if evOf(x) != (ev{kind: kError, reason: contract.ReasonConnectionRefused}) || x.GetRemoteAddress() != closed || x.GetNetwork() != "tcp" ||
		!strings.Contains(x.GetMessage(), "connection refused") {
		t.Errorf("refused dial: %v", x)
	}
}

// closedPortAgent returns a loopback address nothing listens on (just now).
func closedPortAgent(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A watch ends with the agent: UNAVAILABLE AGENT_STOPPING, and the agent stops on time.
func TestWatchEventsEndWithTheAgent(t *testing.T) {
	a, conn := serveBufconn(t, agent.Config{})
	w := watchEvents(t, ctxT(t), sockagentv1.NewSocketServiceClient(conn), &sockagentv1.WatchEventsRequest{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a watch open: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %s with a watch open", d)
	}
	_, err := w.st.Recv()
	wantStatus(t, err, codes.Unavailable, contract.ReasonAgentStopping)
}
