package engine

import (
	"cmp"
	"slices"
	"sync"
)

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
