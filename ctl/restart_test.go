package ctl

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/localagent"
	"github.com/sockagent/sockagent/ctl/runner"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// pendingOn waits until one socket of the caller on sc has n calls pending.
func pendingOn(t *testing.T, sc sockagentv1.SocketServiceClient, n uint32) *sockagentv1.Socket {
	t.Helper()
	var found *sockagentv1.Socket
	waitFor(t, func() bool {
		l, err := sc.ListSockets(context.Background(), &sockagentv1.ListSocketsRequest{})
		if err != nil {
			return false
		}
		for _, s := range l.GetSockets() {
			if s.GetPendingCalls() == n {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

// The restart sequence through a scenario: the run holds sockets on agent a, a
// restarts, another client opens the same kinds of sockets on the new instance (which an
// agent counting ids from s1 at each start named as the run's), and the run goes on. Its
// next steps on old ids fail with UNKNOWN_SOCKET saying the agent restarted; nothing of the
// other client's is read or closed; cleanup reports the old ids gone, not failed.
func TestRunRestartNeverReachesNewSockets(t *testing.T) {
	t.Parallel()
	lis := listenLoopback(t)
	addrA := lis.Addr().String()
	first, err := localagent.Serve(lis, agent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	lisB := listenLoopback(t)
	addrB := lisB.Addr().String()
	serveOn(t, lisB, agent.Config{})
	p := writeScenario(t, "restart.yaml", `name: restart
agents: {a: `+addrA+`, b: `+addrB+`}
steps:
  - {on: b, listen: {network: tcp, address: "127.0.0.1:0"}, as: gate}
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: a, dial: {network: tcp, address: "${lis.local_address}"}, as: cli}
  - {on: a, accept: {socket: lis}, as: srv}
  - {name: pending, on: a, recv: {socket: srv, timeout: 20s}}
  - {name: gate, on: b, accept: {socket: gate, timeout: 20s}, as: opened}
  - {name: after, on: a, recv: {socket: srv, timeout: 2s}, expect: {data: "before restart"}}
  - {name: send, on: a, send: {socket: cli, data: "x"}}
  - {name: close, on: a, close: {socket: cli}}
`)
	done := runAsync(context.Background(), "run", p, "--keep-going", "-o", "json")
	pendingOn(t, agentClient(t, addrA), 1) // every step before "pending" has its answer
	_ = first.Close()
	gate := pendingOn(t, agentClient(t, addrB), 1) // "pending" failed with the agent gone
	var lis2 net.Listener
	waitFor(t, func() bool { // the port is free again once the first agent closed it
		lis2, err = net.Listen("tcp", addrA)
		return err == nil
	})
	var log lockedBuf // the new instance's RPC lines: cleanup must send it nothing on old ids
	second := serveOn(t, lis2, agent.Config{Logger: slog.New(slog.NewTextHandler(&log, nil))})

	// The other client: the same three sockets, bytes waiting on the accepted one.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	other := agentClient(t, addrA)
	ol, err := other.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	od, err := other.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: ol.GetSocket().GetLocalAddress()})
	if err != nil {
		t.Fatal(err)
	}
	oa, err := other.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: ol.GetSocket().GetSocketId(), Timeout: durationpb.New(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	otherIDs := []string{ol.GetSocket().GetSocketId(), od.GetSocket().GetSocketId(), oa.GetSocket().GetSocketId()}
	if _, err := other.Send(ctx, &sockagentv1.SendRequest{SocketId: otherIDs[1], Data: []byte("OTHER-CLIENT-D")}); err != nil {
		t.Fatal(err)
	}
	// Release the run: it goes on to the steps on its old ids.
	c, err := net.Dial("tcp", gate.GetLocalAddress())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("the run did not end within 20s")
	}
	var rep runner.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("exit %d; stdout is not a JSON report: %v\n%s\nstderr: %s", r.code, err, r.stdout, r.stderr)
	}
	if r.code != ExitFailure {
		t.Errorf("exit %d, want %d", r.code, ExitFailure)
	}
	wantRestartReport(t, rep, first.InstanceID(), second.InstanceID())
	if !strings.Contains(log.String(), " rpc=Close ") { // the close step's: the log is read
		t.Errorf("the new instance logged no Close:\n%s", log.String())
	}
	for _, cl := range rep.Cleanup {
		for _, line := range strings.Split(log.String(), "\n") {
			if cl.Agent == "a" && strings.Contains(line, " rpc=Close ") && strings.Contains(line, " socket="+cl.Socket+" ") {
				t.Errorf("cleanup asked the new instance to close %s of the old one: %s", cl.Socket, line)
			}
		}
	}
	// The other client's sockets are untouched: open, and its bytes still waiting.
	for _, id := range otherIDs {
		g, err := other.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: id})
		if err != nil {
			t.Fatalf("the other client's %s after the run: %v", id, err)
		}
		if st := g.GetSocket().GetState(); st != sockagentv1.SocketState_SOCKET_STATE_OPEN {
			t.Errorf("the other client's %s after the run: state %v, want open", id, st)
		}
	}
	rv, err := other.Recv(ctx, &sockagentv1.RecvRequest{SocketId: otherIDs[2], ExactBytes: 14, Timeout: durationpb.New(5 * time.Second)})
	if err != nil || string(rv.GetData()) != "OTHER-CLIENT-D" {
		t.Errorf("the other client's bytes after the run: %q, %v; want OTHER-CLIENT-D", rv.GetData(), err)
	}
	for _, id := range otherIDs {
		if _, err := other.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err != nil {
			t.Errorf("close %s: %v", id, err)
		}
	}
	if _, err := other.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: otherIDs[0]}); status.Code(err) != codes.NotFound {
		t.Errorf("get after close: %v, want NOT_FOUND", err)
	}
}

// wantRestartReport checks the report of the run in TestRunRestartNeverReachesNewSockets:
// agent a restarted from instance first to second.
func wantRestartReport(t *testing.T, rep runner.Report, first, second string) {
	t.Helper()
	restarted := "agent a restarted (instance " + first + " when the run connected, now " + second + ")"
	steps := map[string]runner.StepReport{}
	for _, s := range rep.Steps {
		steps[s.Name] = s
	}
	for _, name := range []string{"after", "send", "close"} {
		s := steps[name]
		if s.Status != runner.StatusFailed || s.Reason != contract.ReasonUnknownSocket || !strings.Contains(s.Message, restarted) ||
			!strings.Contains(s.Message, "the call expects instance "+first+" (header "+contract.InstanceHeader+"): the agent restarted") {
			t.Errorf("step %s: %s %s %q; want failed, UNKNOWN_SOCKET, %q and the instance the run expects", name, s.Status, s.Reason, s.Message, restarted)
		}
	}
	// Cleanup: a's two sockets left (the close step forgot cli) gone with the restart, not
	// asked for; b's two closed.
	got := map[string]int{}
	for _, cl := range rep.Cleanup {
		got[cl.Agent+" "+cl.Status]++
		if cl.Agent == "a" && (cl.Status != "gone" || !strings.Contains(cl.Error, "agent a restarted")) {
			t.Errorf("cleanup of %s (%s) on a: %s %q; want gone, naming the restart", cl.Socket, cl.Alias, cl.Status, cl.Error)
		}
	}
	if len(rep.Cleanup) != 4 || got["a gone"] != 2 || got["b closed"] != 2 {
		t.Errorf("cleanup %+v; want a's 2 sockets gone and b's 2 closed", rep.Cleanup)
	}
}
