package agent_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// admitted is how one RPC meets the admission path once the caller's budget is used up: the
// limit that refuses it ("" for an RPC that holds nothing and must still answer), checked by
// call.
type admitted struct {
	limit string
	call  func(t *testing.T, e *env, s admissionSockets) error
}

// admissionSockets are the caller's sockets the RPCs of TestEveryRPCIsAdmitted act on.
type admissionSockets struct {
	lis, lis2, conn, peer, udp *sockagentv1.Socket
}

// admissionTable lists every RPC of every service the agent serves. An RPC added to the API
// without an entry here fails TestEveryRPCIsAdmitted: deciding how it is admitted is part of
// adding it.
var admissionTable = map[string]admitted{
	"/sockagent.v1.SocketService/Listen": {"limits.sockets", func(t *testing.T, e *env, _ admissionSockets) error {
		_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
		return err
	}},
	"/sockagent.v1.SocketService/Bind": {"limits.sockets", func(t *testing.T, e *env, _ admissionSockets) error {
		_, err := e.sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0"})
		return err
	}},
	"/sockagent.v1.SocketService/Dial": {"limits.blocking_calls", func(t *testing.T, e *env, s admissionSockets) error {
		_, err := e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: s.lis.GetLocalAddress()})
		return err
	}},
	"/sockagent.v1.SocketService/Accept": {"limits.blocking_calls", func(t *testing.T, e *env, s admissionSockets) error {
		_, err := e.sc.Accept(ctxT(t), &sockagentv1.AcceptRequest{SocketId: s.lis2.GetSocketId()})
		return err
	}},
	"/sockagent.v1.SocketService/Send": {"limits.blocking_calls", func(t *testing.T, e *env, s admissionSockets) error {
		_, err := e.sc.Send(ctxT(t), &sockagentv1.SendRequest{SocketId: s.conn.GetSocketId(), Data: []byte("x")})
		return err
	}},
	"/sockagent.v1.SocketService/Recv": {"limits.blocking_calls", func(t *testing.T, e *env, s admissionSockets) error {
		_, err := e.sc.Recv(ctxT(t), &sockagentv1.RecvRequest{SocketId: s.conn.GetSocketId()})
		return err
	}},
	"/sockagent.v1.SocketService/SendTo": {"limits.blocking_calls", func(t *testing.T, e *env, s admissionSockets) error {
		_, err := e.sc.SendTo(ctxT(t), &sockagentv1.SendToRequest{SocketId: s.udp.GetSocketId(), Address: s.udp.GetLocalAddress(), Data: []byte("x")})
		return err
	}},
	"/sockagent.v1.SocketService/RecvFrom": {"limits.blocking_calls", func(t *testing.T, e *env, s admissionSockets) error {
		_, err := e.sc.RecvFrom(ctxT(t), &sockagentv1.RecvFromRequest{SocketId: s.udp.GetSocketId()})
		return err
	}},
	"/sockagent.v1.SocketService/Attach": {"limits.blocking_calls", func(t *testing.T, e *env, s admissionSockets) error {
		st, err := e.sc.Attach(ctxT(t))
		if err != nil {
			return err
		}
		if err := st.Send(&sockagentv1.AttachRequest{SocketId: s.conn.GetSocketId()}); err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}},
	// A watch holds a waiting blocking call and its buffer (and one of limits.watches).
	"/sockagent.v1.SocketService/WatchEvents": {"limits.blocking_calls", func(t *testing.T, e *env, _ admissionSockets) error {
		st, err := e.sc.WatchEvents(ctxT(t), &sockagentv1.WatchEventsRequest{})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}},
	// Serve holds nothing itself: each connection it serves is admitted (below, in the test).
	"/sockagent.v1.SocketService/Serve": {"", func(t *testing.T, e *env, s admissionSockets) error {
		_, err := e.sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: s.lis2.GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO})
		return err
	}},
	"/sockagent.v1.SocketService/Shutdown": {"", func(t *testing.T, e *env, s admissionSockets) error {
		_, err := e.sc.Shutdown(ctxT(t), &sockagentv1.ShutdownRequest{SocketId: s.peer.GetSocketId(), Direction: sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_WRITE})
		return err
	}},
	"/sockagent.v1.SocketService/Close": {"", func(t *testing.T, e *env, s admissionSockets) error {
		_, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: s.udp.GetSocketId()})
		return err
	}},
	// UpdateToxics holds nothing: the proxy's connections are admitted one by one (the UDP
	// socket is served as a proxy first, which holds nothing either).
	"/sockagent.v1.SocketService/UpdateToxics": {"", func(t *testing.T, e *env, s admissionSockets) error {
		if _, err := e.sc.Serve(ctxT(t), &sockagentv1.ServeRequest{SocketId: s.udp.GetSocketId(), Behaviour: sockagentv1.Behaviour_BEHAVIOUR_PROXY, Upstream: "127.0.0.1:9"}); err != nil {
			return err
		}
		_, err := e.sc.UpdateToxics(ctxT(t), &sockagentv1.UpdateToxicsRequest{SocketId: s.udp.GetSocketId(), Toxics: []*sockagentv1.Toxic{
			{Direction: sockagentv1.ToxicDirection_TOXIC_DIRECTION_UPSTREAM, Kind: &sockagentv1.Toxic_Loss{Loss: &sockagentv1.LossToxic{}}}}})
		return err
	}},
	"/sockagent.v1.SocketService/SetOptions": {"", func(t *testing.T, e *env, s admissionSockets) error {
		_, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: s.conn.GetSocketId(), Options: &sockagentv1.SocketOptions{NoDelay: proto.Bool(true)}})
		return err
	}},
	"/sockagent.v1.SocketService/GetSocket": {"", func(t *testing.T, e *env, s admissionSockets) error {
		_, err := e.sc.GetSocket(ctxT(t), &sockagentv1.GetSocketRequest{SocketId: s.conn.GetSocketId()})
		return err
	}},
	"/sockagent.v1.SocketService/ListSockets": {"", func(t *testing.T, e *env, _ admissionSockets) error {
		_, err := e.sc.ListSockets(ctxT(t), &sockagentv1.ListSocketsRequest{})
		return err
	}},
	"/sockagent.v1.AgentService/GetInfo": {"", func(t *testing.T, e *env, _ admissionSockets) error {
		_, err := e.ac.GetInfo(ctxT(t), &sockagentv1.GetInfoRequest{})
		return err
	}},
	"/sockagent.v1.MeasureService/Probe": {"limits.blocking_calls", func(t *testing.T, e *env, s admissionSockets) error {
		_, err := sockagentv1.NewMeasureServiceClient(e.conn).Probe(ctxT(t), &sockagentv1.ProbeRequest{Network: "tcp", Address: s.lis.GetLocalAddress(), Count: 1})
		return err
	}},
	"/sockagent.v1.MeasureService/Throughput": {"limits.blocking_calls", func(t *testing.T, e *env, s admissionSockets) error {
		st, err := sockagentv1.NewMeasureServiceClient(e.conn).Throughput(ctxT(t), &sockagentv1.ThroughputRequest{Network: "tcp", Address: s.lis.GetLocalAddress(), Duration: dur(10 * time.Millisecond)})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}},
	"/sockagent.v1.MeasureService/Sweep": {"limits.blocking_calls", func(t *testing.T, e *env, s admissionSockets) error {
		st, err := sockagentv1.NewMeasureServiceClient(e.conn).Sweep(ctxT(t), &sockagentv1.SweepRequest{Targets: []*sockagentv1.SweepTarget{{Network: "tcp", Address: s.lis.GetLocalAddress()}}})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}},
	"/sockagent.v1.SessionService/OpenSession": {"", func(t *testing.T, e *env, _ admissionSockets) error {
		_, err := sockagentv1.NewSessionServiceClient(e.conn).OpenSession(ctxT(t), &sockagentv1.OpenSessionRequest{})
		return err
	}},
	"/sockagent.v1.SessionService/KeepAlive": {"", func(t *testing.T, e *env, _ admissionSockets) error {
		return sessionRoundTrip(t, e, func(ss sockagentv1.SessionServiceClient, id string) error {
			_, err := ss.KeepAlive(ctxT(t), &sockagentv1.KeepAliveRequest{SessionId: id})
			return err
		})
	}},
	"/sockagent.v1.SessionService/CloseSession": {"", func(t *testing.T, e *env, _ admissionSockets) error {
		return sessionRoundTrip(t, e, func(sockagentv1.SessionServiceClient, string) error { return nil })
	}},
	"/sockagent.v1.SessionService/ListSessions": {"", func(t *testing.T, e *env, _ admissionSockets) error {
		_, err := sockagentv1.NewSessionServiceClient(e.conn).ListSessions(ctxT(t), &sockagentv1.ListSessionsRequest{})
		return err
	}},
}

