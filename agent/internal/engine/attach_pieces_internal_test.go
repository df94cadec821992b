package engine

import (
	"context"

	"github.com/sockagent/sockagent/agent/contract"
	"io"
	"strings"
	"testing"
	"time"
)

// scriptStream is an AttachStream that hands out its requests in turn, then io.EOF, and
// records what the Attach sends.
type scriptStream struct {
	reqs []*AttachIn
	sent chan AttachOut
}

func (s *scriptStream) Recv() (*AttachIn, error) {
	if len(s.reqs) == 0 {
		return nil, io.EOF
	}
	r := s.reqs[0]
	s.reqs = s.reqs[1:]
	return r, nil
}

func (s *scriptStream) Send(out *AttachOut) error {
	s.sent <- AttachOut{Data: append([]byte(nil), out.Data...), RemoteAddress: out.RemoteAddress, EOF: out.EOF}
	return nil
}

// TestAttachPieces: a request's data in pieces (Data, then More) reaches a stream socket's
// peer whole and in order, and a datagram socket's peer as one datagram of all the pieces;
// the counters count every piece.
func TestAttachPieces(t *testing.T) {
	t.Parallel()
	tb := newTable(time.Second, 1<<20, nil)
	defer tb.Stop()
	ctx, cancel := context.WithTimeout(WithCaller(t.Context(), Caller{ID: "a"}), 10*time.Second)
	defer cancel()

	t.Run("stream", func(t *testing.T) { attachPiecesStream(t, tb, ctx) })
	t.Run("datagram", func(t *testing.T) { attachPiecesDatagram(t, tb, ctx) })
	t.Run("pieces over bytes_per_call", func(t *testing.T) { attachPiecesOverLimit(t, tb, ctx) })
	t.Run("data after close_write", func(t *testing.T) { attachPiecesAfterCloseWrite(t, tb, ctx) })
}

func attachPiecesStream(t *testing.T, tb *Table, ctx context.Context) {
	cli, srv := streamPair(t, tb, ctx)
	st := &scriptStream{sent: make(chan AttachOut, 4), reqs: []*AttachIn{
		{SocketID: cli, Data: []byte("ab"), More: [][]byte{[]byte("cde"), []byte("f")}},
		{Data: []byte("g")},
		{Data: []byte("hi"), More: [][]byte{[]byte("jk")}, CloseWrite: true},
	}}
	if _, err := tb.Shutdown(ctx, srv, ShutWrite); err != nil { // the socket reads EOF at once
		t.Fatal(err)
	}
	counts := &StreamCounts{}
	if err := tb.Attach(ctx, st, counts); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	recvWant(t, tb, ctx, srv, 0, 11, "abcdefghijk", false)
	recvWant(t, tb, ctx, srv, 0, 0, "", true)
	if w := counts.Written.Load(); w != 11 {
		t.Errorf("counts written %d, want 11", w)
	}
	in, err := tb.Get(cli)
	if err != nil || in.BytesSent != 11 || in.MsgsSent != 3 {
		t.Errorf("socket counters: %+v, %v; want 11 bytes in 3 messages", in, err)
	}
	for _, id := range []string{cli, srv} {
		if _, err := tb.Close(ctx, id); err != nil {
			t.Error(err)
		}
	}
}

func attachPiecesDatagram(t *testing.T, tb *Table, ctx context.Context) {
	a, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := &scriptStream{sent: make(chan AttachOut, 4), reqs: []*AttachIn{
		{SocketID: a.ID, Data: []byte("one"), More: [][]byte{[]byte("-two"), []byte("-three")}, Address: b.Local},
		{Data: []byte("x"), Address: b.Local},
	}}
	if err := tb.Attach(ctx, st, nil); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	for _, want := range []string{"one-two-three", "x"} {
		data, from, err := tb.RecvFrom(ctx, b.ID, 0, 5*time.Second)
		if err != nil || string(data) != want || from != a.Local {
			t.Fatalf("RecvFrom = %q from %s, %v; want %q from %s", data, from, err, want, a.Local)
		}
	}
	for _, id := range []string{a.ID, b.ID} {
		if _, err := tb.Close(ctx, id); err != nil {
			t.Error(err)
		}
	}
}

func attachPiecesOverLimit(t *testing.T, tb *Table, ctx context.Context) {
	cli, srv := streamPair(t, tb, ctx)
	big := make([]byte, 4<<20) // the default policy's bytes_per_call, with Data's byte one over
	st := &scriptStream{sent: make(chan AttachOut, 4), reqs: []*AttachIn{
		{SocketID: cli, Data: []byte("x"), More: [][]byte{big}},
	}}
	err := tb.Attach(ctx, st, nil)
	if Reason(err) != contract.ReasonLimitExceeded || !strings.Contains(err.Error(), "4194305 bytes in one call") {
		t.Errorf("Attach: %v (%s), want LIMIT_EXCEEDED for 4194305 bytes", err, Reason(err))
	}
	if in, err := tb.Get(cli); err != nil || in.BytesSent != 0 {
		t.Errorf("socket counters: %+v, %v; want nothing sent", in, err)
	}
	for _, id := range []string{cli, srv} {
		if _, err := tb.Close(ctx, id); err != nil {
			t.Error(err)
		}
	}
}

func attachPiecesAfterCloseWrite(t *testing.T, tb *Table, ctx context.Context) {
	cli, srv := streamPair(t, tb, ctx)
	st := &scriptStream{sent: make(chan AttachOut, 4), reqs: []*AttachIn{
		{SocketID: cli, CloseWrite: true},
		{Data: []byte("a"), More: [][]byte{[]byte("b")}},
	}}
	err := tb.Attach(ctx, st, nil)
	if err == nil || !strings.Contains(err.Error(), "data after close_write") {
		t.Errorf("Attach: %v, want data after close_write", err)
	}
	// close_write alone writes nothing, and the refused data is not written either.
	if in, err := tb.Get(cli); err != nil || in.BytesSent != 0 || in.MsgsSent != 0 {
		t.Errorf("socket counters: %+v, %v; want nothing sent", in, err)
	}
	for _, id := range []string{cli, srv} {
		if _, err := tb.Close(ctx, id); err != nil {
			t.Error(err)
		}
	}
}
