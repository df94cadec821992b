package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Hold is the result of holding many connections.
type Hold struct {
	Conns         int
	Before, After Snapshot      // the agent before the first connection and with all held
	Connect       time.Duration // to open (and accept) all connections
	Check         time.Duration // to send and receive once on every connection
	OpenSockets   int           // the agent's open_sockets while holding them
}

// PerConn is the agent's memory per connection held, in bytes.
func (h Hold) PerConn() float64 { return float64(h.After.RSS-h.Before.RSS) / float64(h.Conns) }

// HoldConns has the agent hold n TCP connections (its ends accepted from a listener, the
// other ends in this process), checks every one both ways, measures the agent process, and
// closes them.
func HoldConns(ctx context.Context, sc sockagentv1.SocketServiceClient, ac sockagentv1.AgentServiceClient, agent Proc, n, workers int) (h Hold, err error) {
	h.Conns = n
	// A first RPC: the control connection is up (its fd counted) before the snapshot.
	base, err := OpenSockets(ctx, ac)
	if err != nil {
		return h, err
	}
	if h.Before, err = agent.Snap(); err != nil {
		return h, err
	}
	start := time.Now()
	p, err := Connect(ctx, sc, n, workers)
	if err != nil {
		return h, err
	}
	defer func() {
		if cerr := p.Close(context.WithoutCancel(ctx), sc); err == nil && cerr != nil {
			err = cerr
		}
	}()
	h.Connect = time.Since(start)
	if h.OpenSockets, err = OpenSockets(ctx, ac); err != nil {
		return h, err
	}
	if h.OpenSockets != base+n+1 {
		return h, fmt.Errorf("agent reports %d open sockets, want %d: %d before, %d connections and the listener", h.OpenSockets, base+n+1, base, n)
	}
	start = time.Now()
	if err := p.Check(ctx, sc, workers); err != nil {
		return h, err
	}
	h.Check = time.Since(start)
	if h.After, err = agent.Snap(); err != nil {
		return h, err
	}
	if h.After.FDs < h.Before.FDs+n {
		return h, fmt.Errorf("agent has %d fds holding %d connections, %d before: want at least one per connection", h.After.FDs, n, h.Before.FDs)
	}
	return h, nil
}

// Blocking is the result of many concurrent blocking calls.
type Blocking struct {
	Calls       int
	RecvPending time.Duration // from the first Recv sent until all were pending in the agent
	RecvDone    time.Duration // from the first peer write until every Recv returned
	AcceptDone  time.Duration // from the first dial until every pending Accept returned
	MaxPending  int           // most pending_calls seen at once (ListSockets)
}

// BlockingCalls runs n concurrent Recv calls, one per connection, waits until the agent shows
// all n pending, then has every peer send distinct bytes and checks that each Recv returns
// exactly its peer's. Then n concurrent Accept calls on one listener, all pending before n
// peers connect; each must return a distinct one of those connections.
func BlockingCalls(ctx context.Context, sc sockagentv1.SocketServiceClient, n, workers int) (b Blocking, err error) {
	b.Calls = n
	p, err := Connect(ctx, sc, n, workers)
	if err != nil {
		return b, err
	}
	defer func() {
		if cerr := p.Close(context.WithoutCancel(ctx), sc); err == nil && cerr != nil {
			err = cerr
		}
	}()
	msg := func(i int) []byte { return fmt.Appendf(nil, "peer %06d says %x", i, i*7919) }
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		go func() {
			want := msg(i)
			r, err := sc.Recv(rctx, &sockagentv1.RecvRequest{SocketId: p.Agent[i].GetSocketId(), ExactBytes: uint32(len(want)), Timeout: dur(time.Minute)})
			switch {
			case err != nil:
				err = fmt.Errorf("recv %d: %w", i, err)
			case !bytes.Equal(r.GetData(), want):
				err = fmt.Errorf("recv %d: got %q, want %q (its own peer's bytes)", i, r.GetData(), want)
			}
			errs <- err
		}()
	}
	ids := map[string]bool{}
	for _, s := range p.Agent {
		ids[s.GetSocketId()] = true
	}
	if b.MaxPending, err = waitPending(ctx, sc, ids, n); err != nil {
		return b, fmt.Errorf("recv: %w", err)
	}
	b.RecvPending = time.Since(start)
	start = time.Now()
	werr := forEach(ctx, n, workers, func(ctx context.Context, i int) error {
		_, err := p.Clients[i].Write(msg(i))
		return err
	})
	for range n {
		if e := <-errs; e != nil && err == nil {
			err = e
			cancel()
		}
	}
	if err := errors.Join(err, werr); err != nil {
		return b, err
	}
	b.RecvDone = time.Since(start)
	b.AcceptDone, err = concurrentAccepts(ctx, sc, p.Listener.GetSocketId(), p.Listener.GetLocalAddress(), n, workers)
	return b, err
}

// waitPending polls ListSockets until the sockets ids have want pending calls in all, and
// returns the most seen.
func waitPending(ctx context.Context, sc sockagentv1.SocketServiceClient, ids map[string]bool, want int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got := 0
	_, err := Settle(ctx, 0, func() (int, error) {
		r, err := sc.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
		if err != nil {
			return 0, err
		}
		got = 0
		for _, s := range r.GetSockets() {
			if ids[s.GetSocketId()] {
				got += int(s.GetPendingCalls())
			}
		}
		return want - got, nil
	})
	if err == nil && got != want {
		err = fmt.Errorf("%d calls pending in the agent after 30s, want %d", got, want)
	}
	return got, err
}

