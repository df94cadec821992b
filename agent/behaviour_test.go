package agent_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// freePort returns a loopback address where nothing listens.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// pair returns a connected TCP pair inside the agent: client and accepted server socket ids.
func (e *env) pair(t *testing.T) (cli, srv string) {
	t.Helper()
	lis := e.listen(t, "tcp", "127.0.0.1:0")
	c := e.dial(t, "tcp", lis.GetLocalAddress())
	s := e.accept(t, lis.GetSocketId())
	return c.GetSocketId(), s.GetSocketId()
}

func TestReasons(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)

	t.Run("CONNECTION_REFUSED", func(t *testing.T) {
		addr := freePort(t)
		_, err := e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: addr})
		wantStatus(t, err, codes.Unavailable, "CONNECTION_REFUSED", "dial tcp "+addr)
	})
	t.Run("CONNECTION_RESET", func(t *testing.T) {
		lis := e.listen(t, "tcp", "127.0.0.1:0")
		c, err := net.Dial("tcp", lis.GetLocalAddress())
		if err != nil {
			t.Fatal(err)
		}
		srv := e.accept(t, lis.GetSocketId())
		_ = c.(*net.TCPConn).SetLinger(0) // close with a reset
		c.Close()
		_, err = e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: srv.GetSocketId(), Timeout: dur(5e9)})
		wantStatus(t, err, codes.Aborted, "CONNECTION_RESET", "recv "+srv.GetSocketId()+" tcp")
	})
	t.Run("TIMEOUT", func(t *testing.T) {
		lis := e.listen(t, "tcp", "127.0.0.1:0")
		_, err := e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: lis.GetSocketId(), Timeout: dur(50 * time.Millisecond)})
		wantStatus(t, err, codes.DeadlineExceeded, "TIMEOUT", "accept "+lis.GetSocketId()+" tcp "+lis.GetLocalAddress())
		cli, _ := e.pair(t)
		_, err = e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, Timeout: dur(50 * time.Millisecond)})
		wantStatus(t, err, codes.DeadlineExceeded, "TIMEOUT", "recv "+cli)
		b := e.bind(t, "udp", "127.0.0.1:0")
		_, err = e.sc.RecvFrom(ctx, &sockagentv1.RecvFromRequest{SocketId: b.GetSocketId(), Timeout: dur(50 * time.Millisecond)})
		wantStatus(t, err, codes.DeadlineExceeded, "TIMEOUT", "recvfrom "+b.GetSocketId())
		// The RPC deadline bounds a call whose own timeout is longer.
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err = e.sc.Accept(short, &sockagentv1.AcceptRequest{SocketId: lis.GetSocketId(), Timeout: dur(time.Hour)})
		if c := status.Code(err); c != codes.DeadlineExceeded {
			t.Errorf("accept past the RPC deadline: %v", err)
		}
		e.waitPending(t, lis.GetSocketId(), 0)
	})
	t.Run("TIMEOUT/dial", func(t *testing.T) {
		if runtime.GOOS != "linux" {
			t.Skip("relies on Linux dropping SYNs when the accept queue is full")
		}
		addr, fill := fullBacklog(t)
		defer fill()
		_, err := e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: addr, Timeout: dur(200 * time.Millisecond)})
		wantStatus(t, err, codes.DeadlineExceeded, "TIMEOUT", "dial tcp "+addr)
	})
	t.Run("ADDRESS_IN_USE", func(t *testing.T) {
		lis := e.listen(t, "tcp", "127.0.0.1:0")
		_, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: lis.GetLocalAddress()})
		wantStatus(t, err, codes.AlreadyExists, "ADDRESS_IN_USE", "listen tcp "+lis.GetLocalAddress())
	})
	t.Run("BROKEN_PIPE", func(t *testing.T) {
		cli, _ := e.pair(t)
		if _, err := e.sc.Shutdown(ctx, &sockagentv1.ShutdownRequest{SocketId: cli, Direction: sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_WRITE}); err != nil {
			t.Fatal(err)
		}
		_, err := e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: []byte("x")})
		wantStatus(t, err, codes.Aborted, "BROKEN_PIPE", "send "+cli)
	})
	t.Run("SOCKET_CLOSED", func(t *testing.T) {
		cli, _ := e.pair(t)
		errc := make(chan error, 1)
		go func() {
			_, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, Timeout: dur(time.Minute)})
			errc <- err
		}()
		e.waitPending(t, cli, 1)
		start := time.Now()
		if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: cli}); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, <-errc, codes.Aborted, "SOCKET_CLOSED", "recv "+cli)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("blocked recv took %s to return after close", d)
		}
	})
	t.Run("UNKNOWN_SOCKET", func(t *testing.T) {
		for _, call := range []func() error{
			func() error { _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: "s999999"}); return err },
			func() error {
				_, err := e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: "s999999", Data: []byte("x")})
				return err
			},
			func() error {
				_, err := e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: "s999999"})
				return err
			},
			func() error {
				_, err := e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: "s999999"})
				return err
			},
		} {
			wantStatus(t, call(), codes.NotFound, "UNKNOWN_SOCKET", "s999999")
		}
	})
	t.Run("WRONG_SOCKET_KIND", func(t *testing.T) {
		u := e.bind(t, "udp", "127.0.0.1:0").GetSocketId()
		l := e.listen(t, "tcp", "127.0.0.1:0").GetSocketId()
		cli, _ := e.pair(t)
		cases := map[string]func() error{
			"accept on udp": func() error { _, err := e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: u}); return err },
			"send on listener": func() error {
				_, err := e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: l, Data: []byte("x")})
				return err
			},
			"send on unconnected udp": func() error {
				_, err := e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: u, Data: []byte("x")})
				return err
			},
			"recv on listener": func() error { _, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: l}); return err },
			"sendto on tcp": func() error {
				_, err := e.sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: cli, Address: "127.0.0.1:9", Data: []byte("x")})
				return err
			},
			"recvfrom on tcp": func() error { _, err := e.sc.RecvFrom(ctx, &sockagentv1.RecvFromRequest{SocketId: cli}); return err },
			"shutdown on udp": func() error {
				_, err := e.sc.Shutdown(ctx, &sockagentv1.ShutdownRequest{SocketId: u, Direction: sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_BOTH})
				return err
			},
		}
		for name, call := range cases {
			t.Run(name, func(t *testing.T) { wantStatus(t, call(), codes.FailedPrecondition, "WRONG_SOCKET_KIND") })
		}
	})
	t.Run("INVALID_ADDRESS", func(t *testing.T) {
		_, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "nonsense"})
		wantStatus(t, err, codes.InvalidArgument, "INVALID_ADDRESS", "listen tcp nonsense")
		_, err = e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: ""})
		wantStatus(t, err, codes.InvalidArgument, "INVALID_ADDRESS", "address is empty")
		_, err = e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: "127.0.0.1:99999"})
		wantStatus(t, err, codes.InvalidArgument, "INVALID_ADDRESS", "dial tcp 127.0.0.1:99999")
		u := e.bind(t, "udp", "127.0.0.1:0").GetSocketId()
		_, err = e.sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: u, Address: "127.0.0.1", Data: []byte("x")})
		wantStatus(t, err, codes.InvalidArgument, "INVALID_ADDRESS", "sendto "+u+" udp 127.0.0.1")
	})
	t.Run("INVALID_NETWORK", func(t *testing.T) {
		_, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "udp", Address: "127.0.0.1:0"})
		wantStatus(t, err, codes.InvalidArgument, "INVALID_NETWORK", `network "udp"`, "tcp, tcp4, tcp6, unix")
		_, err = e.sc.Bind(ctx, &sockagentv1.BindRequest{Network: "tcp", Address: "127.0.0.1:0"})
		wantStatus(t, err, codes.InvalidArgument, "INVALID_NETWORK", "udp, udp4, udp6, unixgram")
		_, err = e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "sctp", Address: "127.0.0.1:1"})
		wantStatus(t, err, codes.InvalidArgument, "INVALID_NETWORK", "sctp")
	})
	t.Run("INVALID_ARGUMENT", func(t *testing.T) {
		cli, _ := e.pair(t)
		_, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, MaxBytes: 1 << 30})
		wantStatus(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "limit")
		_, err = e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, Timeout: dur(-time.Second)})
		wantStatus(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "timeout")
		_, err = e.sc.Shutdown(ctx, &sockagentv1.ShutdownRequest{SocketId: cli})
		wantStatus(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "direction")
	})
	t.Run("PATH_NOT_FOUND", func(t *testing.T) {
		p := e.sockPath("nobody.sock")
		_, err := e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "unix", Address: p})
		wantStatus(t, err, codes.FailedPrecondition, "PATH_NOT_FOUND", "dial unix "+p)
	})
}

