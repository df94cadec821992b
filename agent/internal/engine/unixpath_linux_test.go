//go:build linux

package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

// Race bounds: each swap race runs this many tries, and more while either outcome (through or
// refused) has come up fewer than 100 times, as on a loaded machine where the swapper wins most
// turns; never longer than raceTime.
const (
	raceTries = 3000
	raceTime  = 4 * time.Second
)

// unixTable is a table whose policy allows UNIX paths under allowed only.
func unixTable(t *testing.T, allowed string, idle time.Duration) (*Table, context.Context) {
	t.Helper()
	pol, err := policy.Parse("unix.yaml", fmt.Appendf(nil, "default:\n  unix_paths:\n    allow: [%q]\n", allowed))
	if err != nil {
		t.Fatal(err)
	}
	tb := New(Config{DefaultTimeout: 2 * time.Second, MaxRecvBytes: 1 << 20, Policy: pol, IdleTimeout: idle})
	t.Cleanup(tb.Stop)
	return tb, WithCaller(context.Background(), Caller{ID: "token:unix"})
}

// swapper is the attack: allowed/d, a directory, and allowed/l, a symlink to outside, trade
// places atomically (renameat2 RENAME_EXCHANGE) as fast as they can, so allowed/d/NAME means
// in turn a name in the directory the policy allows and one outside it.
type swapper struct {
	allowed, outside, d, l string
	real                   int // the directory, whatever its name at the moment
	flips                  atomic.Int64
	stop                   chan struct{}
	done                   chan struct{}
}

func newSwapper(t *testing.T) *swapper {
	t.Helper()
	stepAsideInMutation(t, "a UNIX path swap race")
	base := t.TempDir()
	sw := &swapper{allowed: filepath.Join(base, "allowed"), outside: filepath.Join(base, "outside")}
	sw.d, sw.l = filepath.Join(sw.allowed, "d"), filepath.Join(sw.allowed, "l")
	for _, dir := range []string{sw.allowed, sw.outside, sw.d} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(sw.outside, sw.l); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(sw.d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sw.real = fd
	t.Cleanup(func() { _ = unix.Close(fd) })
	return sw
}

func (sw *swapper) start(t *testing.T) {
	t.Helper()
	if err := unix.Renameat2(unix.AT_FDCWD, sw.d, unix.AT_FDCWD, sw.l, unix.RENAME_EXCHANGE); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("renameat2 RENAME_EXCHANGE in %s: %v; CI must run the swap race (give TMPDIR on tmpfs or ext4)", sw.allowed, err)
		}
		t.Skipf("renameat2 RENAME_EXCHANGE in %s: %v (the file system cannot swap atomically)", sw.allowed, err)
	}
	sw.flips.Add(1)
	sw.stop, sw.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sw.done)
		for {
			select {
			case <-sw.stop:
				return
			default:
			}
			if unix.Renameat2(unix.AT_FDCWD, sw.d, unix.AT_FDCWD, sw.l, unix.RENAME_EXCHANGE) == nil {
				sw.flips.Add(1)
			}
		}
	}()
	t.Cleanup(sw.halt)
}

// halt stops the swapping and leaves allowed/d the directory again.
func (sw *swapper) halt() {
	if sw.stop == nil {
		return
	}
	select {
	case <-sw.stop:
		return
	default:
	}
	close(sw.stop)
	<-sw.done
	if sw.flips.Load()%2 == 1 {
		_ = unix.Renameat2(unix.AT_FDCWD, sw.d, unix.AT_FDCWD, sw.l, unix.RENAME_EXCHANGE)
	}
}

// inReal reports whether the swapped directory holds name (without following a symlink).
func (sw *swapper) inReal(name string) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(sw.real, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return err == nil, err
}

