package ctl

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// envTokenFile names the environment variable that sets --token-file when it is not given.
// There is deliberately no variable holding the token itself: environments leak into child
// processes, crash reports and CI logs.
const envTokenFile = "SOCKCTL_TOKEN_FILE"

// dialAgent is client.Dial with its errors classified for Main: a *usageError (exit 2) for an
// address or a combination of settings that cannot work, a *failure (exit 1) for a file that
// cannot be read or parsed.
func dialAgent(target string, o client.Options) (*grpc.ClientConn, error) {
	cc, err := client.Dial(target, o)
	switch {
	case err == nil:
		return cc, nil
	case client.IsConfigError(err):
		return nil, &usageError{err: err}
	}
	return nil, failed(err)
}

// call connects to the agent, runs fn under the RPC deadline and turns an error into a
// failure that says what was being done (op) and why.
func (a *app) call(ctx context.Context, op string, wait time.Duration, fn func(ctx context.Context, c client.Clients) error) error {
	return a.withAgent(ctx, func(ag *agentConn) error {
		return ag.unary(ctx, op, wait, func(ctx context.Context) error { return fn(ctx, ag.c) })
	})
}

// agentConn is one connection to the agent for a command that makes several calls.
type agentConn struct {
	a      *app
	target string
	dial   client.Options
	cc     *grpc.ClientConn
	c      client.Clients
	// session is the session the sockets this command opens join ("" = none): its header
	// goes with every call, and the agent reads it on the calls that open a socket.
	session string
}

// withAgent connects to the agent for fn; fn's errors are already classified.
func (a *app) withAgent(ctx context.Context, fn func(*agentConn) error) error {
	target, dial := a.agentAddr(), a.dialOptions()
	cc, err := dialAgent(target, dial)
	if err != nil {
		return err
	}
	defer cc.Close()
	return fn(&agentConn{a: a, target: target, dial: dial, cc: cc, c: client.NewClients(cc), session: a.sessionID()})
}

// fail classifies the error of a call, with what sockctl knows of the connection.
func (ag *agentConn) fail(op string, deadline time.Duration, err error) error {
	if _, ok := status.FromError(err); !ok { // not the RPC: printing its result failed
		return failed(fmt.Errorf("%s: %w", op, err))
	}
	return failed(&client.RPCError{Op: op, Agent: ag.target, Dial: ag.dial, Deadline: deadline, State: ag.cc.GetState(), Err: err})
}

// unary runs one call under the RPC deadline (--timeout, raised for wait) and classifies its
// error.
func (ag *agentConn) unary(ctx context.Context, op string, wait time.Duration, fn func(ctx context.Context) error) error {
	if ag.session != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, contract.SessionHeader, ag.session)
	}
	deadline := client.RPCDeadline(ag.a.timeout, wait)
	if deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, deadline)
		defer cancel()
	}
	if err := fn(ctx); err != nil {
		return ag.fail(op, deadline, err)
	}
	return nil
}

// sendOneCall is the largest data sockctl sends in one Send without asking the agent what
// fits: under gRPC's default message size and the default bytes_per_call, so most sends
// take one RPC.
const sendOneCall = 1 << 20

// messageOverhead is what a SendRequest adds to its data (id, timeout, framing), kept free
// below the agent's --max-message-bytes.
const messageOverhead = 64 << 10

// sendAll writes all of data to socket id, as sendall does: in one Send up to sendOneCall,
// else in order in pieces as large as the agent takes in one call. It returns the bytes
// sent; a failure after some pieces says how many went before it.
func (ag *agentConn) sendAll(ctx context.Context, id string, data []byte, timeout *durationpb.Duration, wait time.Duration) (uint64, error) {
	op := "send " + id
	piece := len(data)
	if len(data) > sendOneCall {
		var err error
		if piece, err = ag.sendPiece(ctx, id, len(data)); err != nil {
			return 0, err
		}
	}
	var sent uint64
	for off := 0; ; {
		end := min(off+piece, len(data))
		var resp *sockagentv1.SendResponse
		err := ag.unary(ctx, op, wait, func(ctx context.Context) error {
			var err error
			resp, err = ag.c.Sockets.Send(ctx, &sockagentv1.SendRequest{SocketId: id, Data: data[off:end], Timeout: timeout})
			return err
		})
		if err != nil {
			if sent > 0 {
				return sent, fmt.Errorf("%w; %d of %d bytes were sent before it", err, sent, len(data))
			}
			return 0, err
		}
		sent += resp.GetBytesSent()
		if off = end; off >= len(data) {
			return sent, nil
		}
	}
}

