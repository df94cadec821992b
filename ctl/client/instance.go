package client

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/sockagent/sockagent/agent/contract"
)

// ExpectInstance returns cc sending contract.InstanceHeader with instance (an agent's
// GetInfo.instance_id) on every call: once the agent restarts, a call naming a socket of the
// instance the client knew answers UNKNOWN_SOCKET instead of reaching a socket of the new
// one. An empty instance (an agent too old to report one) sends nothing.
func ExpectInstance(cc grpc.ClientConnInterface, instance string) grpc.ClientConnInterface {
	if instance == "" {
		return cc
	}
	return &instanceConn{cc: cc, instance: instance}
}

type instanceConn struct {
	cc       grpc.ClientConnInterface
	instance string
}

func (c *instanceConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return c.cc.Invoke(withInstance(ctx, c.instance), method, args, reply, opts...)
}

func (c *instanceConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.cc.NewStream(withInstance(ctx, c.instance), desc, method, opts...)
}

// ForSocket returns ctx expecting the agent instance that socket id carries
// (contract.ParseSocketID), so that a one-shot command naming an id from before a restart
// is refused by the new instance whatever it does with the id; ctx unchanged when it already
// expects an instance or id carries none.
func ForSocket(ctx context.Context, id string) context.Context {
	inst, _, ok := contract.ParseSocketID(id)
	if !ok {
		return ctx
	}
	return withInstance(ctx, inst)
}

// withInstance adds the header unless ctx already carries one: the instance a run learnt
// from GetInfo outranks the short form an id carries.
func withInstance(ctx context.Context, instance string) context.Context {
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get(contract.InstanceHeader)) > 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, contract.InstanceHeader, instance)
}

// socketIDRequest is a request that names a socket.
type socketIDRequest interface{ GetSocketId() string }

// instanceOfSocket is the unary interceptor of Dial's connections: a request naming a socket
// expects the instance the id carries (ForSocket).
func instanceOfSocket(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if r, ok := req.(socketIDRequest); ok {
		ctx = ForSocket(ctx, r.GetSocketId())
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}
