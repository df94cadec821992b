package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Retries of control-channel failures (the agent briefly unreachable, not a target's answer).
const (
	retryTries   = 3
	retryBackoff = 100 * time.Millisecond
)

// closeTimeout bounds closing a session.
const closeTimeout = 5 * time.Second

// Session is a session on one agent, kept alive until closed: the sockets opened in it are
// closed by the agent once its lease runs out, should the client die.
type Session struct {
	id   string
	ss   sockagentv1.SessionServiceClient
	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

// OpenSession opens a session of ttl named name on the agent, within ConnectTimeout, and
// keeps it alive every ttl/3 until Close. An agent that does not know sessions
// (Unimplemented) gets none: nil, nil; the methods of a nil *Session do nothing.
func OpenSession(ctx context.Context, ss sockagentv1.SessionServiceClient, ttl time.Duration, name string) (*Session, error) {
	s, err := StartSession(ctx, ss, ttl, name)
	if err != nil {
		return nil, fmt.Errorf("open session: %s", status.Convert(err).Message())
	}
	return s, nil
}

// StartSession is OpenSession whose error is the RPC's own (a gRPC status), for callers that
// explain it themselves.
func StartSession(ctx context.Context, ss sockagentv1.SessionServiceClient, ttl time.Duration, name string) (*Session, error) {
	cctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	resp, err := ss.OpenSession(cctx, &sockagentv1.OpenSessionRequest{Ttl: durationpb.New(ttl), Name: name})
	if status.Code(err) == codes.Unimplemented {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &Session{id: resp.GetSession().GetSessionId(), ss: ss, stop: stop, done: make(chan struct{})}
	go s.keepAlive(kctx, ttl/3)
	return s, nil
}

// keepAlive extends the lease every period; a failed KeepAlive is retried at the next tick
// (the lease allows two misses).
func (s *Session) keepAlive(ctx context.Context, period time.Duration) {
	defer close(s.done)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		kctx, cancel := context.WithTimeout(ctx, period)
		_, _ = s.ss.KeepAlive(kctx, &sockagentv1.KeepAliveRequest{SessionId: s.id})
		cancel()
	}
}

// Close stops the keepalives and closes the session (and whatever sockets are still in it),
// within a few seconds and ctx. Safe on nil and more than once.
func (s *Session) Close(ctx context.Context) {
	if s == nil {
		return
	}
	s.once.Do(func() {
		s.stop()
		<-s.done
		cctx, cancel := context.WithTimeout(ctx, closeTimeout)
		defer cancel()
		_, _ = s.ss.CloseSession(cctx, &sockagentv1.CloseSessionRequest{SessionId: s.id})
	})
}

// ID is the session's id; "" for a nil *Session.
func (s *Session) ID() string {
	if s == nil {
		return ""
	}
	return s.id
}

// With returns ctx sending the session header (contract.SessionHeader), when there is a
// session.
func (s *Session) With(ctx context.Context) context.Context {
	if s == nil {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, contract.SessionHeader, s.id)
}

// NewRequestID returns a fresh request_id for an idempotent creation call.
func NewRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return "sockctl-" + hex.EncodeToString(b[:])
}

// Retry runs fn up to three times while it fails transiently (Transient), with doubling
// backoff, never past ctx. Only for calls safe to repeat: creation calls with a request_id
// and read-only calls.
func Retry[T any](ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	backoff := retryBackoff
	for try := 1; ; try++ {
		v, err := fn(ctx)
		if err == nil || try == retryTries || !Transient(err) {
			return v, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return v, err
		}
		backoff *= 2
	}
}
