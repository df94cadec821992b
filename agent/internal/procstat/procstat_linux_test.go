package procstat

import (
	"net"
	"os"
	"runtime"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRead: opening n sockets adds exactly n open files; threads and RSS are those of
// /proc/self/status. Not parallel: other tests' files would move the count.
func TestRead(t *testing.T) {
	before := Read()
	if before.Goroutines < 1 || before.OpenFiles < 3 || before.Threads < 1 || before.RSSBytes < 1<<20 {
		t.Fatalf("implausible %+v", before)
	}
	const n = 7
	var conns []net.PacketConn
	for range n {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	after := Read()
	if after.OpenFiles != before.OpenFiles+n {
		t.Errorf("open files %d -> %d with %d sockets opened, want +%d", before.OpenFiles, after.OpenFiles, n, n)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	if after.OpenFiles != len(ents)-1 {
		t.Errorf("open files %d; /proc/self/fd lists %d besides the directory itself", after.OpenFiles, len(ents)-1)
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if want := statusField(b, "Threads:"); int64(after.Threads) != want || want < 1 {
		t.Errorf("threads %d, /proc/self/status %d", after.Threads, want)
	}
	if rss := statusField(b, "VmRSS:") * 1024; after.RSSBytes <= 0 || after.RSSBytes > 2*rss || rss > 2*after.RSSBytes {
		t.Errorf("RSS %d, /proc/self/status %d", after.RSSBytes, rss)
	}
	if g := runtime.NumGoroutine(); after.Goroutines < 1 || after.Goroutines > g+4 {
		t.Errorf("goroutines %d, runtime says %d", after.Goroutines, g)
	}
}

func TestStatusField(t *testing.T) {
	b := []byte("Name:\tx\nVmRSS:\t  1234 kB\nThreads:\t9\n")
	for _, c := range []struct {
		name string
		want int64
	}{{"VmRSS:", 1234}, {"Threads:", 9}, {"VmHWM:", 0}, {"Name:", 0}, {"Nam", 0}} {
		if got := statusField(b, c.name); got != c.want {
			t.Errorf("%s = %d, want %d", c.name, got, c.want)
		}
	}
}
