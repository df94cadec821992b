package agent_test

// Revoking a token (SetTokens without it, as SIGHUP does) ends what the token holds: its
// streams and blocked calls answer UNAUTHENTICATED, its sockets close (served ones stop
// answering), and a bare secret's identity does not pass to another token.

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestRevokeToken(t *testing.T) {
	t.Parallel()
	s := startSec(t, nil, mustTokens(t, "alice:alice-secret-0123456789\nbob:bob-secret-0123456789\n"))
	sc := sockagentv1.NewSocketServiceClient(s.conn(t, insecure.NewCredentials()))
	alice := withAuth(ctxT(t), "Bearer alice-secret-0123456789")
	bob := withAuth(ctxT(t), "Bearer bob-secret-0123456789")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// alice: a served echo, and a connected pair with an Attach on one end and a blocked Recv
	// on the other.
	echo, err := sc.Listen(alice, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	must(err)
	_, err = sc.Serve(alice, &sockagentv1.ServeRequest{SocketId: echo.GetSocket().GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO})
	must(err)
	peer, err := net.Dial("tcp", echo.GetSocket().GetLocalAddress())
	must(err)
	defer peer.Close()
	roundTrip := func(b byte) error {
		_ = peer.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := peer.Write([]byte{b}); err != nil {
			return err
		}
		got := []byte{0}
		if _, err := io.ReadFull(peer, got); err != nil {
			return err
		}
		if got[0] != b {
			return errors.New("echo answered another byte")
		}
		return nil
	}
	must(roundTrip('a'))
	lis, err := sc.Listen(alice, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	must(err)
	dialed, err := sc.Dial(alice, &sockagentv1.DialRequest{Network: "tcp", Address: lis.GetSocket().GetLocalAddress()})
	must(err)
	accepted, err := sc.Accept(alice, &sockagentv1.AcceptRequest{SocketId: lis.GetSocket().GetSocketId()})
	must(err)
	st, err := sc.Attach(alice)
	must(err)
	must(st.Send(&sockagentv1.AttachRequest{SocketId: dialed.GetSocket().GetSocketId(), Data: []byte("ping")}))
	recvDone := make(chan error, 1)
	go func() {
		_, err := sc.Recv(alice, &sockagentv1.RecvRequest{SocketId: accepted.GetSocket().GetSocketId(), MaxBytes: 100, Timeout: durationpb.New(time.Minute)})
		recvDone <- err
	}()
	// The Attach is relaying (its "ping" arrives at the accepted end once the Recv reads it),
	// and the Recv is pending.
	if err := <-recvDone; err != nil {
		t.Fatalf("Recv of the Attach's ping: %v", err)
	}
	go func() {
		_, err := sc.Recv(alice, &sockagentv1.RecvRequest{SocketId: accepted.GetSocket().GetSocketId(), MaxBytes: 100, Timeout: durationpb.New(time.Minute)})
		recvDone <- err
	}()
	waitPending(t, sc, alice, accepted.GetSocket().GetSocketId())
	kept, err := sc.Listen(bob, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	must(err)
	attachDone := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Recv(); err != nil {
				attachDone <- err
				return
			}
		}
	}()
	select {
	case err := <-attachDone:
		t.Fatalf("the Attach ended before the revocation: %v", err)
	case err := <-recvDone:
		t.Fatalf("the Recv ended before the revocation: %v", err)
	default:
	}

	start := time.Now()
	must(s.a.SetTokens(mustTokens(t, "bob:bob-secret-0123456789\n")))
	for name, ch := range map[string]chan error{"Attach": attachDone, "Recv": recvDone} {
		select {
		case err := <-ch:
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s after the revocation: %v, want UNAUTHENTICATED", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still running 5s after its token was revoked", name)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the streams ended %s after the revocation, want within 2s", d)
	}
	// The served echo stopped: the connection it served is closed, a new one refused.
	if err := roundTrip('b'); err == nil {
		t.Error("the served echo still answers after its token was revoked")
	}
	if c, err := net.DialTimeout("tcp", echo.GetSocket().GetLocalAddress(), time.Second); err == nil {
		c.Close()
		t.Error("the served listener still accepts after its token was revoked")
	}
	if n := s.a.NumSockets(); n != 1 {
		t.Errorf("%d sockets after the revocation, want bob's 1", n)
	}
	_, err = sc.Listen(alice, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	wantUnauthenticated(t, err)
	if _, err := sc.Close(bob, &sockagentv1.CloseRequest{SocketId: kept.GetSocket().GetSocketId()}); err != nil {
		t.Errorf("bob closes his socket after alice's revocation: %v", err)
	}
}

// waitPending waits until the socket has a call pending.
func waitPending(t *testing.T, sc sockagentv1.SocketServiceClient, ctx context.Context, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r, err := sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: id})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetSocket().GetPendingCalls() > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("socket %s has no call pending after 5s", id)
}

