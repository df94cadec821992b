package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
)

// reclaims records what the table reports closing on its own.
type reclaims struct {
	mu  sync.Mutex
	got []string // "id cause"
}

func (r *reclaims) note(in Info, cause, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, in.ID+" "+cause)
}

func (r *reclaims) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// waitFor polls cond every millisecond for at most bound.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > bound {
			t.Fatalf("%s: not within %v", what, bound)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSessionLease: a session's lease lasts its ttl, no less and not much more: its sockets
// are closed and reported as lease_expired then, and a call on them says the lease expired.
// A KeepAlive moves the end to now + ttl.
func TestSessionLease(t *testing.T) {
	t.Parallel()
	rec := &reclaims{}
	tb := newTable(time.Second, 1<<20, nil)
	tb.onReclaim = rec.note
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "a"})
	si, err := tb.OpenSession(ctx, MinSessionTTL, "short")
	if err != nil {
		t.Fatal(err)
	}
	if si.TTL != MinSessionTTL || si.Expires.Sub(si.Created) != MinSessionTTL || si.Name != "short" || si.Owner != "a" {
		t.Errorf("session %+v, want ttl %v, expiring ttl after creation", si, MinSessionTTL)
	}
	b, err := tb.Bind(WithSession(ctx, si.ID), "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the lease ends", func() bool { return tb.NumSessions() == 0 })
	if took := time.Since(si.Created); took < MinSessionTTL || took > MinSessionTTL+1500*time.Millisecond {
		t.Errorf("the lease of %v ended after %v", MinSessionTTL, took)
	}
	waitFor(t, 5*time.Second, "the socket is reported", func() bool { return len(rec.list()) == 1 })
	if got := rec.list(); got[0] != b.ID+" lease_expired" {
		t.Errorf("reclaimed %q, want %s lease_expired", got, b.ID)
	}
	if _, err := tb.GetFor(ctx, b.ID); !errors.Is(err, ErrUnknownSocket) || !strings.Contains(err.Error(), "the lease of session "+si.ID+" expired") {
		t.Errorf("the expired session's socket: %v", err)
	}
	if _, err := tb.KeepAlive(ctx, si.ID); !errors.Is(err, ErrUnknownSession) {
		t.Errorf("KeepAlive of an expired session: %v", err)
	}
}

// TestSessionKeepAlive: a KeepAlive half-way through the lease keeps the session past its
// first end; it then ends a ttl after the KeepAlive.
func TestSessionKeepAlive(t *testing.T) {
	t.Parallel()
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "a"})
	si, err := tb.OpenSession(ctx, MinSessionTTL, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "half the lease", func() bool { return time.Since(si.Created) >= MinSessionTTL/2 })
	kept, err := tb.KeepAlive(ctx, si.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := kept.Expires.Sub(si.Expires); d < MinSessionTTL/2 || d > MinSessionTTL {
		t.Errorf("KeepAlive moved the end by %v, want about %v", d, MinSessionTTL/2)
	}
	waitFor(t, 5*time.Second, "past the first end", func() bool { return time.Now().After(si.Expires.Add(100 * time.Millisecond)) })
	if tb.NumSessions() != 1 {
		t.Fatal("the session ended at its first end despite the KeepAlive")
	}
	waitFor(t, 5*time.Second, "the lease ends", func() bool { return tb.NumSessions() == 0 })
	if late := time.Since(kept.Expires); late < 0 || late > 1500*time.Millisecond {
		t.Errorf("the kept-alive session ended %v after its new end", late)
	}
}