// fullBacklog returns a loopback address whose accept queue is full, so the kernel drops
// further SYNs and a dial there times out; release frees it.
func fullBacklog(t *testing.T) (addr string, release func()) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr = fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	var held []net.Conn
	for i := 0; i < 4; i++ { // backlog 0 admits one or two; the rest are left pending or dropped
		d := net.Dialer{Timeout: 100 * time.Millisecond}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			break
		}
		held = append(held, c)
	}
	return addr, func() {
		for _, c := range held {
			c.Close()
		}
		syscall.Close(fd)
	}
}

func TestFullDuplexAndOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	cli, srv := e.pair(t)

	// A Send runs while a Recv waits on the same socket.
	recv := make(chan string, 1)
	go func() {
		r, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, ExactBytes: 4, Timeout: dur(10 * time.Second)})
		if err != nil {
			recv <- err.Error()
			return
		}
		recv <- string(r.GetData())
	}()
	e.waitPending(t, cli, 1)
	e.send(t, cli, "ping")
	if s := e.recvExact(t, srv, 4); s != "ping" {
		t.Fatalf("peer got %q", s)
	}
	e.send(t, srv, "pong")
	if s := <-recv; s != "pong" {
		t.Fatalf("recv got %q", s)
	}

	// Queued Recvs are served in arrival order, never interleaved.
	const n = 5
	results := make([]chan string, n)
	for i := range n {
		results[i] = make(chan string, 1)
		go func() {
			r, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, ExactBytes: 4, Timeout: dur(10 * time.Second)})
			if err != nil {
				results[i] <- err.Error()
				return
			}
			results[i] <- string(r.GetData())
		}()
		e.waitPending(t, cli, uint32(i+1))
	}
	e.send(t, srv, "AAAABBBBCCCCDDDDEEEE")
	for i, want := range []string{"AAAA", "BBBB", "CCCC", "DDDD", "EEEE"} {
		if got := <-results[i]; got != want {
			t.Errorf("recv #%d got %q, want %q", i, got, want)
		}
	}
}

func TestManyInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	const n = 50
	lis := make([]*sockagentv1.Socket, n)
	for i := range lis {
		lis[i] = e.listen(t, "tcp", "127.0.0.1:0")
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, l := range lis {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: l.GetSocketId(), Timeout: dur(10 * time.Second)})
			if err == nil {
				_, err = e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: r.GetSocket().GetSocketId()})
			}
			errs <- err
		}()
	}
	for _, l := range lis { // every Accept is blocked at once before any peer dials
		e.waitPending(t, l.GetSocketId(), 1)
	}
	var conns []net.Conn
	for _, l := range lis {
		c, err := net.Dial("tcp", l.GetLocalAddress())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
}

func TestCancelUnblocks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lis := e.listen(t, "tcp", "127.0.0.1:0")
	cli, _ := e.pair(t)
	for name, call := range map[string]func(ctx context.Context) (string, error){
		"accept": func(ctx context.Context) (string, error) {
			_, err := e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: lis.GetSocketId(), Timeout: dur(time.Hour)})
			return lis.GetSocketId(), err
		},
		"recv": func(ctx context.Context) (string, error) {
			_, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, Timeout: dur(time.Hour)})
			return cli, err
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(ctxT(t))
			errc := make(chan error, 1)
			var id string
			switch name {
			case "accept":
				id = lis.GetSocketId()
			default:
				id = cli
			}
			go func() { _, err := call(ctx); errc <- err }()
			e.waitPending(t, id, 1)
			cancel()
			if c := status.Code(<-errc); c != codes.Canceled {
				t.Errorf("code %s, want Canceled", c)
			}
			e.waitPending(t, id, 0) // the agent gave up the call too, not just the client
		})
	}
}

