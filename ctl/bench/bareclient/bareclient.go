// Package bareclient is the baseline of sockbench's scenario row: the barest Go client making
// the RPCs 'sockctl run' makes for the row's 1,000-step scenario. It imports grpc-go and the
// generated sockagent.v1 code only (and the leaf package contract, for the session header), so
// the barescenario binary built from it is as lean as a hand-written client.
package bareclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Scenario does what the runner does for the scenario: connect to addr, GetInfo, open a
// session, listen, dial and accept in it (with request ids), pairs x (Send payload, exact Recv
// of it, checked), close the three sockets, close the session. Like the runner, only the calls
// that open a socket carry the session header.
func Scenario(ctx context.Context, addr string, pairs int, payload []byte) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	sc := sockagentv1.NewSocketServiceClient(conn)
	ss := sockagentv1.NewSessionServiceClient(conn)
	if _, err := sockagentv1.NewAgentServiceClient(conn).GetInfo(ctx, &sockagentv1.GetInfoRequest{}, grpc.WaitForReady(true)); err != nil {
		return fmt.Errorf("GetInfo: %w", err)
	}
	sess, err := ss.OpenSession(ctx, &sockagentv1.OpenSessionRequest{Ttl: durationpb.New(30 * time.Second), Name: "bare client"})
	if err != nil {
		return fmt.Errorf("OpenSession: %w", err)
	}
	defer func() {
		_, _ = ss.CloseSession(context.WithoutCancel(ctx), &sockagentv1.CloseSessionRequest{SessionId: sess.GetSession().GetSessionId()})
	}()
	sctx := metadata.AppendToOutgoingContext(ctx, contract.SessionHeader, sess.GetSession().GetSessionId())
	timeout := durationpb.New(5 * time.Second)
	l, err := sc.Listen(sctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", RequestId: requestID()})
	if err != nil {
		return fmt.Errorf("Listen: %w", err)
	}
	d, err := sc.Dial(sctx, &sockagentv1.DialRequest{Network: "tcp", Address: l.GetSocket().GetLocalAddress(), Timeout: timeout, RequestId: requestID()})
	if err != nil {
		return fmt.Errorf("Dial: %w", err)
	}
	a, err := sc.Accept(sctx, &sockagentv1.AcceptRequest{SocketId: l.GetSocket().GetSocketId(), Timeout: timeout, RequestId: requestID()})
	if err != nil {
		return fmt.Errorf("Accept: %w", err)
	}
	cli, srv := d.GetSocket().GetSocketId(), a.GetSocket().GetSocketId()
	for range pairs {
		if _, err := sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: payload}); err != nil {
			return fmt.Errorf("Send: %w", err)
		}
		r, err := sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: srv, ExactBytes: uint32(len(payload)), Timeout: timeout})
		if err != nil {
			return fmt.Errorf("Recv: %w", err)
		}
		if !bytes.Equal(r.GetData(), payload) {
			return fmt.Errorf("Recv got %q, want %q", r.GetData(), payload)
		}
	}
	for _, s := range []*sockagentv1.Socket{d.GetSocket(), a.GetSocket(), l.GetSocket()} {
		if _, err := sc.Close(sctx, &sockagentv1.CloseRequest{SocketId: s.GetSocketId()}); err != nil {
			return fmt.Errorf("Close: %w", err)
		}
	}
	return nil
}

func requestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "bare-" + hex.EncodeToString(b[:])
}