// TestBareTokenIdentity: a bare secret's identity comes from the secret, so taking another
// line out of the token file hands it nothing: neither the removed token's sockets nor its name.
func TestBareTokenIdentity(t *testing.T) {
	t.Parallel()
	s := startSec(t, nil, mustTokens(t, "first-secret-0123456789\nsecond-secret-0123456789\n"))
	sc := sockagentv1.NewSocketServiceClient(s.conn(t, insecure.NewCredentials()))
	first := withAuth(ctxT(t), "Bearer first-secret-0123456789")
	second := withAuth(ctxT(t), "Bearer second-secret-0123456789")
	lis, err := sc.Listen(first, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "token:" + agent.BareTokenName("first-secret-0123456789"); lis.GetSocket().GetOwner() != want {
		t.Errorf("owner %s, want %s", lis.GetSocket().GetOwner(), want)
	}
	if err := s.a.SetTokens(mustTokens(t, "second-secret-0123456789\n")); err != nil {
		t.Fatal(err)
	}
	_, err = sc.GetSocket(second, &sockagentv1.GetSocketRequest{SocketId: lis.GetSocket().GetSocketId()})
	wantStatus(t, err, codes.NotFound, "UNKNOWN_SOCKET")
	l, err := sc.ListSockets(second, &sockagentv1.ListSocketsRequest{})
	if err != nil || len(l.GetSockets()) != 0 {
		t.Errorf("the second token lists %v, %v; want nothing", l.GetSockets(), err)
	}
	seen := s.seen("ListSockets")
	if want := "token:" + agent.BareTokenName("second-secret-0123456789"); len(seen) != 1 || seen[0].ID != want {
		t.Errorf("the second token's caller %+v, want %s", seen, want)
	}
}

// TestRotateTokenSecret: a new secret under the same name revokes the old secret: the streams
// it authenticated end with UNAUTHENTICATED, while the caller's sockets stay its own, for the
// new secret to use.
func TestRotateTokenSecret(t *testing.T) {
	t.Parallel()
	s := startSec(t, nil, mustTokens(t, "alice:old-secret-0123456789\n"))
	sc := sockagentv1.NewSocketServiceClient(s.conn(t, insecure.NewCredentials()))
	old := withAuth(ctxT(t), "Bearer old-secret-0123456789")
	lis, err := sc.Listen(old, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	dialed, err := sc.Dial(old, &sockagentv1.DialRequest{Network: "tcp", Address: lis.GetSocket().GetLocalAddress()})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sc.Attach(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&sockagentv1.AttachRequest{SocketId: dialed.GetSocket().GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	waitAttached(t, sc, old, dialed.GetSocket().GetSocketId())
	start := time.Now()
	if err := s.a.SetTokens(mustTokens(t, "alice:new-secret-0123456789\n")); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the Attach ended %s after the rotation, want within 2s", d)
	}
	wantUnauthenticated(t, err)
	renewed := withAuth(ctxT(t), "Bearer new-secret-0123456789")
	for _, id := range []string{dialed.GetSocket().GetSocketId(), lis.GetSocket().GetSocketId()} {
		if _, err := sc.Close(renewed, &sockagentv1.CloseRequest{SocketId: id}); err != nil {
			t.Errorf("the new secret closes %s: %v", id, err)
		}
	}
}

// waitAttached waits until the socket is attached to an Attach stream.
func waitAttached(t *testing.T, sc sockagentv1.SocketServiceClient, ctx context.Context, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r, err := sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: id})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetSocket().GetAttached() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("socket %s not attached after 5s", id)
}
