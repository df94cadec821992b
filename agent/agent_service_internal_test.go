package agent

import (
	"os"
	"testing"
	"time"
)

// GetInfo reads the hostname and interfaces once per HostInfoMaxAge and reuses them between.
func TestHostCacheMaxAge(t *testing.T) {
	var c hostCache
	t0 := time.Now()
	h1 := c.get(t0)
	host, _ := os.Hostname()
	if h1.hostname != host || len(h1.interfaces) == 0 {
		t.Fatalf("snapshot: hostname %q, %d interfaces; want %q and at least loopback", h1.hostname, len(h1.interfaces), host)
	}
	if h := c.get(h1.at.Add(HostInfoMaxAge - time.Millisecond)); h != h1 {
		t.Errorf("a snapshot younger than %s was read again", HostInfoMaxAge)
	}
	h2 := c.get(h1.at.Add(HostInfoMaxAge))
	if h2 == h1 {
		t.Fatalf("a snapshot %s old was reused", HostInfoMaxAge)
	}
	if h2.hostname != h1.hostname || len(h2.interfaces) != len(h1.interfaces) {
		t.Errorf("re-read: %q with %d interfaces, before %q with %d", h2.hostname, len(h2.interfaces), h1.hostname, len(h1.interfaces))
	}
	if h := c.get(h2.at.Add(-time.Millisecond)); h == h2 {
		t.Errorf("a snapshot from the future was reused")
	}
}
