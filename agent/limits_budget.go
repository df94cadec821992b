package agent

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
)

// budget enforces the agent-wide limits on calls in progress, all callers together:
// agent_limits.blocking_calls (Dial, Accept, Send, Recv, SendTo, RecvFrom, Probe, and the
// Attach and Throughput streams, at once) and
// agent_limits.buffered_bytes (the data those calls hold: Send and SendTo data until written,
// Recv and RecvFrom buffers until filled; a Recv counts the size it asks for, max_bytes or
// exact_bytes, 0 being the default read size, at most the agent's MaxRecvBytes) plus the
// bytes sockets keep from interrupted exact reads (sock.leftover, counted by setLeftover) until
// a Recv takes them or the socket closes.
//
// It counts a call from the moment its request is decoded until its answer is ready, as a
// server interceptor after authentication, so the socket table needs no hook. The per-caller
// limits of the policy are the table's.
type budget struct {
	maxCalls, maxBytes int
	maxRecv            int           // Config.MaxRecvBytes: a larger Recv is refused by the table anyway
	leftover           *atomic.Int64 // the table's count of leftover bytes

	mu    sync.Mutex
	calls int
	bytes int
}

func newBudget(t *table, maxRecv int) *budget {
	return &budget{maxCalls: t.policy.MaxBlockingCalls, maxBytes: t.policy.MaxBufferedBytes, maxRecv: maxRecv, leftover: &t.leftover}
}

// unary counts the blocking calls and refuses those over a limit with RESOURCE_EXHAUSTED,
// reason LIMIT_EXCEEDED, naming the limit; other RPCs pass untouched.
func (b *budget) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	op, n, ok := b.cost(req)
	if !ok {
		return handler(ctx, req)
	}
	_, drains := req.(*sockagentv1.RecvRequest)
	if err := b.take(n, drains); err != nil {
		op.Err = err
		return nil, toStatus(op).Err()
	}
	defer b.give(n)
	return handler(ctx, req)
}

// cost says whether req is a blocking call, what it is (for the refusal) and how many bytes
// it holds while in progress.
func (b *budget) cost(req any) (*OpError, int, bool) {
	switch r := req.(type) {
	case *sockagentv1.DialRequest:
		return &OpError{Op: "dial", Network: r.GetNetwork(), Address: r.GetAddress()}, 0, true
	case *sockagentv1.AcceptRequest:
		return &OpError{Op: "accept", SocketID: r.GetSocketId()}, 0, true
	case *sockagentv1.SendRequest:
		return &OpError{Op: "send", SocketID: r.GetSocketId()}, len(r.GetData()), true
	case *sockagentv1.SendToRequest:
		return &OpError{Op: "sendto", SocketID: r.GetSocketId(), Address: r.GetAddress()}, len(r.GetData()), true
	case *sockagentv1.RecvRequest:
		return &OpError{Op: "recv", SocketID: r.GetSocketId()}, b.readSize(max(r.GetMaxBytes(), r.GetExactBytes())), true
	case *sockagentv1.RecvFromRequest:
		return &OpError{Op: "recvfrom", SocketID: r.GetSocketId()}, b.readSize(r.GetMaxBytes()), true
	case *sockagentv1.ProbeRequest:
		return &OpError{Op: "probe", Network: r.GetNetwork(), Address: r.GetAddress()}, 0, true
	}
	return nil, 0, false
}

func (b *budget) readSize(n uint32) int {
	if n == 0 {
		return min(defaultReadSize, b.maxRecv)
	}
	return int(min(int64(n), int64(b.maxRecv)))
}

// take counts one call holding n bytes, or refuses it. Leftover bytes count against every call
// but a Recv (drains): a Recv is what takes them, so it must not be refused for them.
func (b *budget) take(n int, drains bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.calls >= b.maxCalls:
		return &limitError{Limit: "agent_limits.blocking_calls", Max: b.maxCalls,
			Detail: fmt.Sprintf("the agent has %d blocking calls in progress; wait for some to end", b.calls)}
	case n > b.maxBytes:
		return &limitError{Limit: "agent_limits.buffered_bytes", Max: b.maxBytes,
			Detail: fmt.Sprintf("%d bytes in one call; use smaller calls", n)}
	}
	left := 0
	if !drains {
		left = int(b.leftover.Load())
	}
	if b.bytes+left+n > b.maxBytes {
		held := fmt.Sprintf("%d bytes for calls in progress", b.bytes)
		if left > 0 {
			held += fmt.Sprintf(" and %d left over from interrupted exact reads (Recv or Close those sockets)", left)
		}
		return &limitError{Limit: "agent_limits.buffered_bytes", Max: b.maxBytes,
			Detail: fmt.Sprintf("the agent holds %s and this call needs %d; wait for some to end", held, n)}
	}
	b.calls++
	b.bytes += n
	return nil
}

func (b *budget) give(n int) {
	b.mu.Lock()
	b.calls--
	b.bytes -= n
	b.mu.Unlock()
}

// setLeftover replaces the socket's leftover bytes and keeps the table's count of them; a
// closed socket keeps none. Called under readGate.
func (s *sock) setLeftover(b []byte) {
	select {
	case <-s.closed:
		b = nil
	default:
	}
	if len(b) == 0 {
		b = nil // let go of the array of a slice emptied by reading
	}
	if s.held != nil {
		s.held.Add(int64(len(b) - len(s.leftover)))
	}
	s.leftover = b
}

// dropLeftover uncounts a closing socket's leftover bytes: at once when no read holds
// readGate, else once the read in progress leaves it. Called by close after s.closed.
func (s *sock) dropLeftover() {
	if s.readGate == nil {
		return // never registered: never read
	}
	drop := func() {
		s.setLeftover(nil)
		s.readGate.leave()
	}
	select {
	case <-s.readGate:
		drop()
	default:
		go func() {
			<-s.readGate
			drop()
		}()
	}
}
