package agent

import (
	"cmp"
	"slices"
	"sync"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// measureService is the gRPC adapter of MeasureService: Probe (probe.go) and Throughput
// (throughput.go) open their own sockets, judged by the caller's policy like Dial, and take
// every timing on the agent's host.
type measureService struct {
	sockagentv1.UnimplementedMeasureServiceServer
	t *table
}

// ErrorCount counts failed attempts (Probe) or streams (Throughput) of one reason, with the
// first message.
type ErrorCount struct {
	Reason, Message string
	Count           int
}

// errorTally counts errors by reason; safe for concurrent use.
type errorTally struct {
	mu    sync.Mutex
	m     map[string]*ErrorCount
	order map[string]int // when each reason was first seen
}

func (e *errorTally) add(reason, message string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.m[reason]; c != nil {
		c.Count++
		return
	}
	if e.m == nil {
		e.m, e.order = map[string]*ErrorCount{}, map[string]int{}
	}
	e.m[reason] = &ErrorCount{Reason: reason, Message: message, Count: 1}
	e.order[reason] = len(e.order)
}

// list returns the counts, most frequent first, then in the order first seen.
func (e *errorTally) list() []ErrorCount {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]ErrorCount, 0, len(e.m))
	for _, c := range e.m {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b ErrorCount) int {
		return cmp.Or(b.Count-a.Count, e.order[a.Reason]-e.order[b.Reason])
	})
	return out
}

// errorsProto converts error counts for a response.
func errorsProto(in []ErrorCount) []*sockagentv1.ErrorCount {
	var out []*sockagentv1.ErrorCount
	for _, c := range in {
		out = append(out, &sockagentv1.ErrorCount{Reason: c.Reason, Count: uint32(c.Count), Message: c.Message})
	}
	return out
}

// durationOf reads an optional duration field of a request: nil is 0; an invalid one is
// INVALID_ARGUMENT naming op and field.
func durationOf(op, field string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, badArg(ReasonInvalidArgument, "%s: %s: %v", op, field, err)
	}
	return d.AsDuration(), nil
}