// sendPiece asks the agent how much one Send of socket id may carry (its --max-message-bytes
// less the request's overhead, and the caller's bytes_per_call), and refuses a datagram
// socket's data that does not fit one call: a datagram is never split.
func (ag *agentConn) sendPiece(ctx context.Context, id string, size int) (int, error) {
	var info *sockagentv1.GetInfoResponse
	var sock *sockagentv1.Socket
	err := ag.unary(ctx, "send "+id+": ask the agent's limits", 0, func(ctx context.Context) error {
		var err error
		if info, err = ag.c.Agent.GetInfo(ctx, &sockagentv1.GetInfoRequest{}); err != nil {
			return err
		}
		resp, err := ag.c.Sockets.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: id})
		sock = resp.GetSocket()
		return err
	})
	if err != nil {
		return 0, err
	}
	piece := sendPieceSize(info.GetLimits())
	if sock.GetKind() == sockagentv1.SocketKind_SOCKET_KIND_DATAGRAM && size > piece {
		return 0, failed(fmt.Errorf("send %s: %d bytes are one datagram on this datagram socket, and the agent takes at most %d in one call; send less (a UDP datagram holds at most 65507 bytes)", id, size, piece))
	}
	return piece, nil
}

// sendPieceSize is the data one Send may carry under limits l: the agent's message size less
// messageOverhead, and the caller's bytes_per_call; sendOneCall when the agent says neither.
func sendPieceSize(l *sockagentv1.Limits) int {
	piece := 0
	if m := int(l.GetMaxMessageBytes()); m > messageOverhead {
		piece = m - messageOverhead
	}
	if b := int(l.GetBytesPerCall()); b > 0 && (piece == 0 || b < piece) {
		piece = b
	}
	if piece == 0 {
		return sendOneCall
	}
	return piece
}

// defaultLease is the lease of the session connect and listen --attach open for their
// sockets: if sockctl is killed in a way it cannot catch (SIGKILL, a crash, the host's
// network gone), the agent closes them this long after the last keepalive.
const defaultLease = 10 * time.Second

// leaseFlag is --lease of the commands that open sockets only for as long as they run.
type leaseFlag struct{ ttl time.Duration }

func (l *leaseFlag) register(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&l.ttl, "lease", defaultLease, "if sockctl dies without closing its sockets (SIGKILL), the agent closes them within `D` (1s up to 24h)")
}

func (l *leaseFlag) check() error {
	if l.ttl < minSessionTTL || l.ttl > maxSessionTTL {
		return usagef("--lease %s: give %s up to %s", l.ttl, minSessionTTL, maxSessionTTL)
	}
	return nil
}

// leased runs fn with the sockets it opens in a session of the lease's TTL, kept alive while
// fn runs and closed after it (with whatever sockets fn left in it), however fn ended. With
// --session the caller's session is used instead, and left open.
func (ag *agentConn) leased(ctx context.Context, l leaseFlag, name string, fn func() error) error {
	if ag.session != "" {
		return fn()
	}
	s, err := client.StartSession(ctx, ag.c.Sessions, l.ttl, name)
	if err != nil {
		return ag.fail(name+": open a session for its sockets", client.ConnectTimeout, err)
	}
	defer s.Close(context.WithoutCancel(ctx))
	ag.session = s.ID()
	defer func() { ag.session = "" }()
	return fn()
}

// closeSocket closes socket id even when ctx is cancelled (an interrupt): the socket is
// sockctl's own.
func (ag *agentConn) closeSocket(ctx context.Context, id string) error {
	return ag.unary(context.WithoutCancel(ctx), "close "+id, 0, func(ctx context.Context) error {
		_, err := ag.c.Sockets.Close(ctx, &sockagentv1.CloseRequest{SocketId: id})
		return err
	})
}
