package agent_test

import (
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/codes"
)

// TestPlainRecvAfterInterruptedExact: bytes an exact Recv read before its timeout are kept,
// and the next plain Recv returns them first, in order, before anything newer.
func TestPlainRecvAfterInterruptedExact(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.listen(t, "tcp", "127.0.0.1:0")
	c := e.dial(t, "tcp", l.GetLocalAddress())
	s := e.accept(t, l.GetSocketId())
	e.send(t, c.GetSocketId(), "abcd")
	_, err := e.sc.Recv(ctxT(t), &sockagentv1.RecvRequest{SocketId: s.GetSocketId(), ExactBytes: 10, Timeout: dur(200 * time.Millisecond)})
	wantStatus(t, err, codes.DeadlineExceeded, contract.ReasonTimeout)
	e.send(t, c.GetSocketId(), "efgh")
	r, err := e.sc.Recv(ctxT(t), &sockagentv1.RecvRequest{SocketId: s.GetSocketId(), Timeout: dur(5 * time.Second)})
	if err != nil || string(r.GetData()) != "abcd" {
		t.Fatalf("plain recv after the interrupted exact one: %q, %v; want the 4 bytes it kept", r.GetData(), err)
	}
	if got := e.recvExact(t, s.GetSocketId(), 4); got != "efgh" {
		t.Errorf("then %q, want efgh", got)
	}
}

// TestExactBytesNeedsAStream: exact_bytes on a datagram socket is refused: a datagram is read
// whole, one per call.
func TestExactBytesNeedsAStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bind(t, "udp", "127.0.0.1:0")
	d := e.dial(t, "udp", b.GetLocalAddress())
	_, err := e.sc.Recv(ctxT(t), &sockagentv1.RecvRequest{SocketId: d.GetSocketId(), ExactBytes: 4, Timeout: dur(time.Second)})
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "exact_bytes needs a stream socket")
}
