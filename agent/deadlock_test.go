package agent_test

import (
	"sync"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pairs opens n TCP connections from dialer's caller to listener's: the dialled ends and the
// accepted ends, in order.
func pairs(t *testing.T, dialer, acceptor *polCaller, n int) (dialled, accepted []*sockagentv1.Socket) {
	t.Helper()
	l := acceptor.listen(t, "tcp", "127.0.0.1:0")
	for range n {
		dialled = append(dialled, dialer.dial(t, "tcp", l.GetLocalAddress()))
		accepted = append(accepted, acceptor.accept(t, l.GetSocketId()))
	}
	return dialled, accepted
}

// recvEach starts a 1-minute Recv on every socket as c: it returns how many were admitted
// (pending when it returns) and how many were refused at once naming limit, and a func that
// waits for the admitted ones to end, checking each got want.
func recvEach(t *testing.T, e *env, c *polCaller, socks []*sockagentv1.Socket, limit, want string) (admitted int, wait func()) {
	t.Helper()
	type result struct {
		data string
		err  error
	}
	results := make(chan result, len(socks))
	refused := 0
	var wg sync.WaitGroup
	for _, s := range socks {
		wg.Go(func() {
			r, err := e.sc.Recv(c.ctx, &sockagentv1.RecvRequest{SocketId: s.GetSocketId(), ExactBytes: uint32(len(want)), Timeout: dur(time.Minute)})
			results <- result{string(r.GetData()), err}
		})
	}
	// Every Recv is either pending in the agent or refused: count until they add up.
	deadline := time.Now().Add(20 * time.Second)
	for {
		pending := 0
		for _, s := range socks {
			g, err := e.sc.GetSocket(c.ctx, &sockagentv1.GetSocketRequest{SocketId: s.GetSocketId()})
			if err != nil {
				t.Fatal(err)
			}
			pending += int(g.GetSocket().GetPendingCalls())
		}
		for len(results) > 0 && refused+pending < len(socks) {
			r := <-results
			if status.Code(r.err) != codes.ResourceExhausted || polMeta(r.err)["limit"] != limit {
				t.Fatalf("a Recv ended before any Send: %q %v; want it pending or refused naming %s", r.data, r.err, limit)
			}
			refused++
		}
		if refused+pending == len(socks) {
			admitted = pending
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pending and %d refused of %d Recvs", pending, refused, len(socks))
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation: the counts decide
	}
	return admitted, func() {
		wg.Wait()
		close(results)
		for r := range results {
			if r.err != nil || r.data != want {
				t.Errorf("an admitted Recv got %q, %v; want %q", r.data, r.err, want)
			}
		}
	}
}

// sendEach sends data on every socket as c, one after the other; each must succeed.
func sendEach(t *testing.T, e *env, c *polCaller, socks []*sockagentv1.Socket, data string) {
	t.Helper()
	for _, s := range socks {
		if _, err := e.sc.Send(c.ctx, &sockagentv1.SendRequest{SocketId: s.GetSocketId(), Data: []byte(data)}); err != nil {
			t.Fatalf("send on %s while Recvs fill the budget: %v", s.GetSocketId(), err)
		}
	}
}

// TestRecvsCannotStarveSends, one caller: 300 Recvs and then 300 Sends with the default
// limits (256 blocking calls per caller). The Recvs take at most three quarters of the
// caller's blocking calls (192) and the rest are refused at once; every Send still succeeds,
// completing the Recvs waiting for it, instead of being refused while they wait out their
// timeout.
func TestRecvsCannotStarveSends(t *testing.T) {
	e := polEnv(t, "", true)
	alice := e.as(t, "alice")
	dialled, accepted := pairs(t, alice, alice, 300)
	admitted, wait := recvEach(t, e, alice, accepted, "limits.blocking_calls", "ping")
	if admitted != 192 {
		t.Errorf("%d Recvs admitted, want 192 (three quarters of 256)", admitted)
	}
	start := time.Now()
	sendEach(t, e, alice, dialled, "ping")
	wait()
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("300 Sends and the Recvs they complete took %s", took)
	}
}

// TestRecvsCannotStarveSendsAcrossCallers: alice's 300 Recvs fill what the agent lets waiting
// calls hold (three quarters of its 300 blocking calls); bob's 300 Sends, to the connections
// alice's Recvs wait on, all succeed.
func TestRecvsCannotStarveSendsAcrossCallers(t *testing.T) {
	e := polEnv(t, "agent_limits: {blocking_calls: 300}\ndefault: {limits: {blocking_calls: 400, sockets: 1000}}\n", true)
	alice, bob := e.as(t, "alice"), e.as(t, "bob")
	dialled, accepted := pairs(t, bob, alice, 300)
	admitted, wait := recvEach(t, e, alice, accepted, "agent_limits.blocking_calls", "pong")
	if admitted != 225 {
		t.Errorf("%d Recvs admitted, want 225 (three quarters of the agent's 300)", admitted)
	}
	sendEach(t, e, bob, dialled, "pong")
	wait()
}