// sessionRoundTrip opens a session, runs use on it, and closes it.
func sessionRoundTrip(t *testing.T, e *env, use func(sockagentv1.SessionServiceClient, string) error) error {
	ss := sockagentv1.NewSessionServiceClient(e.conn)
	r, err := ss.OpenSession(ctxT(t), &sockagentv1.OpenSessionRequest{})
	if err != nil {
		return err
	}
	uerr := use(ss, r.GetSession().GetSessionId())
	_, err = ss.CloseSession(ctxT(t), &sockagentv1.CloseSessionRequest{SessionId: r.GetSession().GetSessionId()})
	return errors.Join(uerr, err)
}

// TestEveryRPCIsAdmitted enumerates every RPC the agent serves, from the services' descriptors,
// and shows that each one that opens a socket, blocks, holds bytes or measures passes the one
// admission path: with the caller's budget used up (its one blocking call held by a pending
// Accept, its sockets all open) each is refused, naming the caller's limit, and each that
// holds nothing still answers. Serve holds nothing itself, but the connections it serves are
// admitted: one arriving now is reset, and the refusal names limits.sockets.
func TestEveryRPCIsAdmitted(t *testing.T) {
	// Six sockets: lis, lis2, conn, peer, udp, and the slot the pending Accept holds.
	e := polEnv(t, "default: {limits: {sockets: 6, blocking_calls: 2}}\n", false)
	var s admissionSockets
	s.lis = e.listen(t, "tcp", "127.0.0.1:0")
	s.lis2 = e.listen(t, "tcp", "127.0.0.1:0")
	s.conn = e.dial(t, "tcp", s.lis.GetLocalAddress())
	s.peer = e.accept(t, s.lis.GetSocketId())
	s.udp = e.bind(t, "udp", "127.0.0.1:0")

	// A pending Accept (holding the last socket slot) and a pending Recv hold both blocking
	// calls.
	ctx, cancel := context.WithCancel(ctxT(t))
	var wg sync.WaitGroup
	wg.Go(func() {
		_, err := e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: s.lis.GetSocketId(), Timeout: dur(time.Minute)})
		if status.Code(err) != codes.Canceled {
			t.Errorf("held accept: %v, want CANCELLED", err)
		}
	})
	e.waitPending(t, s.lis.GetSocketId(), 1)
	wg.Go(func() {
		_, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: s.peer.GetSocketId(), Timeout: dur(time.Minute)})
		if status.Code(err) != codes.Canceled {
			t.Errorf("held recv: %v, want CANCELLED", err)
		}
	})
	e.waitPending(t, s.peer.GetSocketId(), 1)
	defer func() {
		cancel()
		wg.Wait()
	}()

	services := []grpc.ServiceDesc{sockagentv1.SocketService_ServiceDesc, sockagentv1.SessionService_ServiceDesc,
		sockagentv1.MeasureService_ServiceDesc, sockagentv1.AgentService_ServiceDesc}
	seen := map[string]bool{}
	for _, sd := range services {
		var names []string
		for _, m := range sd.Methods {
			names = append(names, m.MethodName)
		}
		for _, st := range sd.Streams {
			names = append(names, st.StreamName)
		}
		for _, name := range names {
			full := "/" + sd.ServiceName + "/" + name
			seen[full] = true
			a, ok := admissionTable[full]
			if !ok {
				t.Errorf("%s is not in admissionTable: say how it is admitted", full)
				continue
			}
			// Close and Shutdown change the sockets: they run last (below).
			if strings.HasSuffix(full, "/Close") || strings.HasSuffix(full, "/Shutdown") || strings.HasSuffix(full, "/Serve") {
				continue
			}
			checkAdmitted(t, full, a, a.call(t, e, s))
		}
	}
	for full := range admissionTable {
		if !seen[full] {
			t.Errorf("admissionTable lists %s, which no service has", full)
		}
	}
	serve := "/sockagent.v1.SocketService/Serve"
	checkAdmitted(t, serve, admissionTable[serve], admissionTable[serve].call(t, e, s))
	// A connection to the served listener is admitted as a socket of its caller: refused.
	wantServedRefused(t, s.lis2.GetLocalAddress())
	sv := e.waitServing(t, s.lis2.GetSocketId(), "1 error", func(sv *sockagentv1.Serving) bool { return sv.GetErrors() == 1 })
	if !strings.Contains(sv.GetLastError(), "limits.sockets (6)") {
		t.Errorf("served connection refused with %q, want limits.sockets (6)", sv.GetLastError())
	}
	for _, full := range []string{"/sockagent.v1.SocketService/Shutdown", "/sockagent.v1.SocketService/Close"} {
		checkAdmitted(t, full, admissionTable[full], admissionTable[full].call(t, e, s))
	}
}

func checkAdmitted(t *testing.T, full string, a admitted, err error) {
	t.Helper()
	if a.limit == "" {
		if err != nil {
			t.Errorf("%s: %v; it holds nothing and must answer with the caller's budget used up", full, err)
		}
		return
	}
	if status.Code(err) != codes.ResourceExhausted || polMeta(err)["limit"] != a.limit {
		t.Errorf("%s: %v; want RESOURCE_EXHAUSTED naming %s", full, err, a.limit)
	}
}

// wantServedRefused connects to a served listener and expects the connection reset or closed
// without an answer (the reset may arrive before connect returns).
func wantServedRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("dial %s: %v, want it accepted or reset", addr, err)
		}
		return
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("served connection over the caller's limit: read %v, want it reset or closed", err)
	}
}
