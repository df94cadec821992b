package client

import (
	"context"
	"errors"
	"io"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// CallMargin is added to a blocking call's own bound (a scenario step's timeout, a probe's
// attempts) for its RPC deadline, so that the agent's answer, not the client's deadline, ends
// the call.
const CallMargin = 2 * time.Second

// Bounds of the measurement calls: a probe may take every attempt's timeout (or its
// interval), and a throughput test its duration plus setup and the summary.
const (
	// throughputMargin is added to a throughput test's duration for connecting the streams
	// and the summary.
	throughputMargin = 5 * time.Second
	// defaultThroughput is the agent's duration when a request sets neither duration nor
	// bytes.
	defaultThroughput = 10 * time.Second
	// defaultProbeCount and defaultProbeTimeout are the agent's defaults.
	defaultProbeCount   = 10
	defaultProbeTimeout = time.Second
)

// Behaviours maps the behaviour names of serve to the API's.
var Behaviours = map[string]sockagentv1.Behaviour{
	"echo":    sockagentv1.Behaviour_BEHAVIOUR_ECHO,
	"discard": sockagentv1.Behaviour_BEHAVIOUR_DISCARD,
	"source":  sockagentv1.Behaviour_BEHAVIOUR_SOURCE,
	"proxy":   sockagentv1.Behaviour_BEHAVIOUR_PROXY,
}

// ProbeModes maps probe's mode names to the API's ("" is the agent's default).
var ProbeModes = map[string]sockagentv1.ProbeMode{
	"":        sockagentv1.ProbeMode_PROBE_MODE_UNSPECIFIED,
	"connect": sockagentv1.ProbeMode_PROBE_MODE_CONNECT,
	"echo":    sockagentv1.ProbeMode_PROBE_MODE_ECHO,
	"tls":     sockagentv1.ProbeMode_PROBE_MODE_TLS,
}

// Directions maps throughput's direction names to the API's ("" is the agent's default).
var Directions = map[string]sockagentv1.Direction{
	"":        sockagentv1.Direction_DIRECTION_UNSPECIFIED,
	"send":    sockagentv1.Direction_DIRECTION_SEND,
	"receive": sockagentv1.Direction_DIRECTION_RECEIVE,
}

// ShutdownDirection maps shutdown's direction names (read, write, both) to the API's.
func ShutdownDirection(s string) (sockagentv1.ShutdownDirection, bool) {
	switch s {
	case "read":
		return sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_READ, true
	case "write":
		return sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_WRITE, true
	case "both":
		return sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_BOTH, true
	}
	return 0, false
}

// ProbeDeadline bounds a probe: every attempt (warmup included) may take its timeout, or its
// interval when that is longer, plus CallMargin.
func ProbeDeadline(req *sockagentv1.ProbeRequest) time.Duration {
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
	return n*per + CallMargin
}

// ThroughputDeadline bounds a throughput test: its duration (the agent's 10s when neither
// duration nor bytes is set) plus a margin for setup and the summary; a test bounded by bytes
// only gets fallback instead.
func ThroughputDeadline(req *sockagentv1.ThroughputRequest, fallback time.Duration) time.Duration {
	switch {
	case req.GetDuration() != nil:
		return req.GetDuration().AsDuration() + throughputMargin
	case req.GetBytes() > 0:
		return fallback
	}
	return defaultThroughput + throughputMargin
}

// RunThroughput runs a throughput test, passing each report to onReport (may be nil), and
// returns the summary.
func RunThroughput(ctx context.Context, mc sockagentv1.MeasureServiceClient, req *sockagentv1.ThroughputRequest, onReport func(*sockagentv1.ThroughputResponse) error) (*sockagentv1.ThroughputSummary, error) {
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
