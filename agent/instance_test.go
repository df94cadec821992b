package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// errInfo returns the ErrorInfo metadata of err, or nil.
func errInfo(err error) map[string]string {
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.GetMetadata()
		}
	}
	return nil
}

// idCalls makes every SocketService call that names socket id with ctx and returns each
// call's error by name.
func idCalls(ctx context.Context, e *env, id string) map[string]error {
	calls := map[string]error{
		"get":      errOf(e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: id})),
		"accept":   errOf(e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: id, Timeout: dur(time.Second)})),
		"send":     errOf(e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: id, Data: []byte("x")})),
		"recv":     errOf(e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: id, Timeout: dur(time.Second)})),
		"sendto":   errOf(e.sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: id, Address: "127.0.0.1:9", Data: []byte("x")})),
		"recvfrom": errOf(e.sc.RecvFrom(ctx, &sockagentv1.RecvFromRequest{SocketId: id, Timeout: dur(time.Second)})),
		"shutdown": errOf(e.sc.Shutdown(ctx, &sockagentv1.ShutdownRequest{SocketId: id, Direction: sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_BOTH})),
		"serve":    errOf(e.sc.Serve(ctx, &sockagentv1.ServeRequest{SocketId: id, Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO})),
		"close":    errOf(e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id})),
	}
	st, err := e.sc.Attach(ctx)
	if err == nil {
		_ = st.Send(&sockagentv1.AttachRequest{SocketId: id}) // a refusal ends the stream: Recv returns it
		_, err = st.Recv()
	}
	calls["attach"] = err
	return calls
}

