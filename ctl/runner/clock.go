package runner

import (
	"context"
	"errors"
	"sync"
	"time"
)

// errStepDeadline is the cause a step's context ends with when the step outlives its deadline.
var errStepDeadline = errors.New("step deadline exceeded")

// stepClock bounds the RPCs of the steps one goroutine runs one after another, each by its
// step's deadline, as context.WithTimeout would, but as a cancellation the agent does not
// see. A deadline on the context makes grpc-go send it in a grpc-timeout header and the agent
// arm a timer of its own for every call, a measurable part of a send or recv step
// (BenchmarkStepDeadline). The agent enforces the request's own timeout already; the step's
// deadline only guards against an agent that never answers, so a client timer is enough, and
// one timer and one context serve all the steps of the goroutine until a deadline passes,
// where a context and a timer per step would allocate on every step. act turns an error after
// errStepDeadline into DEADLINE_EXCEEDED.
type stepClock struct {
	parent context.Context
	timer  *time.Timer
	mu     sync.Mutex
	ctx    context.Context         // the steps' context, until a deadline cancels it
	cancel context.CancelCauseFunc // of ctx
	due    time.Time               // the running step's deadline; zero between steps
}

func newStepClock(parent context.Context) *stepClock {
	c := &stepClock{parent: parent}
	c.timer = time.AfterFunc(time.Hour, c.expire)
	c.timer.Stop()
	return c
}

// expire cancels the running step's context, unless the timer fired for a step that has
// ended since (its callback can run after stop, beside the next step's start).
func (c *stepClock) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.due.IsZero() && !time.Now().Before(c.due) {
		c.cancel(errStepDeadline)
	}
}

// start returns the context of a step that must end within d; stop ends the step.
func (c *stepClock) start(d time.Duration) context.Context {
	c.mu.Lock()
	if c.ctx == nil || c.ctx.Err() != nil {
		if c.cancel != nil {
			c.cancel(nil)
		}
		c.ctx, c.cancel = context.WithCancelCause(c.parent)
	}
	c.due = time.Now().Add(d)
	ctx := c.ctx
	c.mu.Unlock()
	c.timer.Reset(d)
	return ctx
}

func (c *stepClock) stop() {
	c.timer.Stop()
	c.mu.Lock()
	c.due = time.Time{}
	c.mu.Unlock()
}

// close releases the clock's context once its goroutine has run its steps.
func (c *stepClock) close() {
	c.timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		c.cancel(nil)
	}
}
