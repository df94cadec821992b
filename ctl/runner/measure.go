package runner

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/client"
	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// runServe makes the agent serve a socket; it does not block, so the step timeout bounds it.
func runServe(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error) {
	req, err := serveRequest(c.args)
	if err != nil {
		return scenario.Outcome{}, nil, &scenarioError{err}
	}
	if req.SocketId, err = c.socket(); err != nil {
		return scenario.Outcome{}, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.r.cfg.StepTimeout)
	defer cancel()
	resp, err := c.rm.sockets.Serve(ctx, req)
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	s := resp.GetSocket()
	text := fmt.Sprintf("%s %s serving %s", s.GetSocketId(), s.GetLocalAddress(), c.args.String("behaviour"))
	if px := s.GetProxy(); px != nil {
		text += fmt.Sprintf(" to %s, toxics: %s", px.GetUpstream(), ToxicsText(px.GetToxics()))
	}
	return scenario.Outcome{Text: text}, nil, nil
}

// runProbe runs a probe, bounded by client.ProbeDeadline.
func runProbe(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error) {
	req, err := probeRequest(c.args)
	if err != nil {
		return scenario.Outcome{}, nil, &scenarioError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, client.ProbeDeadline(req))
	defer cancel()
	resp, err := c.rm.measure.Probe(ctx, req)
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	out := scenario.Outcome{Figures: ProbeFigures(resp), Text: probeText(resp)}
	// A probe none of whose attempts succeeded fails with its most frequent reason, unless
	// the expectations judge the figures themselves (received: 0, loss: 1).
	if resp.GetReceived() == 0 && !scenario.HasFigures(c.st.Expect) {
		out.Reason, out.Err = contract.ReasonProbeFailed, "no attempt succeeded"
		if e := resp.GetErrors(); len(e) > 0 {
			out.Reason, out.Err = e[0].GetReason(), fmt.Sprintf("every attempt failed (%d of %d): %s", e[0].GetCount(), resp.GetSent(), e[0].GetMessage())
		}
	}
	return out, nil, nil
}

// runThroughput runs a throughput test, bounded by client.ThroughputDeadline (the step
// timeout when only bytes bound it).
func runThroughput(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error) {
	req, err := throughputRequest(c.args)
	if err != nil {
		return scenario.Outcome{}, nil, &scenarioError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, client.ThroughputDeadline(req, c.r.cfg.StepTimeout))
	defer cancel()
	sum, err := client.RunThroughput(ctx, c.rm.measure, req, nil)
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	return scenario.Outcome{Figures: throughputFigures(sum), Text: ThroughputText(sum)}, nil, nil
}

// u32 narrows a value of key to the request's uint32.
func u32(key string, n uint64, err error) (uint32, error) {
	if err != nil {
		return 0, err
	}
	if n > math.MaxUint32 {
		return 0, fmt.Errorf("%s: %d is too large", key, n)
	}
	return uint32(n), nil
}

func serveRequest(args scenario.Resolved) (*sockagentv1.ServeRequest, error) {
	b, ok := client.Behaviours[args.String("behaviour")]
	if !ok {
		return nil, fmt.Errorf("behaviour %q: use echo, discard, source or proxy", args.String("behaviour"))
	}
	n, err := args.Bytes("chunk_size")
	chunk, err := u32("chunk_size", n, err)
	if err != nil {
		return nil, err
	}
	n, err = args.Uint("max_connections")
	maxc, err := u32("max_connections", n, err)
	if err != nil {
		return nil, err
	}
	ut, err := args.Duration("upstream_timeout")
	if err != nil {
		return nil, err
	}
	ts, err := args.Toxics()
	if err != nil {
		return nil, err
	}
	return &sockagentv1.ServeRequest{Behaviour: b, ChunkSize: chunk, MaxConnections: maxc,
		Upstream: args.String("upstream"), UpstreamTimeout: protoTimeout(ut), Toxics: ToxicsProto(ts)}, nil
}

func probeRequest(args scenario.Resolved) (*sockagentv1.ProbeRequest, error) {
	mode, ok := client.ProbeModes[args.String("mode")]
	if !ok {
		return nil, fmt.Errorf("mode %q: use connect, echo or tls", args.String("mode"))
	}
	cl, err := tlsClient(args)
	if err != nil {
		return nil, err
	}
	req := &sockagentv1.ProbeRequest{Network: args.String("network"), Address: args.String("address"), Mode: mode, LocalAddress: args.String("local_address"), Tls: cl}
	for _, f := range []struct {
		key string
		dst *uint32
	}{{"count", &req.Count}, {"warmup", &req.Warmup}} {
		n, e := args.Uint(f.key)
		if *f.dst, e = u32(f.key, n, e); e != nil {
			return nil, e
		}
	}
	n, err := args.Bytes("size")
	if req.Size, err = u32("size", n, err); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		key string
		dst **durationpb.Duration
	}{{"interval", &req.Interval}, {"timeout", &req.Timeout}} {
		d, e := args.Duration(f.key)
		if e != nil {
			return nil, e
		}
		*f.dst = protoTimeout(d)
	}
	return req, nil
}

func throughputRequest(args scenario.Resolved) (*sockagentv1.ThroughputRequest, error) {
	dir, ok := client.Directions[args.String("direction")]
	if !ok {
		return nil, fmt.Errorf("direction %q: use send or receive", args.String("direction"))
	}
	req := &sockagentv1.ThroughputRequest{Network: args.String("network"), Address: args.String("address"), Direction: dir, LocalAddress: args.String("local_address")}
	var err error
	if req.Bytes, err = args.Bytes("bytes"); err != nil {
		return nil, err
	}
	n, err := args.Uint("streams")
	if req.Streams, err = u32("streams", n, err); err != nil {
		return nil, err
	}
	n, err = args.Bytes("size")
	if req.Size, err = u32("size", n, err); err != nil {
		return nil, err
	}
	rate, err := args.BitRate("rate")
	if err != nil {
		return nil, err
	}
	req.RateBitsPerSecond = uint64(rate)
	d, err := args.Duration("duration")
	if err != nil {
		return nil, err
	}
	req.Duration = protoTimeout(d)
	if d, err = args.Duration("interval"); err != nil {
		return nil, err
	}
	req.ReportInterval = protoTimeout(d)
	return req, nil
}