// TestSocketIDsAcrossInstances: the ids of one agent instance never name a socket of
// another, though both count from 1; a call on an id of another instance, or expecting
// another instance (contract.InstanceHeader), is UNKNOWN_SOCKET naming the restart, and
// touches nothing.
func TestSocketIDsAcrossInstances(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	old, cur := newEnv(t), newEnv(t)
	oldInfo, err := old.ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cur.ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	inst, oldInst := info.GetInstanceId(), oldInfo.GetInstanceId()
	if !contract.ValidInstance(inst) || len(inst) != contract.InstanceIDLen || contract.ShortInstance(inst) == contract.ShortInstance(oldInst) {
		t.Fatalf("instances %q and %q: want two of %d hex digits with distinct short forms", oldInst, inst, contract.InstanceIDLen)
	}
	// The same sequence on both: a listener, a dialled and an accepted connection, a UDP socket.
	open := func(e *env) []*sockagentv1.Socket {
		lis := e.listen(t, "tcp", "127.0.0.1:0")
		cli := e.dial(t, "tcp", lis.GetLocalAddress())
		srv := e.accept(t, lis.GetSocketId())
		udp := e.bind(t, "udp", "127.0.0.1:0")
		ss := []*sockagentv1.Socket{lis, cli, srv, udp}
		for _, s := range ss {
			e.closeAtEnd(t, s.GetSocketId())
		}
		return ss
	}
	olds, curs := open(old), open(cur)
	for i, s := range curs {
		if want := fmt.Sprintf("s%s-%d", inst[:contract.SocketIDInstanceLen], i+1); s.GetSocketId() != want {
			t.Errorf("socket %d of the instance: id %q, want %q", i+1, s.GetSocketId(), want)
		}
		if olds[i].GetSocketId() == s.GetSocketId() {
			t.Errorf("socket %d: both instances named it %s", i+1, s.GetSocketId())
		}
	}
	// Bytes waiting on the new instance's sockets: a stray Recv would take them.
	cur.send(t, curs[1].GetSocketId(), "OTHER-CLIENT")
	cur.send(t, curs[2].GetSocketId(), "OTHER-CLIENT")

	started := info.GetStartedAt().AsTime().UTC().Format(time.RFC3339)
	wantRestart := func(what string, calls map[string]error, other string, parts ...string) {
		t.Helper()
		for op, err := range calls {
			wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSocket,
				append([]string{"this agent instance " + inst + ", started " + started, "instance " + other, "the agent restarted"}, parts...)...)
			if md := errInfo(err); md["instance_id"] != inst || md["expected_instance"] != other {
				t.Errorf("%s %s: metadata %v, want instance_id %s and expected_instance %s", what, op, md, inst, other)
			}
		}
	}
	for _, s := range olds { // the old ids on the new instance
		wantRestart(s.GetSocketId(), idCalls(ctx, cur, s.GetSocketId()), oldInst[:contract.SocketIDInstanceLen], "the id belongs to")
	}
	for _, expect := range []string{oldInst, oldInst[:contract.SocketIDInstanceLen]} { // the new ids, expecting the old instance
		hctx := metadata.AppendToOutgoingContext(ctx, contract.InstanceHeader, expect)
		for _, s := range curs {
			wantRestart(s.GetSocketId()+" expecting "+expect, idCalls(hctx, cur, s.GetSocketId()), expect, "the call expects", contract.InstanceHeader)
		}
	}
	// Nothing was touched: the bytes wait, every socket is open, the counters are as sent.
	for _, expect := range []string{inst, inst[:contract.SocketIDInstanceLen], ""} {
		hctx := ctx
		if expect != "" {
			hctx = metadata.AppendToOutgoingContext(ctx, contract.InstanceHeader, expect)
		}
		for i, s := range curs {
			got, err := cur.sc.GetSocket(hctx, &sockagentv1.GetSocketRequest{SocketId: s.GetSocketId()})
			if err != nil {
				t.Fatalf("get %s expecting %q: %v", s.GetSocketId(), expect, err)
			}
			if st := got.GetSocket().GetState(); st != sockagentv1.SocketState_SOCKET_STATE_OPEN {
				t.Errorf("socket %d after the calls on old ids: state %v", i+1, st)
			}
		}
	}
	if got := cur.recvExact(t, curs[2].GetSocketId(), 12); got != "OTHER-CLIENT" {
		t.Errorf("the new instance's bytes: %q, want OTHER-CLIENT", got)
	}
	hctx := metadata.AppendToOutgoingContext(ctx, contract.InstanceHeader, inst)
	r, err := cur.sc.Recv(hctx, &sockagentv1.RecvRequest{SocketId: curs[1].GetSocketId(), ExactBytes: 12, Timeout: dur(5 * time.Second)})
	if err != nil || string(r.GetData()) != "OTHER-CLIENT" {
		t.Errorf("recv expecting this instance: %q, %v; want OTHER-CLIENT", r.GetData(), err)
	}
}

// TestInstanceHeaderMalformed: a header that names no instance is refused as such, never
// taken for a restart nor ignored.
func TestInstanceHeaderMalformed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	info, err := e.ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	lis := e.listen(t, "tcp", "127.0.0.1:0")
	e.closeAtEnd(t, lis.GetSocketId())
	for _, hdr := range [][]string{
		{strings.ToUpper(info.GetInstanceId())},
		{info.GetInstanceId()[:8]},
		{info.GetInstanceId() + "0"},
		{strings.Repeat("%z", 2048)},
		{info.GetInstanceId(), info.GetInstanceId()}, // twice: which one?
	} {
		var kv []string
		for _, v := range hdr {
			kv = append(kv, contract.InstanceHeader, v)
		}
		hctx := metadata.AppendToOutgoingContext(ctx, kv...)
		for op, err := range idCalls(hctx, e, lis.GetSocketId()) {
			wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "header "+contract.InstanceHeader, "GetInfo.instance_id")
			if m := status.Convert(err).Message(); len(m) > 300 || strings.Contains(m, "%z") {
				t.Errorf("%s: message of %d bytes quotes the header: %q", op, len(m), m)
			}
		}
	}
	if _, err := e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: lis.GetSocketId()}); err != nil {
		t.Fatalf("listener after the refused calls: %v", err)
	}
}
