package engine

import (
	"context"

	"github.com/sockagent/sockagent/agent/policy"
)

// Caller is who made an RPC, as the transport proved it: a verified client certificate, a
// bearer token, or nobody (plaintext without a token).
type Caller struct {
	// ID names the caller in logs, policies and socket ownership: "cert:" + the verified
	// client certificate's whole subject, RFC 4514 with every value escaped
	// (Subject.String()); else "token:NAME" (NAME from the token file; for a bare secret,
	// "sha256-" and a prefix of a hash of the secret); else "uid:N" for a plaintext call over a
	// UNIX socket whose peer runs as user N (the kernel says so); else "anonymous". A
	// certificate wins over a token, a token over a uid; Token then names the token too.
	ID string
	// Kind is "cert", "token", "uid" or "anonymous".
	Kind string
	// Subject is the client certificate's subject, parsed (cert callers; nil for others).
	Subject policy.Subject
	// SANs are the client certificate's DNS, IP, URI and e-mail names (cert callers).
	SANs []string
	// Token is the name of the caller's valid bearer token (token callers, and cert callers
	// that also sent one), never the secret.
	Token string
}

// Anonymous is the caller of an unauthenticated RPC.
var Anonymous = Caller{ID: "anonymous", Kind: "anonymous"}

type callerKey struct{}

// callerCtx is a context carrying an RPC's caller. Every RPC makes one: it is one allocation,
// where context.WithValue would make two (its context, and the Caller copied into an
// interface). Its Value answers callerKey with itself, and every other key as its parent does.
type callerCtx struct {
	context.Context
	c Caller
}

func (c *callerCtx) Value(key any) any {
	if _, ok := key.(callerKey); ok {
		return c
	}
	return c.Context.Value(key)
}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return &callerCtx{Context: ctx, c: c}
}

// CallerFrom returns the caller of the RPC ctx belongs to, Anonymous when none was set.
func CallerFrom(ctx context.Context) Caller {
	if c, ok := ctx.Value(callerKey{}).(*callerCtx); ok {
		return c.c
	}
	return Anonymous
}
