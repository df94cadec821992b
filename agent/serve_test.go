package agent_test

// Tests of SocketService.Serve: the agent serving a listener or a bound datagram socket with
// echo, discard or source, against real loopback clients of the test.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/wire"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"github.com/sockagent/sockagent/lab/labtest"
	"google.golang.org/grpc/codes"
)

func (e *env) serve(t *testing.T, id string, b sockagentv1.Behaviour, chunk, maxConns uint32) *sockagentv1.Socket {
	t.Helper()
	r, err := e.sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: id, Behaviour: b, ChunkSize: chunk, MaxConnections: maxConns})
	if err != nil {
		t.Fatalf("serve %s %s: %v", id, b, err)
	}
	if r.GetSocket().GetServing().GetBehaviour() != b {
		t.Fatalf("serve %s: serving %v, want behaviour %s", id, r.GetSocket().GetServing(), b)
	}
	return r.GetSocket()
}

// waitServing polls GetSocket until cond holds for the socket's serving counters.
func (e *env) waitServing(t *testing.T, id, what string, cond func(*sockagentv1.Serving) bool) *sockagentv1.Serving {
	t.Helper()
	return e.waitSocket(t, id, "serving "+what, func(s *sockagentv1.Socket) bool { return cond(s.GetServing()) }).GetServing()
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func dialT(t *testing.T, network, address string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, address, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, address, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	return c
}

func hasIPv6Loopback() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func TestServeEchoStream(t *testing.T) {
	for _, tc := range []struct{ network, address string }{
		{"tcp", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
		{"unix", ""},
	} {
		t.Run(tc.network, func(t *testing.T) {
			if tc.network == "tcp6" && !hasIPv6Loopback() {
				labtest.SkipOutsideCI(t, "no ::1 on this host")
			}
			addr := tc.address
			e := newEnv(t)
			if tc.network == "unix" {
				addr = e.sockPath("echo.sock")
			}
			l := e.listen(t, tc.network, addr)
			e.serve(t, l.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
			c := dialT(t, tc.network, l.GetLocalAddress())
			want := randBytes(t, 300_000)
			go func() { _, _ = c.Write(want) }()
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read echo: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("echoed bytes differ from the bytes sent")
			}
			sv := e.waitServing(t, l.GetSocketId(), "connections 1, bytes in and out 300000", func(sv *sockagentv1.Serving) bool {
				return sv.GetConnections() == 1 && sv.GetBytesIn() == 300_000 && sv.GetBytesOut() == 300_000
			})
			if sv.GetActiveConnections() != 1 || sv.GetErrors() != 0 {
				t.Errorf("serving %v: want active 1, errors 0", sv)
			}
			c.Close()
			e.waitServing(t, l.GetSocketId(), "active 0 after the client closed", func(sv *sockagentv1.Serving) bool {
				return sv.GetActiveConnections() == 0 && sv.GetErrors() == 0
			})
		})
	}
}

func TestServeEchoDatagram(t *testing.T) {
	e := newEnv(t)
	b := e.bind(t, "udp", "127.0.0.1:0")
	e.serve(t, b.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	c := dialT(t, "udp", b.GetLocalAddress())
	sizes := []int{1, 100, 1400, 9000}
	total := 0
	for _, n := range sizes {
		want := randBytes(t, n)
		if _, err := c.Write(want); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 65536)
		k, err := c.Read(got)
		if err != nil {
			t.Fatalf("read echo of %d bytes: %v", n, err)
		}
		if !bytes.Equal(got[:k], want) {
			t.Fatalf("echo of %d bytes: got %d bytes, different", n, k)
		}
		total += n
	}
	e.waitServing(t, b.GetSocketId(), "4 datagrams in and out", func(sv *sockagentv1.Serving) bool {
		return sv.GetDatagramsIn() == 4 && sv.GetDatagramsOut() == 4 && sv.GetBytesIn() == uint64(total) && sv.GetBytesOut() == uint64(total)
	})
}

func TestServeEchoUnixgram(t *testing.T) {
	e := newEnv(t)
	dir := e.a.SocketDir()
	b := e.bind(t, "unixgram", filepath.Join(dir, "echo.sock"))
	e.serve(t, b.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "client.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	want := randBytes(t, 2000)
	if _, err := c.WriteTo(want, &net.UnixAddr{Name: b.GetLocalAddress(), Net: "unixgram"}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 65536)
	n, _, err := c.ReadFrom(got)
	if err != nil || !bytes.Equal(got[:n], want) {
		t.Fatalf("unixgram echo: %d bytes, equal %v, err %v", n, bytes.Equal(got[:n], want), err)
	}
}

func TestServeDiscardStream(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, l.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_DISCARD, 0, 0)
	c := dialT(t, "tcp", l.GetLocalAddress())
	const n = 3<<20 + 123
	if _, err := c.Write(randBytes(t, n)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	e.waitServing(t, l.GetSocketId(), "bytes_in exactly 3 MiB + 123, connection ended, no errors", func(sv *sockagentv1.Serving) bool {
		return sv.GetBytesIn() == n && sv.GetActiveConnections() == 0 && sv.GetBytesOut() == 0 && sv.GetErrors() == 0
	})
}

func TestServeSourceStream(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, l.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_SOURCE, 1000, 0)
	c := dialT(t, "tcp", l.GetLocalAddress())
	got := make([]byte, 1<<20)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read from source: %v", err)
	}
	if got[0] != 'a' || got[25] != 'z' || got[26] != 'a' || got[1000] != 'a' {
		t.Errorf("source bytes %q..., want the alphabet repeated per chunk", got[:30])
	}
	sv := e.waitServing(t, l.GetSocketId(), "bytes_out >= 1 MiB", func(sv *sockagentv1.Serving) bool { return sv.GetBytesOut() >= 1<<20 })
	if sv.GetConnections() != 1 {
		t.Errorf("connections %d, want 1", sv.GetConnections())
	}
	c.Close()
	e.waitServing(t, l.GetSocketId(), "the connection ended by the peer's close, without error", func(sv *sockagentv1.Serving) bool {
		return sv.GetActiveConnections() == 0 && sv.GetErrors() == 0
	})
}

func dataDatagram(test, seq uint64, size int) []byte {
	b := make([]byte, size)
	wire.PutHeader(b, wire.Header{Type: wire.Data, Test: test, Seq: seq})
	return b
}

// askReport asks a served discard or source for the Report of test over c: a ReportRequest
// without the cookie first, which must be answered with a Cookie, then with it; it returns
// the Report.
func askReport(t *testing.T, c net.Conn, test uint64) wire.ReportBody {
	t.Helper()
	if _, err := c.Write(wire.AppendReportRequest(nil, test, nil)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	cookie := false
	for {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("waiting for the report of test %d: %v", test, err)
		}
		h, body, err := wire.ParseHeader(buf[:n])
		if err != nil || h.Test != test {
			continue
		}
		if h.Type == wire.Cookie && !cookie {
			cookie = true
			ck, err := wire.ParseCookie(body)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(wire.AppendReportRequest(nil, test, &ck)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if h.Type != wire.Report {
			continue
		}
		if !cookie {
			t.Fatalf("a Report of test %d to a ReportRequest without the cookie", test)
		}
		r, err := wire.ParseReport(body)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

func TestServeDiscardDatagramReport(t *testing.T) {
	e := newEnv(t)
	b := e.bind(t, "udp", "127.0.0.1:0")
	e.serve(t, b.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_DISCARD, 0, 0)
	c := dialT(t, "udp", b.GetLocalAddress())
	for i := range 10 {
		if _, err := c.Write(dataDatagram(7, uint64(i), 100+i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if _, err := c.Write(dataDatagram(8, uint64(i), 50)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write([]byte("not a measurement datagram")); err != nil {
		t.Fatal(err)
	}
	// Loopback can drop under pressure: wait until the discard has read all 14, then ask.
	e.waitServing(t, b.GetSocketId(), "14 datagrams in", func(sv *sockagentv1.Serving) bool { return sv.GetDatagramsIn() == 14 })
	if r := askReport(t, c, 7); r.Datagrams != 10 || r.Bytes != 1045 {
		t.Errorf("report of test 7: %+v, want 10 datagrams, 1045 bytes", r)
	}
	if r := askReport(t, c, 99); r.Datagrams != 0 || r.Bytes != 0 {
		t.Errorf("report of unknown test 99: %+v, want zeros", r)
	}
}

// recvSource reads Data datagrams of test from c until quiet passes without one or the
// read deadline, and returns the count, payload bytes, and whether seqs ran 0,1,2,...
func recvSource(t *testing.T, c net.Conn, test uint64, until func(dg, n uint64) bool) (dg, n uint64, inOrder bool) {
	t.Helper()
	buf := make([]byte, 65536)
	inOrder = true
	for !until(dg, n) {
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading source datagrams (got %d, %d bytes): %v", dg, n, err)
		}
		h, _, err := wire.ParseHeader(buf[:k])
		if err != nil || h.Type != wire.Data || h.Test != test {
			continue
		}
		if h.Seq != dg {
			inOrder = false
		}
		dg++
		n += uint64(k)
	}
	return dg, n, inOrder
}

// servedSource binds a UDP socket on 127.0.0.1 and serves source on it: its id and address.
func (e *env) servedSource(t *testing.T) (id, addr string) {
	t.Helper()
	b := e.bind(t, "udp", "127.0.0.1:0")
	e.serve(t, b.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_SOURCE, 0, 0)
	return b.GetSocketId(), b.GetLocalAddress()
}

// startSource starts test on the served source c is connected to, as Throughput does: a
// SourceStart, the source's Cookie back, the SourceStart again with it.
func startSource(t *testing.T, c net.Conn, test uint64, st wire.StartBody) {
	t.Helper()
	cookie := sourceCookie(t, c, test, st)
	st.Cookie = cookie[:]
	if _, err := c.Write(wire.AppendStart(nil, test, st)); err != nil {
		t.Fatal(err)
	}
}

// sourceCookie sends a SourceStart of test without a cookie and returns the Cookie the
// source answers, failing the test if Data of it comes instead.
func sourceCookie(t *testing.T, c net.Conn, test uint64, st wire.StartBody) [wire.CookieSize]byte {
	t.Helper()
	st.Cookie = nil
	if _, err := c.Write(wire.AppendStart(nil, test, st)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("waiting for the cookie of test %d: %v", test, err)
		}
		h, body, err := wire.ParseHeader(buf[:n])
		if err != nil || h.Test != test {
			continue
		}
		if h.Type == wire.Data {
			t.Fatalf("test %d: Data before the cookie came back", test)
		}
		if h.Type == wire.Cookie {
			c, err := wire.ParseCookie(body)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
}

func (e *env) waitSourceTests(t *testing.T, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for agent.SourceTestsRunning(e.a, id) != n {
		if time.Now().After(deadline) {
			t.Fatalf("socket %s: %d source tests running, want %d", id, agent.SourceTestsRunning(e.a, id), n)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not synchronisation
	}
}

func TestServeSourceDatagram(t *testing.T) {
	e := newEnv(t)
	id, addr := e.servedSource(t)
	c := dialT(t, "udp", addr)

	t.Run("bytes", func(t *testing.T) {
		start := wire.StartBody{RateBitsPerSecond: 8_000_000, Size: 500, Duration: 10 * time.Second, Bytes: 5100}
		startSource(t, c, 1, start)
		dg, n, inOrder := recvSource(t, c, 1, func(_, n uint64) bool { return n >= 5100 })
		if dg != 11 || n != 5100 || !inOrder {
			t.Errorf("got %d datagrams, %d bytes (in order %v); want 11, 5100, in order", dg, n, inOrder)
		}
		e.waitSourceTests(t, id, 0)
		if r := askReport(t, c, 1); r.Datagrams != 11 || r.Bytes != 5100 {
			t.Errorf("report of test 1: %+v, want 11 datagrams, 5100 bytes", r)
		}
	})
	t.Run("duration", func(t *testing.T) {
		// 8 Mbit/s of 1000-byte datagrams for 200ms: about 200 datagrams.
		start := wire.StartBody{RateBitsPerSecond: 8_000_000, Size: 1000, Duration: 200 * time.Millisecond}
		t0 := time.Now()
		startSource(t, c, 2, start)
		e.waitSourceTests(t, id, 1)
		e.waitSourceTests(t, id, 0)
		if el := time.Since(t0); el < 200*time.Millisecond {
			t.Errorf("the test ended after %s, before its 200ms", el)
		}
		r := askReport(t, c, 2)
		if r.Datagrams < 180 || r.Datagrams > 215 || r.Bytes != r.Datagrams*1000 {
			t.Errorf("report of test 2: %+v, want about 200 datagrams of 1000 bytes", r)
		}
	})
	t.Run("stop", func(t *testing.T) {
		start := wire.StartBody{RateBitsPerSecond: 800_000, Size: 1000, Duration: time.Minute}
		startSource(t, c, 3, start)
		recvSource(t, c, 3, func(dg, _ uint64) bool { return dg >= 3 })
		if _, err := c.Write(wire.AppendControl(nil, wire.SourceStop, 3)); err != nil {
			t.Fatal(err)
		}
		e.waitSourceTests(t, id, 0)
	})
}

// A source sends nothing to an address that has not shown it receives there: a SourceStart
// without the cookie, or with another one, gets a Cookie back (smaller than the SourceStart)
// and starts no test; a forged sender address would get its victim that one Cookie only.
func TestServeSourceDatagramCookie(t *testing.T) {
	e := newEnv(t)
	id, addr := e.servedSource(t)
	c := dialT(t, "udp", addr)
	st := wire.StartBody{RateBitsPerSecond: 8_000_000, Size: 1000, Duration: time.Minute}
	cookie := sourceCookie(t, c, 5, st)
	if again := sourceCookie(t, c, 5, st); again != cookie {
		t.Errorf("a second SourceStart got cookie %x, the first %x", again, cookie)
	}
	if other := sourceCookie(t, c, 6, st); other == cookie {
		t.Error("tests 5 and 6 got the same cookie")
	}
	wrong := cookie
	wrong[0] ^= 1
	st.Cookie = wrong[:]
	if _, err := c.Write(wire.AppendStart(nil, 5, st)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if h, _, _ := wire.ParseHeader(buf[:n]); h.Type != wire.Cookie || n != wire.HeaderSize+wire.CookieSize {
		t.Fatalf("a wrong cookie got a %d-byte datagram of type %d, want a Cookie", n, h.Type)
	}
	if got := agent.SourceTestsRunning(e.a, id); got != 0 {
		t.Fatalf("%d source tests running without the right cookie, want 0", got)
	}
	// Another address (another socket) cannot use the cookie of this one.
	c2 := dialT(t, "udp", addr)
	st.Cookie = cookie[:]
	if _, err := c2.Write(wire.AppendStart(nil, 5, st)); err != nil {
		t.Fatal(err)
	}
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err = c2.Read(buf); err != nil {
		t.Fatal(err)
	}
	if h, _, _ := wire.ParseHeader(buf[:n]); h.Type != wire.Cookie || agent.SourceTestsRunning(e.a, id) != 0 {
		t.Fatalf("another address with the cookie: a datagram of type %d, %d tests running; want a Cookie, none", h.Type, agent.SourceTestsRunning(e.a, id))
	}
	// With its cookie, the address gets its test.
	startSource(t, c, 5, wire.StartBody{RateBitsPerSecond: 8_000_000, Size: 500, Duration: 10 * time.Second, Bytes: 1000})
	if dg, n, _ := recvSource(t, c, 5, func(_, n uint64) bool { return n >= 1000 }); dg != 2 || n != 1000 {
		t.Errorf("with the cookie: %d datagrams, %d bytes; want 2, 1000", dg, n)
	}
}

func TestServeSourceDatagramKeepAlive(t *testing.T) {
	defer agent.SetSourceStopAfter(150 * time.Millisecond)()
	e := newEnv(t)
	id, addr := e.servedSource(t)
	c := dialT(t, "udp", addr)
	start := wire.StartBody{RateBitsPerSecond: 800_000, Size: 1000, Duration: time.Minute}
	t0 := time.Now()
	startSource(t, c, 4, start)
	e.waitSourceTests(t, id, 1)
	e.waitSourceTests(t, id, 0) // no keepalive came: the source gave up
	if el := time.Since(t0); el < 150*time.Millisecond || el > 5*time.Second {
		t.Errorf("the test ended after %s; want just after 150ms without a keepalive", el)
	}
	if r := askReport(t, c, 4); r.Datagrams == 0 || r.Datagrams > 100 {
		t.Errorf("report of test 4: %+v, want some datagrams, far fewer than a minute's 6000", r)
	}
}

func TestServeBusyAndKinds(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, "tcp", "127.0.0.1:0")
	id := l.GetSocketId()
	e.serve(t, id, sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	_, err := e.sc.Accept(ctxT(t), &sockagentv1.AcceptRequest{SocketId: id, Timeout: dur(time.Second)})
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonSocketBusy, "served with echo", "Close it")
	_, err = e.sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: id, Behaviour: sockagentv1.Behaviour_BEHAVIOUR_DISCARD})
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonSocketBusy, "already served with echo")

	d := e.dial(t, "tcp", l.GetLocalAddress())
	_, err = e.sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: d.GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO})
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonWrongSocketKind, "connected stream socket")
	u := e.dial(t, "udp", "127.0.0.1:9")
	_, err = e.sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: u.GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO})
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonWrongSocketKind, "connected datagram socket")

	b := e.bind(t, "udp", "127.0.0.1:0")
	_, err = e.sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: b.GetSocketId()})
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "behaviour must be echo, discard, source or proxy")
	_, err = e.sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: b.GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO, ChunkSize: 5 << 20})
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "chunk_size 5242880", "4 MiB")
	l2 := e.listen(t, "tcp", "127.0.0.1:0")
	_, err = e.sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: l2.GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO, ChunkSize: 4 << 20})
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "chunk_size 4194304 x max_connections 1024", "lower one of them")
	_, err = e.sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: l2.GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO, MaxConnections: 100_000})
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "max_connections 100000", "up to 65536")
	e.serve(t, l2.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 4<<20, 256)
	_, err = e.sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: "s999", Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO})
	wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSocket)
	// A socket the test uses with calls can still be served once they end: Recv on b is busy after.
	e.serve(t, b.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_DISCARD, 0, 0)
	_, err = e.sc.RecvFrom(ctxT(t), &sockagentv1.RecvFromRequest{SocketId: b.GetSocketId(), Timeout: dur(time.Second)})
	wantStatus(t, err, codes.FailedPrecondition, contract.ReasonSocketBusy)
}