func errorTotal(errs []*sockagentv1.ErrorCount) float64 {
	n := 0.0
	for _, e := range errs {
		n += float64(e.GetCount())
	}
	return n
}

// Nanos is d in nanoseconds, as figures hold durations.
func Nanos(d *durationpb.Duration) float64 { return float64(d.AsDuration()) }

// ProbeFigures are a probe's figures by expect key (durations in nanoseconds).
func ProbeFigures(p *sockagentv1.ProbeResponse) map[string]float64 {
	rtt := p.GetRtt()
	return map[string]float64{
		"rtt_min": Nanos(rtt.GetMin()), "rtt_p50": Nanos(rtt.GetP50()), "rtt_p90": Nanos(rtt.GetP90()),
		"rtt_p99": Nanos(rtt.GetP99()), "rtt_max": Nanos(rtt.GetMax()), "rtt_mean": Nanos(rtt.GetMean()),
		"loss": p.GetLoss(), "received": float64(p.GetReceived()), "errors": errorTotal(p.GetErrors()),
	}
}

// throughputFigures are a throughput test's figures by expect key.
func throughputFigures(s *sockagentv1.ThroughputSummary) map[string]float64 {
	return map[string]float64{
		"bits_per_second": s.GetBitsPerSecond(), "bytes": float64(s.GetBytes()), "loss": s.GetLoss(),
		"retransmits": float64(s.GetRetransmits()), "rtt": Nanos(s.GetRtt()), "errors": errorTotal(s.GetErrors()),
	}
}

// probeText is a probe's one-line summary: "p50 41µs p99 80µs max 1.2ms loss 0 (100/100)".
func probeText(p *sockagentv1.ProbeResponse) string {
	f := ProbeFigures(p)
	parts := []string{}
	if p.GetReceived() > 0 {
		for _, k := range []string{"rtt_min", "rtt_p50", "rtt_p99", "rtt_max"} {
			parts = append(parts, strings.TrimPrefix(k, "rtt_")+" "+scenario.FormatFigure(k, f[k]))
		}
	}
	parts = append(parts, fmt.Sprintf("loss %s (%d/%d)", scenario.FormatFigure("loss", p.GetLoss()), p.GetReceived(), p.GetSent()))
	for _, e := range p.GetErrors() {
		parts = append(parts, fmt.Sprintf("%s x%d", e.GetReason(), e.GetCount()))
	}
	return strings.Join(parts, " ")
}

// ThroughputText is a throughput test's one-line summary: "9.41 Gbit/s 1.10 GiB in 1s ...".
func ThroughputText(s *sockagentv1.ThroughputSummary) string {
	parts := []string{scenario.FormatBitRate(s.GetBitsPerSecond()), scenario.FormatBytes(s.GetBytes()),
		"in " + s.GetDuration().AsDuration().Round(time.Millisecond).String()}
	if s.GetStreams() > 1 {
		parts = append(parts, fmt.Sprintf("%d streams", s.GetStreams()))
	}
	if s.GetDatagramsSent() > 0 || s.GetDatagramsReceived() > 0 {
		parts = append(parts, fmt.Sprintf("datagrams %d/%d loss %s", s.GetDatagramsReceived(), s.GetDatagramsSent(), scenario.FormatFigure("loss", s.GetLoss())))
	} else {
		parts = append(parts, fmt.Sprintf("retransmits %d", s.GetRetransmits()))
		if s.GetRtt() != nil {
			parts = append(parts, "rtt "+scenario.FormatFigure("rtt", Nanos(s.GetRtt())))
		}
	}
	for _, e := range s.GetErrors() {
		parts = append(parts, fmt.Sprintf("%s x%d", e.GetReason(), e.GetCount()))
	}
	return strings.Join(parts, " ")
}

// reportFigures are figures as the JSON report shows them: durations in milliseconds, their
// keys ending in _ms.
func reportFigures(f map[string]float64) map[string]float64 {
	if f == nil {
		return nil
	}
	out := make(map[string]float64, len(f))
	for k, v := range f {
		if _, dur := scenario.IsFigure(k); dur {
			out[k+"_ms"] = v / float64(time.Millisecond)
			continue
		}
		out[k] = v
	}
	return out
}

// results names a probe's or throughput test's figures with the step's `as`, for
// ${ALIAS.FIGURE} in later steps.
func (r *runner) results(st *scenario.Step, look scenario.Lookup, figures map[string]float64) (string, error) {
	name, err := scenario.Expand(st.As, look)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.aliases[name] = alias{agent: st.On, figures: figures}
	r.mu.Unlock()
	return name, nil
}

// figureField is ${ALIAS.FIGURE} of a step's results, written as an expectation takes it:
// durations as Go durations (41.234µs), the others as plain numbers.
func figureField(f map[string]float64, field, ref string) (string, error) {
	v, ok := f[field]
	if !ok {
		keys := make([]string, 0, len(f))
		for k := range f {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return "", fmt.Errorf("${%s}: the results have %s", ref, strings.Join(keys, ", "))
	}
	if _, dur := scenario.IsFigure(field); dur {
		return time.Duration(v).String(), nil
	}
	return strconv.FormatFloat(v, 'f', -1, 64), nil
}
