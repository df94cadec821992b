package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// blockRecvs starts n Recv calls of max bytes each on socket id that stay blocked until the
// returned func is called; it returns once the socket shows them pending.
func (e *env) blockRecvs(t *testing.T, id string, n int, maxBytes uint32) (release func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: id, MaxBytes: maxBytes, Timeout: dur(time.Minute)})
			if status.Code(err) != codes.Canceled {
				t.Errorf("blocked recv: %v, want CANCELLED", err)
			}
		})
	}
	e.waitPending(t, id, uint32(n))
	return func() {
		cancel()
		wg.Wait()
		e.waitPending(t, id, 0)
	}
}

// agent_limits.blocking_calls counts the blocking calls of all callers together.
func TestAgentLimitBlockingCalls(t *testing.T) {
	t.Parallel()
	e := polEnv(t, "agent_limits: {blocking_calls: 3}\ndefault: {limits: {blocking_calls: 2}}\n", true)
	alice, bob := polAs(t, "alice"), polAs(t, "bob")
	la := e.as(t, "alice").listen(t, "tcp", "127.0.0.1:0")
	lb := e.as(t, "bob").listen(t, "tcp", "127.0.0.1:0")
	// bob's sockets for the data calls below, opened while the agent has room for calls.
	ub := e.as(t, "bob").bind(t, "udp", "127.0.0.1:0")
	cb := e.as(t, "bob").dial(t, "udp", ub.GetLocalAddress())
	block := func(ctx context.Context, id string, wg *sync.WaitGroup) {
		wg.Go(func() {
			_, err := e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: id, Timeout: dur(time.Minute)})
			if status.Code(err) != codes.Canceled {
				t.Errorf("blocked accept: %v, want CANCELLED", err)
			}
		})
	}
	actx, cancelA := context.WithCancel(alice)
	bctx, cancelB := context.WithCancel(bob)
	defer cancelA()
	defer cancelB()
	var wg sync.WaitGroup
	block(actx, la.GetSocketId(), &wg)
	block(actx, la.GetSocketId(), &wg)
	block(bctx, lb.GetSocketId(), &wg)
	e.waitPendingCtx(t, alice, la.GetSocketId(), 2)
	e.waitPendingCtx(t, bob, lb.GetSocketId(), 1)

	// bob has one call of his two, but the agent has 3 of 3.
	_, err := e.sc.Accept(bob, &sockagentv1.AcceptRequest{SocketId: lb.GetSocketId(), Timeout: dur(time.Second)})
	wantLimit(t, err, "agent_limits.blocking_calls", 3)
	wantStatus(t, err, codes.ResourceExhausted, contract.ReasonLimitExceeded, "accept "+lb.GetSocketId(), "the agent has 3 blocking calls in progress")
	if md := polMeta(err); md["rule_set"] != "" || md["socket_id"] != lb.GetSocketId() {
		t.Errorf("metadata %v: want socket_id and no rule_set", md)
	}
	for name, call := range map[string]func() error{
		"dial": func() error {
			_, err := e.sc.Dial(bob, &sockagentv1.DialRequest{Network: "tcp", Address: lb.GetLocalAddress()})
			return err
		},
		"send": func() error {
			_, err := e.sc.Send(bob, &sockagentv1.SendRequest{SocketId: cb.GetSocketId(), Data: []byte("x")})
			return err
		},
		"recv": func() error {
			_, err := e.sc.Recv(bob, &sockagentv1.RecvRequest{SocketId: cb.GetSocketId()})
			return err
		},
		"sendto": func() error {
			_, err := e.sc.SendTo(bob, &sockagentv1.SendToRequest{SocketId: ub.GetSocketId(), Address: ub.GetLocalAddress(), Data: []byte("x")})
			return err
		},
		"recvfrom": func() error {
			_, err := e.sc.RecvFrom(bob, &sockagentv1.RecvFromRequest{SocketId: ub.GetSocketId()})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.ResourceExhausted || polMeta(err)["limit"] != "agent_limits.blocking_calls" {
			t.Errorf("%s: %v, want agent_limits.blocking_calls", name, err)
		}
	}
	// Calls that do not block are not counted.
	e.as(t, "bob").bind(t, "udp", "127.0.0.1:0")
	if _, err := e.sc.GetSocket(bob, &sockagentv1.GetSocketRequest{SocketId: lb.GetSocketId()}); err != nil {
		t.Error(err)
	}
	// A call that ends frees its place.
	cancelB()
	e.waitPendingCtx(t, bob, lb.GetSocketId(), 0)
	c := e.as(t, "bob").dial(t, "tcp", lb.GetLocalAddress())
	s := e.as(t, "bob").accept(t, lb.GetSocketId())
	if _, err := e.sc.Send(bob, &sockagentv1.SendRequest{SocketId: c.GetSocketId(), Data: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	r, err := e.sc.Recv(bob, &sockagentv1.RecvRequest{SocketId: s.GetSocketId(), ExactBytes: 2, Timeout: dur(5 * time.Second)})
	if err != nil || string(r.GetData()) != "hi" {
		t.Errorf("recv %q, %v", r.GetData(), err)
	}
	cancelA()
	wg.Wait()
}

// agent_limits.buffered_bytes counts Send/SendTo data and Recv/RecvFrom buffers of calls in
// progress, all callers together.
func TestAgentLimitBufferedBytes(t *testing.T) {
	t.Parallel()
	e := polEnv(t, "agent_limits: {buffered_bytes: 100000}\n", false)
	ctx := ctxT(t)
	cli, srv := e.pair(t)
	u := e.bind(t, "udp", "127.0.0.1:0")

	// Alone, a call may use the whole budget (a Recv of 100000 bytes on data that is there).
	e.send(t, cli, strings.Repeat("a", 100000))
	if got := e.recvExact(t, srv, 100000); len(got) != 100000 {
		t.Fatalf("recv %d bytes", len(got))
	}
	// But not more.
	_, err := e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: make([]byte, 100001)})
	wantLimit(t, err, "agent_limits.buffered_bytes", 100000)
	wantStatus(t, err, codes.ResourceExhausted, contract.ReasonLimitExceeded, "100001 bytes in one call")

	// Two Recvs of 30000 bytes wait on a socket that gets no data: 60000 held.
	_, idle := e.pair(t)
	release := e.blockRecvs(t, idle, 2, 30000)
	_, err = e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, ExactBytes: 50000, Timeout: dur(time.Second)})
	wantLimit(t, err, "agent_limits.buffered_bytes", 100000)
	wantStatus(t, err, codes.ResourceExhausted, contract.ReasonLimitExceeded, "recv "+cli,
		"the agent holds 60000 bytes for calls in progress and this call needs 50000")
	_, err = e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: make([]byte, 40001)})
	wantLimit(t, err, "agent_limits.buffered_bytes", 100000)
	_, err = e.sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: u.GetSocketId(), Address: u.GetLocalAddress(), Data: make([]byte, 40001)})
	wantLimit(t, err, "agent_limits.buffered_bytes", 100000)
	_, err = e.sc.RecvFrom(ctx, &sockagentv1.RecvFromRequest{SocketId: u.GetSocketId(), MaxBytes: 40001})
	wantLimit(t, err, "agent_limits.buffered_bytes", 100000)
	// What fits passes: 60000 + 40000.
	e.send(t, cli, strings.Repeat("b", 40000))
	release()
	// The cancelled Recvs gave their bytes back: 100000 fits again.
	if got := e.recvExact(t, srv, 40000); got != strings.Repeat("b", 40000) {
		t.Errorf("recv %d bytes, want 40000 b", len(got))
	}
	e.send(t, cli, strings.Repeat("c", 100000))
	if got := e.recvExact(t, srv, 100000); got != strings.Repeat("c", 100000) {
		t.Errorf("recv %d bytes after the blocked calls ended", len(got))
	}
}