// TestSessionBounds: the ttl and the name are checked at both ends.
func TestSessionBounds(t *testing.T) {
	t.Parallel()
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "a"})
	for _, tc := range []struct {
		ttl  time.Duration
		name string
		ok   bool
	}{
		{0, "", true}, {MinSessionTTL, "", true}, {MaxSessionTTL, "", true},
		{MinSessionTTL - 1, "", false}, {MaxSessionTTL + 1, "", false}, {-time.Second, "", false},
		{time.Minute, strings.Repeat("n", maxSessionName), true}, {time.Minute, strings.Repeat("n", maxSessionName+1), false},
	} {
		si, err := tb.OpenSession(ctx, tc.ttl, tc.name)
		if tc.ok != (err == nil) {
			t.Errorf("ttl %v, name of %d: %v", tc.ttl, len(tc.name), err)
			continue
		}
		if err != nil {
			if Reason(err) != contract.ReasonInvalidArgument {
				t.Errorf("ttl %v, name of %d: reason %s", tc.ttl, len(tc.name), Reason(err))
			}
			continue
		}
		if want := max(tc.ttl, 0); want == 0 && si.TTL != DefaultSessionTTL || want != 0 && si.TTL != want {
			t.Errorf("ttl %v: session ttl %v", tc.ttl, si.TTL)
		}
		if _, _, err := tb.CloseSession(ctx, si.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSessionsPerCaller: a caller's sessions are its own, counted against its limit; closing
// one leaves the others listed and makes room for another.
func TestSessionsPerCaller(t *testing.T) {
	t.Parallel()
	tb, _ := admitTable(t) // limits.sessions: 4
	a := WithCaller(context.Background(), Caller{ID: "a"})
	b := WithCaller(context.Background(), Caller{ID: "b"})
	var ids []string
	for range 4 {
		si, err := tb.OpenSession(a, time.Minute, "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, si.ID)
	}
	if _, err := tb.OpenSession(a, time.Minute, ""); limitOf(err) != "limits.sessions" {
		t.Fatalf("a 5th session: %v, want limits.sessions", err)
	}
	bs, err := tb.OpenSession(b, time.Minute, "")
	if err != nil {
		t.Fatalf("b's first session beside a's 4: %v", err)
	}
	for _, op := range []func() error{
		func() error { _, _, err := tb.CloseSession(b, ids[0]); return err },
		func() error { _, err := tb.KeepAlive(b, ids[0]); return err },
		func() error {
			_, err := tb.Bind(WithSession(b, ids[0]), "udp", "127.0.0.1:0", "", nil, nil)
			return err
		},
	} {
		if err := op(); !errors.Is(err, ErrUnknownSession) {
			t.Errorf("b on a's session: %v, want ErrUnknownSession", err)
		}
	}
	if _, n, err := tb.CloseSession(a, ids[1]); err != nil || n != 0 {
		t.Fatalf("CloseSession = %d, %v", n, err)
	}
	if got := sessionIDs(tb.ListSessions(a)); !equalSets(got, []string{ids[0], ids[2], ids[3]}) {
		t.Errorf("a's sessions after closing one: %q, want %q", got, []string{ids[0], ids[2], ids[3]})
	}
	if got := sessionIDs(tb.ListSessions(b)); !equalSets(got, []string{bs.ID}) {
		t.Errorf("b's sessions: %q", got)
	}
	if _, err := tb.OpenSession(a, time.Minute, ""); err != nil {
		t.Errorf("a session in the room a closed one left: %v", err)
	}
	for _, id := range []string{ids[0], ids[2], ids[3]} {
		if _, _, err := tb.CloseSession(a, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := tb.CloseSession(b, bs.ID); err != nil {
		t.Fatal(err)
	}
	if got := tb.ListSessions(a); len(got) != 1 {
		t.Errorf("a's sessions: %+v, want the last one opened", got)
	}
	if got := tb.ListSessions(b); len(got) != 0 {
		t.Errorf("b's sessions after closing its only one: %+v", got)
	}
	tb.mu.Lock()
	_, bKept := tb.sessionsBy["b"]
	tb.mu.Unlock()
	if bKept {
		t.Error("the table keeps an empty session map for b")
	}
}

func sessionIDs(ss []SessionInfo) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

func equalSets(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestSameInstance: a call names the right agent instance by the header it sends and by the
// socket id; the header, when given, is what the error names.
func TestSameInstance(t *testing.T) {
	t.Parallel()
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	ours := contract.FormatSocketID(tb.instance, 1)
	otherInst := strings.Repeat("0", contract.InstanceIDLen)
	if otherInst == tb.instance {
		otherInst = strings.Repeat("1", contract.InstanceIDLen)
	}
	theirs := contract.FormatSocketID(otherInst, 1)
	third := strings.Repeat("2", contract.InstanceIDLen)
	bg := context.Background()
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		id       string
		expected string // "" for no error
	}{
		{"ours, no header", bg, ours, ""},
		{"not an id", bg, "nonsense", ""},
		{"ours, header ours", WithInstance(bg, tb.instance), ours, ""},
		{"ours, short header", WithInstance(bg, contract.ShortInstance(tb.instance)), ours, ""},
		{"theirs, no header", bg, theirs, contract.ShortInstance(otherInst)},
		{"ours, header theirs", WithInstance(bg, third), ours, third},
		{"theirs, header third", WithInstance(bg, third), theirs, third},
	} {
		err := tb.sameInstance(tc.ctx, tc.id)
		if tc.expected == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrUnknownSocket) || Metadata(err)["expected_instance"] != tc.expected {
			t.Errorf("%s: %v, metadata %v; want UNKNOWN_SOCKET expecting %s", tc.name, err, Metadata(err), tc.expected)
		}
	}
	if err := tb.sameInstance(WithInstance(bg, "xyz"), ours); Reason(err) != contract.ReasonInvalidArgument {
		t.Errorf("a malformed header: %v", err)
	}
}

// TestReclaimedMemory: the table remembers why it closed the last maxReclaimed sockets, no
// fewer, and forgets the oldest first.
func TestReclaimedMemory(t *testing.T) {
	t.Parallel()
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "a"})
	tb.mu.Lock()
	for i := range maxReclaimed - 1 {
		id := "old-" + strconv.Itoa(i)
		tb.reclaimed[id] = reclaim{owner: "a", why: "old"}
		tb.reclaimedOrder = append(tb.reclaimedOrder, id)
	}
	tb.mu.Unlock()
	var ids []string
	for range 2 {
		b, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b.ID)
	}
	if n := tb.CloseOwner("a", "revoked"); n != 2 {
		t.Fatalf("CloseOwner closed %d, want 2", n)
	}
	tb.mu.Lock()
	n := len(tb.reclaimed)
	_, oldestKept := tb.reclaimed["old-0"]
	_, secondKept := tb.reclaimed["old-1"]
	tb.mu.Unlock()
	if n != maxReclaimed || oldestKept || !secondKept {
		t.Errorf("remembered %d (oldest kept: %v, second: %v); want %d, the oldest forgotten", n, oldestKept, secondKept, maxReclaimed)
	}
	for _, id := range ids {
		if _, err := tb.GetFor(ctx, id); !strings.Contains(fmt.Sprint(err), "the agent closed it: revoked") {
			t.Errorf("socket %s: %v", id, err)
		}
	}
}

// TestUnknownSocketText: an id of this instance's shape that names no socket was closed or
// never opened; an id of no instance's shape may be from before a restart.
func TestUnknownSocketText(t *testing.T) {
	t.Parallel()
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	ctx := WithCaller(context.Background(), Caller{ID: "a"})
	for id, want := range map[string]string{
		contract.FormatSocketID(tb.instance, 99): "has no such socket: it was closed, or never opened; ListSockets shows the open ones",
		"nonsense":                               "has no such socket: if it was opened before, the agent restarted",
	} {
		_, err := tb.GetFor(ctx, id)
		if !errors.Is(err, ErrUnknownSocket) || !strings.Contains(err.Error(), want) {
			t.Errorf("GetFor(%s): %v, want %q", id, err, want)
		}
	}
}
