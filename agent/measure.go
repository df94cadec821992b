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