// wantEnded checks that c reads EOF or a reset (not a timeout) within the deadline.
func wantEnded(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1024)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open: %v", err)
		}
		return
	}
}

func TestServeCloseEndsConnections(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, "tcp", "127.0.0.1:0")
	id := l.GetSocketId()
	e.serve(t, id, sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	var cs []net.Conn
	for range 3 {
		c := dialT(t, "tcp", l.GetLocalAddress())
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	r, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: id})
	if err != nil {
		t.Fatal(err)
	}
	if sv := r.GetSocket().GetServing(); sv.GetConnections() != 3 || sv.GetBytesIn() != 3 || sv.GetBytesOut() != 3 {
		t.Errorf("close: serving %v, want 3 connections, 3 bytes in and out", sv)
	}
	for _, c := range cs {
		wantEnded(t, c)
	}
	if _, err := net.DialTimeout("tcp", l.GetLocalAddress(), time.Second); err == nil {
		t.Error("the listener still accepts connections after Close")
	}
}

func TestServeSessionEndEndsConnections(t *testing.T) {
	e := newSessEnv(t, agent.Config{})
	ctx := ctxT(t)
	s := e.open(t, ctx, time.Minute)
	r, err := e.sc.Listen(inSess(ctx, s.GetSessionId()), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	id := r.GetSocket().GetSocketId()
	e.serve(t, id, sockagentv1.Behaviour_BEHAVIOUR_DISCARD, 0, 0)
	c := dialT(t, "tcp", r.GetSocket().GetLocalAddress())
	e.waitServing(t, id, "1 active connection", func(sv *sockagentv1.Serving) bool { return sv.GetActiveConnections() == 1 })
	if _, err := e.ss.CloseSession(ctx, &sockagentv1.CloseSessionRequest{SessionId: s.GetSessionId()}); err != nil {
		t.Fatal(err)
	}
	wantEnded(t, c)
}

// TestServeNotReapedWhileServing: a served socket with an open connection is in use: the
// reaper closes an idle socket opened after it and leaves the served one, which still echoes.
func TestServeNotReapedWhileServing(t *testing.T) {
	e := newEnvWith(t, agent.Config{IdleTimeout: 50 * time.Millisecond})
	served := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, served.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	c := dialT(t, "tcp", served.GetLocalAddress())
	e.waitServing(t, served.GetSocketId(), "1 active connection", func(sv *sockagentv1.Serving) bool { return sv.GetActiveConnections() == 1 })
	idle := e.listen(t, "tcp", "127.0.0.1:0")
	e.waitGone(t, ctxT(t), 10*time.Second, idle.GetSocketId()) // the reaper ran past the served one
	if r, err := e.sc.GetSocket(ctxT(t), &sockagentv1.GetSocketRequest{SocketId: served.GetSocketId()}); err != nil || r.GetSocket().GetIdle().AsDuration() != 0 {
		t.Errorf("served socket: %v, idle %s; want it open, idle 0 (in use)", err, r.GetSocket().GetIdle().AsDuration())
	}
	if _, err := c.Write([]byte("still served")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("still served"))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "still served" {
		t.Fatalf("echo after the idle timeout: %q, %v", got, err)
	}
}

func TestServeMaxConnections(t *testing.T) {
	e := newEnv(t)
	l := e.listen(t, "tcp", "127.0.0.1:0")
	id := l.GetSocketId()
	e.serve(t, id, sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 2)
	var cs []net.Conn
	for range 2 {
		cs = append(cs, dialT(t, "tcp", l.GetLocalAddress()))
	}
	e.waitServing(t, id, "2 active connections", func(sv *sockagentv1.Serving) bool { return sv.GetActiveConnections() == 2 })
	// The third is reset at once: the reset may even reach connect itself.
	extra, err := net.DialTimeout("tcp", l.GetLocalAddress(), 5*time.Second)
	if err == nil {
		defer extra.Close()
		wantEnded(t, extra)
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("dial a connection past max_connections: %v; want success then EOF or reset", err)
	}
	sv := e.waitServing(t, id, "1 error for the refused connection", func(sv *sockagentv1.Serving) bool { return sv.GetErrors() == 1 })
	if !strings.Contains(sv.GetLastError(), "max_connections") || !strings.Contains(sv.GetLastError(), "LIMIT_EXCEEDED") {
		t.Errorf("last_error %q, want LIMIT_EXCEEDED naming max_connections", sv.GetLastError())
	}
	if sv.GetConnections() != 2 || sv.GetActiveConnections() != 2 {
		t.Errorf("serving %v: want 2 connections served, 2 active", sv)
	}
	// The two served ones still echo.
	for _, c := range cs {
		if _, err := c.Write([]byte("ok")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
			t.Fatal(err)
		}
	}
	// Once one ends, a new connection is served.
	cs[0].Close()
	e.waitServing(t, id, "1 active connection", func(sv *sockagentv1.Serving) bool { return sv.GetActiveConnections() == 1 })
	c := dialT(t, "tcp", l.GetLocalAddress())
	if _, err := c.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		t.Fatalf("a connection after one ended is not served: %v", err)
	}
}