// A request larger than Config.MaxMessageBytes is refused by gRPC itself with
// RESOURCE_EXHAUSTED naming the size and the limit; the default takes a Send of 4 MiB, the
// default limits.bytes_per_call.
func TestMaxMessageBytes(t *testing.T) {
	t.Parallel()
	t.Run("small", func(t *testing.T) {
		t.Parallel()
		log := newLogBuf()
		pol, err := policy.Parse("p.yaml", []byte("default: {limits: {bytes_per_call: 65536}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		e := newEnvWith(t, agent.Config{MaxMessageBytes: 64 << 10, Policy: pol, Logger: slog.New(slog.NewJSONHandler(log, nil))})
		ctx := ctxT(t)
		cli, srv := e.pair(t)
		_, err = e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: make([]byte, 64<<10)})
		st := status.Convert(err)
		if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), fmt.Sprintf("received message larger than max (%d vs. %d)", 64<<10+len(cli)+6, 64<<10)) {
			t.Errorf("send of 64 KiB: %v; want RESOURCE_EXHAUSTED received message larger than max (... vs. 65536)", err)
		}
		// No RPC line tells of it (no interceptor ran): the agent logs it apart, naming the flag.
		log.waitFor(t, regexp.MustCompile(`"level":"WARN","msg":"request refused by gRPC: larger than --max-message-bytes \(Config.MaxMessageBytes\)","rpc":"/sockagent.v1.SocketService/Send","limit":65536,"err":"grpc: received message larger than max`))
		// The connection and the socket survive: a smaller Send goes through.
		e.send(t, cli, strings.Repeat("x", 60<<10))
		if got := e.recvExact(t, srv, 60<<10); len(got) != 60<<10 {
			t.Errorf("recv %d bytes", len(got))
		}
		// The agent's own RESOURCE_EXHAUSTED answers are not taken for gRPC's.
		_, err = e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: srv, MaxBytes: 65537})
		wantLimit(t, err, "limits.bytes_per_call", 65536)
		if n := strings.Count(log.text(), "request refused by gRPC"); n != 1 {
			t.Errorf("%d lines of requests refused by gRPC, want 1:\n%s", n, log.text())
		}
	})
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ctx := ctxT(t)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		got := make(chan int64, 1)
		go func() {
			c, err := lis.Accept()
			if err != nil {
				got <- -1
				return
			}
			defer c.Close()
			n, _ := io.Copy(io.Discard, c)
			got <- n
		}()
		d := e.dial(t, "tcp", lis.Addr().String())
		const size = 4 << 20
		r, err := e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: d.GetSocketId(), Data: make([]byte, size), Timeout: dur(10 * time.Second)})
		if err != nil || r.GetBytesSent() != size {
			t.Fatalf("send of 4 MiB: %v, %d bytes sent", err, r.GetBytesSent())
		}
		if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: d.GetSocketId()}); err != nil {
			t.Fatal(err)
		}
		if n := <-got; n != size {
			t.Errorf("peer read %d bytes, want %d", n, size)
		}
		_, err = e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: "s1", Data: make([]byte, agent.DefaultMaxMessageBytes)})
		if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), fmt.Sprintf("vs. %d)", agent.DefaultMaxMessageBytes)) {
			t.Errorf("send over the default: %v", err)
		}
	})
}