// concurrentAccepts sends n Accept calls on the listener, waits until all n are pending, then
// dials n connections and checks that the n Accepts returned exactly those connections.
func concurrentAccepts(ctx context.Context, sc sockagentv1.SocketServiceClient, lis, addr string, n, workers int) (time.Duration, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	type res struct {
		s   *sockagentv1.Socket
		err error
	}
	results := make(chan res, n)
	for range n {
		go func() {
			r, err := sc.Accept(actx, &sockagentv1.AcceptRequest{SocketId: lis, Timeout: dur(time.Minute)})
			results <- res{r.GetSocket(), err}
		}()
	}
	var accepted []*sockagentv1.Socket
	var clients []net.Conn
	var mu sync.Mutex
	defer func() {
		for _, c := range clients {
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
		for _, s := range accepted {
			_, _ = sc.Close(context.WithoutCancel(ctx), &sockagentv1.CloseRequest{SocketId: s.GetSocketId()})
		}
	}()
	collect := func(err error) error {
		for range n {
			r := <-results
			if r.err != nil && err == nil {
				err = fmt.Errorf("accept: %w", r.err)
				cancel()
			}
			if r.s != nil {
				accepted = append(accepted, r.s)
			}
		}
		return err
	}
	if _, err := waitPending(ctx, sc, map[string]bool{lis: true}, n); err != nil {
		cancel()
		return 0, collect(fmt.Errorf("accept: %w", err))
	}
	start := time.Now()
	var d net.Dialer
	err := forEach(ctx, n, workers, func(ctx context.Context, i int) error {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		mu.Lock()
		clients = append(clients, c)
		mu.Unlock()
		return nil
	})
	if err != nil {
		cancel()
	}
	if err := collect(err); err != nil {
		return 0, err
	}
	took := time.Since(start)
	var want, got []string
	for _, c := range clients {
		want = append(want, c.LocalAddr().String())
	}
	for _, s := range accepted {
		got = append(got, s.GetRemoteAddress())
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		return took, fmt.Errorf("the %d Accepts returned %d connections, not the %d dialed", n, len(got), len(want))
	}
	return took, nil
}

// Cycles is the result of many open/use/close cycles.
type Cycles struct {
	Cycles  int
	Elapsed time.Duration
}

// PerSecond is cycles per second.
func (c Cycles) PerSecond() float64 { return float64(c.Cycles) / c.Elapsed.Seconds() }

// Sources is how many loopback source addresses (127.0.0.2, ...) Cycles dials from, so the
// TIME_WAIT sockets its closes leave spread over enough ports.
const Sources = 32

// RunCycles runs n cycles on workers goroutines, each with its own agent listener. A cycle:
// the agent dials its listener from 127.0.0.x:0, accepts, sends 8 bytes one way and receives
// them the other, and closes both sockets. Every cycle checks the bytes.
func RunCycles(ctx context.Context, sc sockagentv1.SocketServiceClient, n, workers int) (c Cycles, err error) {
	c.Cycles = n
	workers = min(workers, n)
	lis := make([]*sockagentv1.Socket, workers)
	defer func() {
		for _, l := range lis {
			if l != nil {
				if _, cerr := sc.Close(context.WithoutCancel(ctx), &sockagentv1.CloseRequest{SocketId: l.GetSocketId()}); err == nil && cerr != nil {
					err = cerr
				}
			}
		}
	}()
	for w := range workers {
		r, err := sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
		if err != nil {
			return c, fmt.Errorf("listen: %w", err)
		}
		lis[w] = r.GetSocket()
	}
	per := (n + workers - 1) / workers
	start := time.Now()
	var wg sync.WaitGroup
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	for w := range workers {
		wg.Go(func() {
			for i := w * per; i < min(n, (w+1)*per); i++ {
				if err := cycle(cctx, sc, lis[w], i); err != nil {
					cancel(fmt.Errorf("cycle %d: %w", i, err)) // the first error is the cause
					return
				}
			}
		})
	}
	wg.Wait()
	c.Elapsed = time.Since(start)
	return c, context.Cause(cctx)
}

func cycle(ctx context.Context, sc sockagentv1.SocketServiceClient, lis *sockagentv1.Socket, i int) error {
	src := fmt.Sprintf("127.0.0.%d:0", 2+i%Sources)
	d, err := sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: lis.GetLocalAddress(), LocalAddress: src, Timeout: dur(10 * time.Second)})
	if err != nil {
		return fmt.Errorf("dial from %s: %w", src, err)
	}
	dialed := d.GetSocket().GetSocketId()
	a, err := sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: lis.GetSocketId(), Timeout: dur(10 * time.Second)})
	if err != nil {
		_, _ = sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: dialed})
		return fmt.Errorf("accept: %w", err)
	}
	acc := a.GetSocket().GetSocketId()
	err = func() error {
		if a.GetSocket().GetRemoteAddress() != d.GetSocket().GetLocalAddress() {
			return fmt.Errorf("accepted %s, dialed from %s", a.GetSocket().GetRemoteAddress(), d.GetSocket().GetLocalAddress())
		}
		msg := fmt.Appendf(nil, "%08x", i)
		if _, err := sc.Send(ctx, &sockagentv1.SendRequest{SocketId: dialed, Data: msg}); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		r, err := sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: acc, ExactBytes: uint32(len(msg)), Timeout: dur(10 * time.Second)})
		if err != nil {
			return fmt.Errorf("recv: %w", err)
		}
		if !bytes.Equal(r.GetData(), msg) {
			return fmt.Errorf("received %q, sent %q", r.GetData(), msg)
		}
		return nil
	}()
	for _, id := range []string{dialed, acc} {
		if _, cerr := sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}
	return err
}
