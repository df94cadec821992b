// Package load drives a sockagent with many sockets at once and measures what it holds:
// concurrent TCP connections, concurrent blocking calls, and open/use/close cycles. The
// sockload command prints its figures; the process-level tests run it with smaller counts.
//
// Every loop is bounded in count and by its context; traffic goes to loopback only.
package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// PolicyYAML raises the default policy's limits so that one caller may hold n sockets and
// make n concurrent blocking calls.
func PolicyYAML(n int) string {
	return fmt.Sprintf("agent_limits:\n  sockets: %d\n  blocking_calls: %d\ndefault:\n  limits:\n    sockets: %d\n    blocking_calls: %d\n", n, n, n, n)
}

// Proc reads a process's figures from /proc (Linux).
type Proc int

// RSS is the resident set size in bytes (VmRSS).
func (p Proc) RSS() (int64, error) {
	v, err := p.statusField("VmRSS")
	return v * 1024, err
}

// PeakRSS is the largest resident set size the process has had, in bytes (VmHWM).
func (p Proc) PeakRSS() (int64, error) {
	v, err := p.statusField("VmHWM")
	return v * 1024, err
}

// Threads is the number of OS threads.
func (p Proc) Threads() (int64, error) { return p.statusField("Threads") }

func (p Proc) statusField(name string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", int(p)))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", int(p), name)
}

// FDs is the number of open file descriptors.
func (p Proc) FDs() (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", int(p)))
	return len(ents), err
}

// Snapshot is a process's resources at one moment.
type Snapshot struct {
	RSS     int64
	FDs     int
	Threads int64
}

// Snap reads RSS, fds and threads.
func (p Proc) Snap() (Snapshot, error) {
	var s Snapshot
	var err1, err2, err3 error
	s.RSS, err1 = p.RSS()
	s.FDs, err2 = p.FDs()
	s.Threads, err3 = p.Threads()
	return s, errors.Join(err1, err2, err3)
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// forEach runs fn(i) for i in [0, n) on workers goroutines and returns the first error; the
// others stop early after an error.
func forEach(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// Pairs are n TCP connections between the load process (Clients, dialed with net.Dial) and
// the agent (Accepted by the agent on Listener, one Accept RPC per connection). Agent[i] is
// the agent's socket of Clients[i].
type Pairs struct {
	Listener *sockagentv1.Socket
	Clients  []net.Conn
	Agent    []*sockagentv1.Socket
}

// Connect opens n connections to a new agent listener on 127.0.0.1, workers at a time.
func Connect(ctx context.Context, sc sockagentv1.SocketServiceClient, n, workers int) (*Pairs, error) {
	lr, err := sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	p := &Pairs{Listener: lr.GetSocket(), Clients: make([]net.Conn, n), Agent: make([]*sockagentv1.Socket, n)}
	addr := p.Listener.GetLocalAddress()
	var mu sync.Mutex
	accepted := make(map[string]*sockagentv1.Socket, n) // by the agent socket's remote address
	var d net.Dialer
	// Each worker dials one connection, then accepts one: at most workers connections wait
	// in the backlog, and Accept returns them in the order they arrived, not necessarily
	// the worker's own, so they are matched by address afterwards.
	err = forEach(ctx, n, workers, func(ctx context.Context, i int) error {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("connection %d: dial %s: %w", i, addr, err)
		}
		p.Clients[i] = c
		ar, err := sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: p.Listener.GetSocketId(), Timeout: dur(30 * time.Second)})
		if err != nil {
			return fmt.Errorf("connection %d: accept: %w", i, err)
		}
		mu.Lock()
		accepted[ar.GetSocket().GetRemoteAddress()] = ar.GetSocket()
		mu.Unlock()
		return nil
	})
	if err == nil {
		for i, c := range p.Clients {
			s, ok := accepted[c.LocalAddr().String()]
			if !ok {
				err = fmt.Errorf("connection %d from %s: the agent accepted no such connection", i, c.LocalAddr())
				break
			}
			p.Agent[i] = s
		}
	}
	if err != nil {
		cctx := context.WithoutCancel(ctx)
		// An Accept cancelled when another worker failed may have taken its connection on the
		// agent all the same, with the answer lost: every socket the listener gave goes,
		// whether or not its answer came back.
		if ls, lerr := sc.ListSockets(cctx, &sockagentv1.ListSocketsRequest{}); lerr == nil {
			for _, s := range ls.GetSockets() {
				if s.GetParentId() == p.Listener.GetSocketId() {
					accepted[s.GetSocketId()] = s
				}
			}
		}
		p.Close(cctx, sc)
		for _, s := range accepted {
			_, _ = sc.Close(cctx, &sockagentv1.CloseRequest{SocketId: s.GetSocketId()})
		}
		return nil, err
	}
	return p, nil
}

// Close resets every client connection (SO_LINGER 0: no TIME_WAIT left behind) and closes
// the agent's sockets and the listener.
func (p *Pairs) Close(ctx context.Context, sc sockagentv1.SocketServiceClient) error {
	for _, c := range p.Clients {
		if c != nil {
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}
	var ids []string
	for _, s := range p.Agent {
		if s != nil {
			ids = append(ids, s.GetSocketId())
		}
	}
	ids = append(ids, p.Listener.GetSocketId())
	return forEach(ctx, len(ids), 16, func(ctx context.Context, i int) error {
		if _, err := sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: ids[i]}); err != nil {
			return fmt.Errorf("close %s: %w", ids[i], err)
		}
		return nil
	})
}

// Check proves every connection live, both ways: the agent sends each client its index,
// each client answers with it, and the agent receives the answer. Up to workers at a time.
func (p *Pairs) Check(ctx context.Context, sc sockagentv1.SocketServiceClient, workers int) error {
	return forEach(ctx, len(p.Clients), workers, func(ctx context.Context, i int) error {
		msg := []byte(fmt.Sprintf("conn %07d", i))
		id := p.Agent[i].GetSocketId()
		if _, err := sc.Send(ctx, &sockagentv1.SendRequest{SocketId: id, Data: msg}); err != nil {
			return fmt.Errorf("connection %d: send: %w", i, err)
		}
		c := p.Clients[i]
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("connection %d: client read: %w", i, err)
		}
		if !bytes.Equal(got, msg) {
			return fmt.Errorf("connection %d: client got %q, want %q", i, got, msg)
		}
		if _, err := c.Write(msg); err != nil {
			return fmt.Errorf("connection %d: client write: %w", i, err)
		}
		r, err := sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: id, ExactBytes: uint32(len(msg)), Timeout: dur(30 * time.Second)})
		if err != nil {
			return fmt.Errorf("connection %d: recv: %w", i, err)
		}
		if !bytes.Equal(r.GetData(), msg) {
			return fmt.Errorf("connection %d: agent received %q, want %q", i, r.GetData(), msg)
		}
		return nil
	})
}

// OpenSockets is the agent's open_sockets from GetInfo (all callers).
func OpenSockets(ctx context.Context, ac sockagentv1.AgentServiceClient) (int, error) {
	r, err := ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		return 0, fmt.Errorf("get info: %w", err)
	}
	return int(r.GetOpenSockets()), nil
}

// Settle polls read until it returns at most want, or ctx ends, and returns the last value:
// sockets and goroutines of a closed connection go away shortly after the Close returns.
func Settle(ctx context.Context, want int, read func() (int, error)) (int, error) {
	for {
		v, err := read()
		if err != nil || v <= want {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, nil
		case <-time.After(5 * time.Millisecond): // polling interval; the condition above decides
		}
	}
}
