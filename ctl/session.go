package ctl

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

	"github.com/sockagent/sockagent/agent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// defaultSessionTTL is the lease of a run's session on each agent (--session-ttl): a killed
// sockctl leaves its sockets behind for at most this long.
const defaultSessionTTL = 30 * time.Second

// Retries of control-channel failures (the agent briefly unreachable, not a target's answer).
const (
	retryTries   = 3
	retryBackoff = 100 * time.Millisecond
)

// runSession is a run's session on one agent, kept alive until stopped.
type runSession struct {
	id   string
	ss   sockagentv1.SessionServiceClient
	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

// openSession opens a session of ttl on the agent and keeps it alive every ttl/3 until
// closeSession. An agent that does not know sessions (Unimplemented) gets none: nil, nil.
func openSession(ctx context.Context, ss sockagentv1.SessionServiceClient, ttl time.Duration, name string) (*runSession, error) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	resp, err := ss.OpenSession(cctx, &sockagentv1.OpenSessionRequest{Ttl: protoTimeout(ttl), Name: name})
	if status.Code(err) == codes.Unimplemented {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open session: %s", status.Convert(err).Message())
	}
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &runSession{id: resp.GetSession().GetSessionId(), ss: ss, stop: stop, done: make(chan struct{})}
	go s.keepAlive(kctx, ttl/3)
	return s, nil
}

// keepAlive extends the lease every period; a failed KeepAlive is retried at the next tick
// (the lease allows two misses).
func (s *runSession) keepAlive(ctx context.Context, period time.Duration) {
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

// close stops the keepalives and closes the session (and whatever sockets are still in it),
// within cleanupTimeout and ctx. Safe on nil and more than once.
func (s *runSession) close(ctx context.Context) {
	if s == nil {
		return
	}
	s.once.Do(func() {
		s.stop()
		<-s.done
		cctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
		defer cancel()
		_, _ = s.ss.CloseSession(cctx, &sockagentv1.CloseSessionRequest{SessionId: s.id})
	})
}

// with returns ctx sending the session header, when there is a session.
func (s *runSession) with(ctx context.Context) context.Context {
	if s == nil {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, agent.SessionHeader, s.id)
}

// newRequestID returns a fresh request_id for an idempotent creation call.
func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return "sockctl-" + hex.EncodeToString(b[:])
}

// transient says err is a control-channel failure: UNAVAILABLE without the agent's ErrorInfo,
// so the agent was not reached (a target's CONNECTION_REFUSED carries an ErrorInfo).
func transient(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unavailable && errorInfo(st) == nil
}

// retry runs fn up to retryTries times while it fails transiently, with doubling backoff,
// never past ctx. Only for calls safe to repeat: creation calls with a request_id and
// read-only calls.
func retry[T any](ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	backoff := retryBackoff
	for try := 1; ; try++ {
		v, err := fn(ctx)
		if err == nil || try == retryTries || !transient(err) {
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