// The bytes an interrupted exact read keeps for the next Recv count against
// agent_limits.buffered_bytes until a Recv takes them or the socket closes.
func TestAgentLimitLeftoverBytes(t *testing.T) {
	t.Parallel()
	e := polEnv(t, "agent_limits: {buffered_bytes: 1000}\n", false)
	ctx := ctxT(t)
	cli, srv := e.pair(t)
	// leave600 makes srv keep 600 bytes: an exact read of 1000 that times out after 600.
	leave600 := func(cli, srv string) {
		t.Helper()
		e.send(t, cli, strings.Repeat("L", 600))
		_, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: srv, ExactBytes: 1000, Timeout: dur(time.Second)})
		wantStatus(t, err, codes.DeadlineExceeded, contract.ReasonTimeout)
	}
	leave600(cli, srv)
	_, err := e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: make([]byte, 401)})
	wantLimit(t, err, "agent_limits.buffered_bytes", 1000)
	wantStatus(t, err, codes.ResourceExhausted, contract.ReasonLimitExceeded, "0 bytes for calls in progress and 600 left over from interrupted exact reads (Recv or Close those sockets) and this call needs 401")
	e.send(t, cli, strings.Repeat("x", 400)) // 600 + 400 fits
	// A Recv takes the leftover (and the 400 behind it): the budget is whole again.
	if got := e.recvExact(t, srv, 1000); got != strings.Repeat("L", 600)+strings.Repeat("x", 400) {
		t.Errorf("recv %q", got)
	}
	e.send(t, cli, strings.Repeat("y", 1000))
	if got := e.recvExact(t, srv, 1000); got != strings.Repeat("y", 1000) {
		t.Errorf("recv %d bytes", len(got))
	}

	// Closing a socket with leftover bytes frees them.
	cli2, srv2 := e.pair(t)
	leave600(cli2, srv2)
	_, err = e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: make([]byte, 401)})
	wantLimit(t, err, "agent_limits.buffered_bytes", 1000)
	if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: srv2}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: make([]byte, 1000)})
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("send of 1000 bytes after closing the socket with the leftover: %v", err)
		}
		time.Sleep(time.Millisecond) // polling interval: the close frees the bytes asynchronously at worst
	}
	if got := e.recvExact(t, srv, 1000); len(got) != 1000 {
		t.Errorf("recv %d bytes", len(got))
	}
}
