package engine

import (
	"net/netip"
	"testing"
	"time"
)

// The reply rate, with the agent's own figures: a burst of replyBurst answers to one peer
// address (whatever its port), then replyRate a second; other addresses have their own.
func TestPeerLimiter(t *testing.T) {
	t.Parallel()
	l := newPeerLimiter(replyLimit)
	now := time.Unix(1000, 0)
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	count := func(addr netip.Addr, at time.Time, tries int) (n int) {
		for range tries {
			if l.allow(addr, at) {
				n++
			}
		}
		return n
	}
	if n := count(a, now, 10*replyBurst); n != replyBurst {
		t.Errorf("burst: %d answers, want %d", n, replyBurst)
	}
	if n := count(b, now, 10); n != 10 {
		t.Errorf("another address: %d of 10 answered", n)
	}
	if n := count(a, now.Add(100*time.Millisecond), 10*replyBurst); n != replyRate/10 {
		t.Errorf("100ms later: %d answers, want %d", n, replyRate/10)
	}
	if n := count(a, now.Add(time.Hour), 10*replyBurst); n != replyBurst {
		t.Errorf("an hour later: %d answers, want the burst %d (never more)", n, replyBurst)
	}
	// The table of peers stays bounded: full, it forgets peers whose buckets are full again.
	l = newPeerLimiter(replyLimit)
	for i := range maxPeers {
		l.allow(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), now)
	}
	if l.allow(a, now) || len(l.peers) != maxPeers {
		t.Errorf("a new peer answered while %d peers are tracked and none idle", len(l.peers))
	}
	if !l.allow(a, now.Add(time.Second)) || len(l.peers) != 1 {
		t.Errorf("after the others went idle: %d peers tracked, want 1", len(l.peers))
	}
}
