package main

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/internal/testpki"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/credentials/insecure"
)

// TestSIGHUPRevokesToken: a SIGHUP that reloads a token file without alice's token ends what
// the token holds in the running binary: her Attach stream answers UNAUTHENTICATED and its
// socket closes (the peer reads EOF), her served echo stops answering and accepting, each
// socket gets a reclaim line with cause revoked; bob, still in the file, keeps working.
func TestSIGHUPRevokesToken(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "tokens")
	testpki.WriteFile(t, file, []byte("alice:alice-secret-0123456789\nbob:bob-secret-0123456789\n"))
	p := startLocal(t, "--log-format", "json", "--token-file", file)
	sc := sockagentv1.NewSocketServiceClient(p.dialWith(t, insecure.NewCredentials()))
	alice, bob := bearerCtx(t, "alice-secret-0123456789"), bearerCtx(t, "bob-secret-0123456789")

	echo, err := sc.Listen(alice, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Serve(alice, &sockagentv1.ServeRequest{SocketId: echo.GetSocket().GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO}); err != nil {
		t.Fatal(err)
	}
	served, err := net.Dial("tcp", echo.GetSocket().GetLocalAddress())
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	roundTrip := func(c net.Conn, send, want string, read func() (string, error)) error {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, send); err != nil {
			return err
		}
		got, err := read()
		if err == nil && got != want {
			err = errors.New("read " + got + ", want " + want)
		}
		return err
	}
	readN := func(c net.Conn, n int) func() (string, error) {
		return func() (string, error) {
			b := make([]byte, n)
			_, err := io.ReadFull(c, b)
			return string(b), err
		}
	}
	if err := roundTrip(served, "x", "x", readN(served, 1)); err != nil {
		t.Fatalf("the served echo before the reload: %v", err)
	}

	// An Attach relaying between a peer of the test and alice's dialed socket.
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	dialed, err := sc.Dial(alice, &sockagentv1.DialRequest{Network: "tcp", Address: target.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := target.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	st, err := sc.Attach(alice)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&sockagentv1.AttachRequest{SocketId: dialed.GetSocket().GetSocketId(), Data: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(peer, "pong", "ping", readN(peer, 4)); err != nil {
		t.Fatalf("the Attach before the reload: %v", err)
	}
	if r, err := st.Recv(); err != nil || string(r.GetData()) != "pong" {
		t.Fatalf("the Attach's first message: %v %v, want pong", r, err)
	}
	kept, err := sc.Listen(bob, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}

	testpki.WriteFile(t, file, []byte("bob:bob-secret-0123456789\n"))
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the Attach ended %s after the SIGHUP, want within 3s", d)
	}
	wantUnauthenticated(t, err)
	if _, err := p.log.waitFor(regexp.MustCompile(`"msg":"tokens reloaded".*"tokens":1`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := peer.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("the Attach's peer reads %d bytes, %v; want EOF (alice's socket closed)", n, err)
	}
	if err := roundTrip(served, "y", "y", readN(served, 1)); err == nil {
		t.Error("the served echo still answers after alice's token was revoked")
	}
	if c, err := net.DialTimeout("tcp", echo.GetSocket().GetLocalAddress(), time.Second); err == nil {
		c.Close()
		t.Error("alice's served listener still accepts after her token was revoked")
	}
	for _, id := range []string{echo.GetSocket().GetSocketId(), dialed.GetSocket().GetSocketId()} {
		re := regexp.MustCompile(`"msg":"reclaim".*"socket":"` + id + `","owner":"token:alice".*"cause":"revoked"`)
		if _, err := p.log.waitFor(re, 5*time.Second); err != nil {
			t.Error(err)
		}
	}
	wantUnauthenticated(t, info(alice, p.dialWith(t, insecure.NewCredentials())))
	if _, err := sc.Close(bob, &sockagentv1.CloseRequest{SocketId: kept.GetSocket().GetSocketId()}); err != nil {
		t.Errorf("bob closes his socket after the reload: %v", err)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}
