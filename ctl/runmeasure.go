package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Deadlines of the measurement steps: a probe may take every attempt's timeout (or its
// interval) and a throughput test its duration, plus setup and the summary.
const (
	// throughputMargin is added to a throughput step's duration for connecting the streams
	// and the summary.
	throughputMargin = 5 * time.Second
	// defaultThroughput is the agent's duration when a throughput request sets neither
	// duration nor bytes.
	defaultThroughput = 10 * time.Second
	// defaultProbeCount and defaultProbeTimeout are the agent's defaults.
	defaultProbeCount   = 10
	defaultProbeTimeout = time.Second
)

// behaviours maps the behaviour names of serve to the API's.
var behaviours = map[string]sockagentv1.Behaviour{
	"echo":    sockagentv1.Behaviour_BEHAVIOUR_ECHO,
	"discard": sockagentv1.Behaviour_BEHAVIOUR_DISCARD,
	"source":  sockagentv1.Behaviour_BEHAVIOUR_SOURCE,
}

// probeModes maps probe's mode names to the API's.
var probeModes = map[string]sockagentv1.ProbeMode{
	"":        sockagentv1.ProbeMode_PROBE_MODE_UNSPECIFIED,
	"connect": sockagentv1.ProbeMode_PROBE_MODE_CONNECT,
	"echo":    sockagentv1.ProbeMode_PROBE_MODE_ECHO,
}

// directions maps throughput's direction names to the API's.
var directions = map[string]sockagentv1.Direction{
	"":        sockagentv1.Direction_DIRECTION_UNSPECIFIED,
	"send":    sockagentv1.Direction_DIRECTION_SEND,
	"receive": sockagentv1.Direction_DIRECTION_RECEIVE,
}

// isMeasure reports whether an action is one of the measurement steps run by measure.
func isMeasure(action string) bool {
	return action == "serve" || action == "probe" || action == "throughput"
}