func TestHalfCloseAndEOF(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	cli, srv := e.pair(t)
	r, err := e.sc.Shutdown(ctx, &sockagentv1.ShutdownRequest{SocketId: cli, Direction: sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_WRITE})
	if err != nil || r.GetSocket().GetState() != sockagentv1.SocketState_SOCKET_STATE_WRITE_SHUT {
		t.Fatalf("shutdown = %v, %v", r, err)
	}
	rr, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: srv, Timeout: dur(5e9)})
	if err != nil || !rr.GetEof() || len(rr.GetData()) != 0 {
		t.Fatalf("peer recv after shutdown = %v, %v; want eof", rr, err)
	}
	e.send(t, srv, "still answering") // the peer can still send after our half-close
	if s := e.recvExact(t, cli, 15); s != "still answering" {
		t.Fatalf("got %q", s)
	}
	if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: srv}); err != nil {
		t.Fatal(err)
	}
	rr, err = e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, Timeout: dur(5e9)})
	if err != nil || !rr.GetEof() {
		t.Fatalf("recv after peer close = %v, %v; want eof", rr, err)
	}
	// Exact read cut short by EOF returns what came, with eof.
	cli2, srv2 := e.pair(t)
	e.send(t, srv2, "abc")
	if _, err := e.sc.Shutdown(ctx, &sockagentv1.ShutdownRequest{SocketId: srv2, Direction: sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_BOTH}); err != nil {
		t.Fatal(err)
	}
	rr, err = e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli2, ExactBytes: 10, Timeout: dur(5e9)})
	if err != nil || string(rr.GetData()) != "abc" || !rr.GetEof() {
		t.Fatalf("exact recv cut by eof = %v, %v", rr, err)
	}
}

// An exact Recv that times out keeps the bytes it read for the next Recv: nothing is lost.
func TestExactRecvKeepsBytesOnTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	cli, srv := e.pair(t)
	e.send(t, srv, "abc")
	_, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, ExactBytes: 5, Timeout: dur(100 * time.Millisecond)})
	wantStatus(t, err, codes.DeadlineExceeded, "TIMEOUT")
	e.send(t, srv, "defgh")
	if s := e.recvExact(t, cli, 5); s != "abcde" {
		t.Fatalf("got %q, want abcde", s)
	}
	r, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, MaxBytes: 2, Timeout: dur(5e9)})
	if err != nil || string(r.GetData()) != "fg" {
		t.Fatalf("got %v, %v", r, err)
	}
	if s := e.recvExact(t, cli, 1); s != "h" {
		t.Fatalf("got %q", s)
	}
}

func TestListGetInfoAndUnixCleanup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	dir := e.a.SocketDir()
	a := e.listen(t, "unix", filepath.Join(dir, "l.sock"))
	b := e.bind(t, "unixgram", filepath.Join(dir, "d.sock"))
	c := e.bind(t, "udp6", "[::1]:0")
	l, err := e.sc.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range l.GetSockets() {
		ids = append(ids, s.GetSocketId())
	}
	if want := []string{a.GetSocketId(), b.GetSocketId(), c.GetSocketId()}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("list = %v, want %v (oldest first)", ids, want)
	}
	info, err := e.ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if info.GetHostname() != host || info.GetOs() != runtime.GOOS || info.GetArch() != runtime.GOARCH ||
		info.GetOpenSockets() != 3 || info.GetVersion() == "" || info.GetInstanceId() != e.a.InstanceID() ||
		info.GetLimits().GetDefaultTimeout().AsDuration() != 30*time.Second || info.GetPid() != int64(os.Getpid()) ||
		info.GetSocketDir() != dir {
		t.Errorf("info = %v", info)
	}
	var loopback bool
	for _, ifc := range info.GetInterfaces() {
		for _, ad := range ifc.GetAddresses() {
			loopback = loopback || ad == "127.0.0.1/8"
		}
	}
	if !loopback {
		t.Errorf("interfaces lack 127.0.0.1/8: %v", info.GetInterfaces())
	}
	if runtime.GOOS == "linux" && info.GetLimits().GetOpenFilesSoft() == 0 {
		t.Errorf("open file limit not reported")
	}
	for _, s := range []*sockagentv1.Socket{a, b} {
		if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: s.GetSocketId()}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(s.GetLocalAddress()); !os.IsNotExist(err) {
			t.Errorf("%s left behind after close: %v", s.GetLocalAddress(), err)
		}
	}
}

// Shutdown answers a blocked call with UNAVAILABLE AGENT_STOPPING and closes every socket.
func TestAgentShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	lr, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	lis := lr.GetSocket()
	errc := make(chan error, 1)
	go func() {
		_, err := e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: lis.GetSocketId(), Timeout: dur(time.Hour)})
		errc <- err
	}()
	e.waitPending(t, lis.GetSocketId(), 1)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := e.a.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	wantStatus(t, <-errc, codes.Unavailable, "AGENT_STOPPING")
	if n := e.a.NumSockets(); n != 0 {
		t.Errorf("%d sockets open after shutdown", n)
	}
	if c, err := net.Dial("tcp", lis.GetLocalAddress()); err == nil {
		c.Close()
		t.Errorf("listener still accepts after shutdown")
	}
}
