package engine

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestBounceGuard: a peer that sends back what the socket answered it, one datagram or many
// interleaved, is a loop after loopBounces in a row; a peer whose datagrams differ (a probe's
// sequence numbers) never is, and another peer starts afresh.
func TestBounceGuard(t *testing.T) {
	p := netip.MustParseAddrPort("127.0.0.1:5000")
	q := netip.MustParseAddrPort("127.0.0.1:5001")
	count := func(b *bounceGuard, from netip.AddrPort, n int, datagram func(i int) []byte) int {
		for i := range n {
			if b.isLoop(from, datagram(i)) {
				return i
			}
		}
		return -1
	}
	same := func(int) []byte { return []byte("ping") }
	var b bounceGuard
	if i := count(&b, p, 1000, same); i != loopBounces {
		t.Errorf("one datagram bouncing: loop at %d, want %d", i, loopBounces)
	}
	ten := func(i int) []byte { return []byte{byte(i % 10)} }
	b = bounceGuard{}
	if i := count(&b, p, 1000, ten); i != loopBounces+9 {
		t.Errorf("ten datagrams bouncing: loop at %d, want %d", i, loopBounces+9)
	}
	seq := func(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }
	b = bounceGuard{}
	if i := count(&b, p, 10000, seq); i != -1 {
		t.Errorf("a probe's datagrams (each its own): loop at %d, want none", i)
	}
	b = bounceGuard{}
	count(&b, p, loopBounces-1, same)
	if b.isLoop(q, []byte("ping")) || b.isLoop(p, []byte("ping")) {
		t.Error("another peer between the bounces: a loop, want a fresh count")
	}
}