// measure runs a serve, probe or throughput step. Its deadline is its own (see probeDeadline
// and throughputDeadline); serve, which does not block, has the step timeout.
func (r *runner) measure(ctx context.Context, rm *remote, st *scenario.Step, args scenario.Resolved) (scenario.Outcome, error) {
	ctx = rm.session.with(ctx)
	switch st.Action {
	case "serve":
		req, err := serveRequest(args)
		if err != nil {
			return scenario.Outcome{}, &scenarioError{err}
		}
		if req.SocketId, err = r.socketRef(st.On, args.String("socket")); err != nil {
			return scenario.Outcome{}, &scenarioError{err}
		}
		ctx, cancel := context.WithTimeout(ctx, r.cfg.stepTimeout)
		defer cancel()
		resp, err := rm.sockets.Serve(ctx, req)
		if err != nil {
			return scenario.Outcome{}, err
		}
		s := resp.GetSocket()
		return scenario.Outcome{Text: fmt.Sprintf("%s %s serving %s", s.GetSocketId(), s.GetLocalAddress(), args.String("behaviour"))}, nil
	case "probe":
		req, err := probeRequest(args)
		if err != nil {
			return scenario.Outcome{}, &scenarioError{err}
		}
		ctx, cancel := context.WithTimeout(ctx, probeDeadline(req))
		defer cancel()
		resp, err := sockagentv1.NewMeasureServiceClient(rm.conn).Probe(ctx, req)
		if err != nil {
			return scenario.Outcome{}, err
		}
		out := scenario.Outcome{Figures: probeFigures(resp), Text: probeText(resp)}
		// A probe none of whose attempts succeeded fails with its most frequent reason,
		// unless the expectations judge the figures themselves (received: 0, loss: 1).
		if resp.GetReceived() == 0 && !scenario.HasFigures(st.Expect) {
			out.Reason, out.Err = "PROBE_FAILED", "no attempt succeeded"
			if e := resp.GetErrors(); len(e) > 0 {
				out.Reason, out.Err = e[0].GetReason(), fmt.Sprintf("every attempt failed (%d of %d): %s", e[0].GetCount(), resp.GetSent(), e[0].GetMessage())
			}
		}
		return out, nil
	case "throughput":
		req, err := throughputRequest(args)
		if err != nil {
			return scenario.Outcome{}, &scenarioError{err}
		}
		ctx, cancel := context.WithTimeout(ctx, throughputDeadline(req, r.cfg.stepTimeout))
		defer cancel()
		sum, err := runThroughput(ctx, sockagentv1.NewMeasureServiceClient(rm.conn), req, nil)
		if err != nil {
			return scenario.Outcome{}, err
		}
		return scenario.Outcome{Figures: throughputFigures(sum), Text: throughputText(sum)}, nil
	}
	return scenario.Outcome{}, &scenarioError{fmt.Errorf("unknown action %q", st.Action)}
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
	b, ok := behaviours[args.String("behaviour")]
	if !ok {
		return nil, fmt.Errorf("behaviour %q: use echo, discard or source", args.String("behaviour"))
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
	return &sockagentv1.ServeRequest{Behaviour: b, ChunkSize: chunk, MaxConnections: maxc}, nil
}

func probeRequest(args scenario.Resolved) (*sockagentv1.ProbeRequest, error) {
	mode, ok := probeModes[args.String("mode")]
	if !ok {
		return nil, fmt.Errorf("mode %q: use connect or echo", args.String("mode"))
	}
	req := &sockagentv1.ProbeRequest{Network: args.String("network"), Address: args.String("address"), Mode: mode, LocalAddress: args.String("local_address")}
	var err error
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
	dir, ok := directions[args.String("direction")]
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

// probeDeadline bounds a probe: every attempt (warmup included) may take its timeout, or
// its interval when that is longer, plus the RPC margin.
func probeDeadline(req *sockagentv1.ProbeRequest) time.Duration {
	n := time.Duration(req.GetCount())
	if n == 0 {
		n = defaultProbeCount
	}
	n += time.Duration(req.GetWarmup())
	per := defaultProbeTimeout
	if t := req.GetTimeout(); t != nil {
		per = t.AsDuration()
	}
	if i := req.GetInterval(); i != nil && i.AsDuration() > per {
		per = i.AsDuration()
	}
	return n*per + rpcMargin
}

// throughputDeadline bounds a throughput test: its duration (the agent's 10s when neither
// duration nor bytes is set) plus throughputMargin; a test bounded by bytes only gets
// fallback (the step timeout) instead.
func throughputDeadline(req *sockagentv1.ThroughputRequest, fallback time.Duration) time.Duration {
	switch {
	case req.GetDuration() != nil:
		return req.GetDuration().AsDuration() + throughputMargin
	case req.GetBytes() > 0:
		return fallback
	}
	return defaultThroughput + throughputMargin
}

// runThroughput runs a throughput test, passing each report to onReport (may be nil), and
// returns the summary.
func runThroughput(ctx context.Context, mc sockagentv1.MeasureServiceClient, req *sockagentv1.ThroughputRequest, onReport func(*sockagentv1.ThroughputResponse) error) (*sockagentv1.ThroughputSummary, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := mc.Throughput(ctx, req)
	if err != nil {
		return nil, err
	}
	var sum *sockagentv1.ThroughputSummary
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if onReport != nil {
			if err := onReport(resp); err != nil {
				return nil, err
			}
		}
		if s := resp.GetSummary(); s != nil {
			sum = s
		}
	}
	if sum == nil {
		return nil, errors.New("the agent ended the throughput test without a summary")
	}
	return sum, nil
}

func errorTotal(errs []*sockagentv1.ErrorCount) float64 {
	n := 0.0
	for _, e := range errs {
		n += float64(e.GetCount())
	}
	return n
}

func nanos(d *durationpb.Duration) float64 { return float64(d.AsDuration()) }

// probeFigures are a probe's figures by expect key.
func probeFigures(p *sockagentv1.ProbeResponse) map[string]float64 {
	rtt := p.GetRtt()
	return map[string]float64{
		"rtt_min": nanos(rtt.GetMin()), "rtt_p50": nanos(rtt.GetP50()), "rtt_p90": nanos(rtt.GetP90()),
		"rtt_p99": nanos(rtt.GetP99()), "rtt_max": nanos(rtt.GetMax()), "rtt_mean": nanos(rtt.GetMean()),
		"loss": p.GetLoss(), "received": float64(p.GetReceived()), "errors": errorTotal(p.GetErrors()),
	}
}

// throughputFigures are a throughput test's figures by expect key.
func throughputFigures(s *sockagentv1.ThroughputSummary) map[string]float64 {
	return map[string]float64{
		"bits_per_second": s.GetBitsPerSecond(), "bytes": float64(s.GetBytes()), "loss": s.GetLoss(),
		"retransmits": float64(s.GetRetransmits()), "rtt": nanos(s.GetRtt()), "errors": errorTotal(s.GetErrors()),
	}
}

// probeText is a probe's one-line summary: "p50 41µs p99 80µs max 1.2ms loss 0 (100/100)".
func probeText(p *sockagentv1.ProbeResponse) string {
	f := probeFigures(p)
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

// throughputText is a throughput test's one-line summary: "9.41 Gbit/s 1.10 GiB in 1s ...".
func throughputText(s *sockagentv1.ThroughputSummary) string {
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
			parts = append(parts, "rtt "+scenario.FormatFigure("rtt", nanos(s.GetRtt())))
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