// outsideEntries lists what is in the outside directory.
func (sw *swapper) outsideEntries(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(sw.outside)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// Findings 1 and 2, bind and close: with allowed/d swapped for a symlink to outside all the
// while, Listen, Bind and Dial's local_address on allowed/d/NAME either bind in the allowed
// directory or are refused; and Close, with a victim file waiting at outside/NAME, removes the
// socket's own file and never the victim. Thousands of tries.
func TestUnixBindCloseSwapRace(t *testing.T) {
	sw := newSwapper(t)
	tb, ctx := unixTable(t, sw.allowed, 0)
	// The peer of the Dial case lives in the allowed directory, out of the swap's reach.
	peer, err := tb.Bind(ctx, "unixgram", filepath.Join(sw.allowed, "peer.dg"), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sw.start(t)
	var bound, denied, escaped, deleted, leaked int
	var otherErrs []error
	start := time.Now()
	tries := 0
	for ; time.Since(start) < raceTime && (tries < raceTries || bound < 100 || denied < 100); tries++ {
		name := fmt.Sprintf("v%d.sock", tries)
		path := filepath.Join(sw.d, name)
		var in Info
		switch tries % 3 {
		case 0:
			in, err = tb.Listen(ctx, "unix", path, "", nil)
		case 1:
			in, err = tb.Bind(ctx, "unixgram", path, "", nil, nil)
		case 2:
			in, err = tb.Dial(ctx, "unixgram", peer.Local, path, time.Second, "", nil)
		}
		if err != nil {
			if Reason(err) == contract.ReasonPolicyDenied {
				denied++
			} else if len(otherErrs) < 5 {
				otherErrs = append(otherErrs, err)
			}
			continue
		}
		bound++
		if ok, _ := sw.inReal(name); !ok {
			escaped++ // bound, but not in the allowed directory: outside, through the link
		}
		victim := filepath.Join(sw.outside, name)
		if err := os.WriteFile(victim, []byte("victim"), 0o600); err != nil {
			escaped++
		}
		if _, err := tb.Close(ctx, in.ID); err != nil {
			t.Fatalf("close %s: %v", in.ID, err)
		}
		if b, err := os.ReadFile(victim); err != nil || string(b) != "victim" {
			deleted++
		}
		if ok, _ := sw.inReal(name); ok {
			leaked++
		}
	}
	sw.halt()
	t.Logf("%d tries in %s, %d swaps: %d bound, %d refused by the policy", tries, time.Since(start).Round(time.Millisecond), sw.flips.Load(), bound, denied)
	if escaped > 0 || deleted > 0 || leaked > 0 {
		t.Errorf("the swap won: %d sockets bound outside the allowed directory, %d files outside deleted at close, %d socket files left behind", escaped, deleted, leaked)
	}
	for _, e := range sw.outsideEntries(t) {
		if b, err := os.ReadFile(filepath.Join(sw.outside, e)); err != nil || string(b) != "victim" {
			t.Errorf("outside holds %s, which the test did not put there", e)
		}
	}
	if len(otherErrs) > 0 {
		t.Errorf("refusals other than POLICY_DENIED: %v", otherErrs)
	}
	if bound < 100 || denied < 100 || tries < 1000 {
		t.Errorf("the race was not run: %d tries, %d bound, %d refused; want at least 1000, 100 and 100", tries, bound, denied)
	}
}

// countingUnix listens (stream) and binds (datagram) NAME in dir and counts what reaches them.
type countingUnix struct {
	ln    net.Listener
	pc    net.PacketConn
	conns atomic.Int64
	dgs   atomic.Int64
	wg    sync.WaitGroup
}

func listenCounting(t *testing.T, dir string) *countingUnix {
	t.Helper()
	c := &countingUnix{}
	var err error
	if c.ln, err = net.Listen("unix", filepath.Join(dir, "t.sock")); err != nil {
		t.Fatal(err)
	}
	if c.pc, err = net.ListenPacket("unixgram", filepath.Join(dir, "t.dg")); err != nil {
		t.Fatal(err)
	}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		for {
			conn, err := c.ln.Accept()
			if err != nil {
				return
			}
			c.conns.Add(1)
			_ = conn.Close()
		}
	}()
	go func() {
		defer c.wg.Done()
		buf := make([]byte, 16)
		for {
			if _, _, err := c.pc.ReadFrom(buf); err != nil {
				return
			}
			c.dgs.Add(1)
		}
	}()
	return c
}

// settle waits (bounded) until n connections and datagrams have arrived, then stops.
func (c *countingUnix) settle(n int64) {
	for end := time.Now().Add(2 * time.Second); c.conns.Load()+c.dgs.Load() < n && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	_ = c.ln.Close()
	_ = c.pc.Close()
	c.wg.Wait()
}

// Finding 2, connect: with allowed/d swapped for a symlink to outside all the while, Dial
// (unix, unixgram) and SendTo to allowed/d/t.* reach the sockets in the allowed directory or are
// refused, and never the sockets of the same names outside. Thousands of tries.
func TestUnixConnectSwapRace(t *testing.T) {
	sw := newSwapper(t)
	tb, ctx := unixTable(t, sw.allowed, 0)
	inside, outside := listenCounting(t, sw.d), listenCounting(t, sw.outside)
	src, err := tb.Bind(ctx, "unixgram", filepath.Join(sw.allowed, "src.dg"), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sw.start(t)
	var reached, denied int64
	var otherErrs []error
	start := time.Now()
	tries := 0
	for ; time.Since(start) < raceTime && (tries < raceTries || reached < 100 || denied < 100); tries++ {
		switch tries % 3 {
		case 0, 1:
			network, name := "unix", "t.sock"
			if tries%3 == 1 {
				network, name = "unixgram", "t.dg"
			}
			in, err := tb.Dial(ctx, network, filepath.Join(sw.d, name), "", time.Second, "", nil)
			if err == nil && network == "unixgram" {
				_, err = tb.Send(ctx, in.ID, []byte("x"), time.Second)
			}
			if in.ID != "" {
				_, _ = tb.Close(ctx, in.ID)
			}
			err = classify(err, &reached, &denied)
			if err != nil && len(otherErrs) < 5 {
				otherErrs = append(otherErrs, err)
			}
		case 2:
			_, err := tb.SendTo(ctx, src.ID, filepath.Join(sw.d, "t.dg"), []byte("x"), time.Second)
			if err = classify(err, &reached, &denied); err != nil && len(otherErrs) < 5 {
				otherErrs = append(otherErrs, err)
			}
		}
	}
	sw.halt()
	inside.settle(reached)
	outside.settle(0)
	t.Logf("%d tries in %s, %d swaps: %d reached the allowed sockets, %d refused by the policy", tries, time.Since(start).Round(time.Millisecond), sw.flips.Load(), reached, denied)
	if n := outside.conns.Load() + outside.dgs.Load(); n > 0 {
		t.Errorf("the swap won %d times: %d connections and %d datagrams reached the sockets outside the allowed directory", n, outside.conns.Load(), outside.dgs.Load())
	}
	if got := inside.conns.Load() + inside.dgs.Load(); got != reached {
		t.Errorf("the allowed sockets got %d connections and datagrams, the calls that succeeded %d", got, reached)
	}
	if len(otherErrs) > 0 {
		t.Errorf("refusals other than POLICY_DENIED: %v", otherErrs)
	}
	if reached < 100 || denied < 100 || tries < 1000 {
		t.Errorf("the race was not run: %d tries, %d reached, %d refused; want at least 1000, 100 and 100", tries, reached, denied)
	}
}

// classify counts a call that succeeded or was refused by the policy, and returns any other
// error.
func classify(err error, reached, denied *int64) error {
	switch {
	case err == nil:
		*reached++
	case Reason(err) == contract.ReasonPolicyDenied:
		*denied++
	default:
		return err
	}
	return nil
}

// Every way a socket ends removes the file of the UNIX path it bound (Listen, Bind, Dial's
// local_address on unix and unixgram): Close, the end of its session, idle reaping, Stop.
func TestUnixFilesRemovedOnEveryClose(t *testing.T) {
	const idle = 200 * time.Millisecond
	for _, how := range []string{"close", "session", "idle", "stop"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var tb *Table
			var ctx context.Context
			if how == "idle" {
				tb, ctx = unixTable(t, dir, idle)
			} else {
				tb, ctx = unixTable(t, dir, 0)
			}
			var sid string
			if how == "session" {
				si, err := tb.OpenSession(ctx, time.Minute, "s")
				if err != nil {
					t.Fatal(err)
				}
				sid, ctx = si.ID, WithSession(ctx, si.ID)
			}
			p := func(n string) string { return filepath.Join(dir, n) }
			var ids []string
			open := func(in Info, err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, in.ID)
			}
			open(tb.Listen(ctx, "unix", p("l.sock"), "", nil))
			open(tb.Bind(ctx, "unixgram", p("b.dg"), "", nil, nil))
			open(tb.Dial(ctx, "unixgram", p("b.dg"), p("c.dg"), time.Second, "", nil))
			open(tb.Dial(ctx, "unix", p("l.sock"), p("d.sock"), time.Second, "", nil))
			opened := time.Now()
			files := []string{"l.sock", "b.dg", "c.dg", "d.sock"}
			for _, f := range files {
				if fi, err := os.Lstat(p(f)); err != nil || fi.Mode()&os.ModeSocket == 0 {
					t.Fatalf("%s after bind: %v, %v; want a socket file", f, fi, err)
				}
			}
			if in, err := tb.GetFor(ctx, ids[0]); err != nil || in.Local != p("l.sock") {
				t.Errorf("listener's local address %q, %v; want %s", in.Local, err, p("l.sock"))
			}
			switch how {
			case "close":
				for _, id := range ids {
					if _, err := tb.Close(ctx, id); err != nil {
						t.Fatal(err)
					}
				}
			case "session":
				if _, n, err := tb.CloseSession(ctx, sid); err != nil || n != len(ids) {
					t.Fatalf("close session: %d sockets, %v", n, err)
				}
			case "stop":
				tb.Stop()
			}
			left := files
			for end := time.Now().Add(idle + 3*time.Second); len(left) > 0 && time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
				left = left[:0:0]
				for _, f := range files {
					if _, err := os.Lstat(p(f)); err == nil {
						left = append(left, f)
					}
				}
			}
			gone := time.Since(opened)
			if len(left) > 0 {
				t.Fatalf("after %s, still there: %v", how, left)
			}
			if how == "idle" && (gone < idle || gone > idle+2*time.Second) {
				t.Errorf("idle sockets' files gone after %s; want between %s and %s", gone, idle, idle+2*time.Second)
			}
			if tb.Len() != 0 {
				t.Errorf("%d sockets left in the table", tb.Len())
			}
		})
	}
}

// A file that took the place of a socket's file while it was open is not the agent's to
// remove: Close leaves it, whatever it is.
func TestUnixCloseSparesReplacement(t *testing.T) {
	dir := t.TempDir()
	tb, ctx := unixTable(t, dir, 0)
	for _, network := range []string{"unix", "unixgram"} {
		p := filepath.Join(dir, network+".sock")
		var in Info
		var err error
		if network == "unix" {
			in, err = tb.Listen(ctx, network, p, "", nil)
		} else {
			in, err = tb.Bind(ctx, network, p, "", nil, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("not yours"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Close(ctx, in.ID); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != "not yours" {
			t.Errorf("%s: the file that replaced the socket is %q, %v after Close; want it untouched", network, b, err)
		}
	}
}