func TestServeAgentStopEndsConnections(t *testing.T) {
	a, conn := serveBufconn(t, agent.Config{})
	sc := sockagentv1.NewSocketServiceClient(conn)
	r, err := sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: r.GetSocket().GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_SOURCE}); err != nil {
		t.Fatal(err)
	}
	c := dialT(t, "tcp", r.GetSocket().GetLocalAddress())
	if _, err := io.ReadFull(c, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantEnded(t, c)
	if n := a.NumSockets(); n != 0 {
		t.Errorf("%d sockets after shutdown", n)
	}
}

// TestServeSocketBudget: each served connection is admitted like a socket its Serve caller
// opens, so it holds a slot of the agent's budget and of the caller's own: a connection over
// either is reset, named in last_error, and the caller's next socket is refused by the same
// limit, while another caller is untouched by a caller's limit.
func TestServeSocketBudget(t *testing.T) {
	for _, tc := range []struct {
		name, policy, limit string
		max                 int
		otherBinds          bool // another caller may still open a socket
	}{
		{"agent", "agent_limits: {sockets: 3}\ndefault:\n  limits: {sockets: 5}\n", "agent_limits.sockets", 3, false},
		{"caller", "agent_limits: {sockets: 10}\ndefault:\n  limits: {sockets: 3}\n", "limits.sockets", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := polEnv(t, tc.policy, true)
			alice := e.as(t, "alice")
			l := alice.listen(t, "tcp", "127.0.0.1:0")
			id := l.GetSocketId()
			if _, err := e.sc.Serve(alice.ctx, &sockagentv1.ServeRequest{SocketId: id, Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO}); err != nil {
				t.Fatal(err)
			}
			waitServing := func(what string, cond func(*sockagentv1.Serving) bool) *sockagentv1.Serving {
				return e.waitSocketAs(t, alice.ctx, id, "serving "+what, func(s *sockagentv1.Socket) bool { return cond(s.GetServing()) }).GetServing()
			}
			for range 2 {
				c := dialT(t, "tcp", l.GetLocalAddress())
				if _, err := c.Write([]byte("hi")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
					t.Fatalf("a connection within the budget is not served: %v", err)
				}
			}
			waitServing("2 active connections", func(sv *sockagentv1.Serving) bool { return sv.GetActiveConnections() == 2 })
			if extra, err := net.DialTimeout("tcp", l.GetLocalAddress(), 5*time.Second); err == nil {
				defer extra.Close()
				wantEnded(t, extra)
			}
			sv := waitServing("1 error for the connection over the budget", func(sv *sockagentv1.Serving) bool { return sv.GetErrors() == 1 })
			if !strings.Contains(sv.GetLastError(), tc.limit+" ("+strconv.Itoa(tc.max)+")") {
				t.Errorf("last_error %q, want it to name %s (%d)", sv.GetLastError(), tc.limit, tc.max)
			}
			_, err := e.sc.Bind(alice.ctx, &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0"})
			wantLimit(t, err, tc.limit, tc.max)
			bob := e.as(t, "bob")
			if tc.otherBinds {
				bob.bind(t, "udp", "127.0.0.1:0") // alice's limit does not refuse bob
			} else {
				_, err = e.sc.Bind(bob.ctx, &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0"})
				wantLimit(t, err, tc.limit, tc.max)
			}
		})
	}
}

// TestServeDatagramPolicy: a served datagram socket answers only peers the caller's policy lets
// it reach (destinations), as SendTo would.
func TestServeDatagramPolicy(t *testing.T) {
	e := polEnv(t, "default:\n  destinations: {deny: [{name: not 127.0.0.3, cidrs: [127.0.0.3]}]}\n", false)
	b := e.bind(t, "udp", "127.0.0.1:0")
	id := b.GetSocketId()
	e.serve(t, id, sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	denied, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(b.GetLocalAddress())))
	if err != nil {
		t.Fatal(err)
	}
	defer denied.Close()
	if _, err := denied.Write([]byte("reflect me")); err != nil {
		t.Fatal(err)
	}
	sv := e.waitServing(t, id, "1 refused reply", func(sv *sockagentv1.Serving) bool { return sv.GetErrors() == 1 })
	if sv.GetDatagramsOut() != 0 || !strings.Contains(sv.GetLastError(), "POLICY_DENIED") || !strings.Contains(sv.GetLastError(), "127.0.0.3") {
		t.Errorf("serving %v: want no datagram out, last_error POLICY_DENIED naming 127.0.0.3", sv)
	}
	ok := dialT(t, "udp", b.GetLocalAddress())
	if _, err := ok.Write([]byte("echo me")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 100)
	if n, err := ok.Read(got); err != nil || string(got[:n]) != "echo me" {
		t.Fatalf("echo to an allowed peer: %q, %v", got[:n], err)
	}
}
