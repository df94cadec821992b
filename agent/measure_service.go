package agent

import (
	"context"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

// measureService is the gRPC adapter of MeasureService: Probe and Throughput open their own
// sockets, judged by the caller's policy like Dial, and take every timing on the agent's host.
type measureService struct {
	sockagentv1.UnimplementedMeasureServiceServer
	t *engine.Table
	m *metrics // nil: no metrics
}

func (m *measureService) Probe(ctx context.Context, r *sockagentv1.ProbeRequest) (*sockagentv1.ProbeResponse, error) {
	interval, err := durationOf("probe", "interval", r.GetInterval())
	if err != nil {
		return nil, fail(err)
	}
	timeout, err := durationOf("probe", "timeout", r.GetTimeout())
	if err != nil {
		return nil, fail(err)
	}
	mode, ok := probeModes.engine(r.GetMode())
	if !ok {
		return nil, fail(engine.BadArg(contract.ReasonInvalidArgument, "probe: mode %d unknown; use connect, echo or tls (PROBE_MODE_CONNECT, PROBE_MODE_ECHO, PROBE_MODE_TLS)", r.GetMode()))
	}
	cl, err := tlsClientOf("probe", r.GetTls())
	if err != nil {
		return nil, fail(err)
	}
	res, err := m.t.Probe(inSession(ctx), engine.ProbeSpec{
		Network: r.GetNetwork(), Address: r.GetAddress(), Local: r.GetLocalAddress(),
		Mode: mode, Count: int(r.GetCount()), Warmup: int(r.GetWarmup()), Size: int(r.GetSize()),
		Interval: interval, Timeout: timeout, TLS: cl,
	})
	m.m.probed(r.GetMode(), res, err)
	if err != nil {
		return nil, fail(err)
	}
	out := &sockagentv1.ProbeResponse{
		RemoteAddress: res.Remote,
		LocalAddress:  res.Local,
		Sent:          uint32(res.Sent),
		Received:      uint32(res.Received),
		Rtt:           latencyProto(engine.Stats(res.Samples)),
		Elapsed:       durationpb.New(res.Elapsed),
		Errors:        errorsProto(res.Errors),
	}
	if res.Sent > 0 {
		out.Loss = float64(res.Sent-res.Received) / float64(res.Sent)
	}
	return out, nil
}

// Throughput runs a throughput test and streams its interval reports, then the summary.
func (m *measureService) Throughput(r *sockagentv1.ThroughputRequest, stream grpc.ServerStreamingServer[sockagentv1.ThroughputResponse]) error {
	const op = "throughput"
	receive, ok := receives.engine(r.GetDirection())
	if !ok && r.GetDirection() != sockagentv1.Direction_DIRECTION_UNSPECIFIED {
		return fail(engine.BadArg(contract.ReasonInvalidArgument, "%s: direction %d unknown; give DIRECTION_SEND (to a discard) or DIRECTION_RECEIVE (from a source)", op, int32(r.GetDirection())))
	}
	duration, err := durationOf(op, "duration", r.GetDuration())
	if err != nil {
		return fail(err)
	}
	interval, err := durationOf(op, "report_interval", r.GetReportInterval())
	if err != nil {
		return fail(err)
	}
	spec := engine.ThroughputSpec{
		Network: r.GetNetwork(), Address: r.GetAddress(), Local: r.GetLocalAddress(), Receive: receive,
		Duration: duration, Bytes: r.GetBytes(), Streams: r.GetStreams(), RateBitsPerSecond: r.GetRateBitsPerSecond(),
		Size: r.GetSize(), ReportInterval: interval,
	}
	sum, err := m.t.Throughput(inSession(stream.Context()), spec, func(iv engine.ThroughputInterval) error {
		return stream.Send(&sockagentv1.ThroughputResponse{Report: &sockagentv1.ThroughputResponse_Interval{Interval: intervalProto(iv)}})
	})
	m.m.measured(receive, sum)
	if err != nil {
		return fail(err)
	}
	return stream.Send(&sockagentv1.ThroughputResponse{Report: &sockagentv1.ThroughputResponse_Summary{Summary: summaryProto(sum)}})
}

// Sweep tries many targets and streams one verdict per target as each is reached.
func (m *measureService) Sweep(r *sockagentv1.SweepRequest, stream grpc.ServerStreamingServer[sockagentv1.SweepResponse]) error {
	const op = "sweep"
	timeout, err := durationOf(op, "timeout", r.GetTimeout())
	if err != nil {
		return fail(err)
	}
	spacing, err := durationOf(op, "spacing", r.GetSpacing())
	if err != nil {
		return fail(err)
	}
	if len(r.GetTargets()) > engine.MaxSweepTargets {
		return fail(engine.BadArg(contract.ReasonInvalidArgument, "%s: %d targets; give at most %d (split the sweep)", op, len(r.GetTargets()), engine.MaxSweepTargets))
	}
	targets := make([]engine.SweepTarget, len(r.GetTargets()))
	for i, tg := range r.GetTargets() {
		mode, ok := probeModes.engine(tg.GetMode())
		if !ok {
			return fail(engine.BadArg(contract.ReasonInvalidArgument, "%s: target %d: mode %d unknown; use connect or echo (PROBE_MODE_CONNECT, PROBE_MODE_ECHO)", op, i, tg.GetMode()))
		}
		targets[i] = engine.SweepTarget{Network: tg.GetNetwork(), Address: tg.GetAddress(), ID: tg.GetId(), Mode: mode}
	}
	spec := engine.SweepSpec{
		Targets: targets, Concurrency: int(r.GetConcurrency()), Attempts: int(r.GetAttempts()),
		Timeout: timeout, Spacing: spacing, Pace: int(r.GetPace()),
	}
	err = m.t.Sweep(inSession(stream.Context()), spec, func(c engine.SweepCell) error {
		v, _ := sweepVerdicts.proto(c.Verdict)
		return stream.Send(&sockagentv1.SweepResponse{
			Index: uint32(c.Index), Id: c.ID, Verdict: v, Reason: c.Reason, Message: c.Message,
			Rtt: durationpb.New(c.RTT), Attempts: uint32(c.Attempts), RemoteAddress: c.Remote, LocalAddress: c.Local,
		})
	})
	if err != nil {
		return fail(err)
	}
	return nil
}
