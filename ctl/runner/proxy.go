package runner

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// toxicDirections maps the directions of scenario.Toxic to the API's.
var toxicDirections = map[string]sockagentv1.ToxicDirection{
	scenario.DirectionUpstream:   sockagentv1.ToxicDirection_TOXIC_DIRECTION_UPSTREAM,
	scenario.DirectionDownstream: sockagentv1.ToxicDirection_TOXIC_DIRECTION_DOWNSTREAM,
}

// ToxicProto is t as the API's toxic.
func ToxicProto(t scenario.Toxic) *sockagentv1.Toxic {
	p := &sockagentv1.Toxic{Name: t.Name, Direction: toxicDirections[t.Direction]}
	if t.HasToxicity {
		p.Toxicity = proto.Float64(t.Toxicity)
	}
	switch t.Kind {
	case scenario.ToxicLatency:
		p.Kind = &sockagentv1.Toxic_Latency{Latency: &sockagentv1.LatencyToxic{Latency: protoTimeout(t.Latency), Jitter: protoTimeout(t.Jitter)}}
	case scenario.ToxicBandwidth:
		p.Kind = &sockagentv1.Toxic_Bandwidth{Bandwidth: &sockagentv1.BandwidthToxic{BytesPerSecond: t.BytesPerSecond}}
	case scenario.ToxicSlicer:
		p.Kind = &sockagentv1.Toxic_Slicer{Slicer: &sockagentv1.SlicerToxic{AverageSize: t.AverageSize, SizeVariation: t.SizeVariation, Delay: protoTimeout(t.Delay)}}
	case scenario.ToxicResetPeer:
		p.Kind = &sockagentv1.Toxic_ResetPeer{ResetPeer: &sockagentv1.ResetPeerToxic{After: protoTimeout(t.After), AfterBytes: t.AfterBytes}}
	case scenario.ToxicTimeout:
		p.Kind = &sockagentv1.Toxic_Timeout{Timeout: &sockagentv1.TimeoutToxic{CloseAfter: protoTimeout(t.CloseAfter)}}
	case scenario.ToxicLimitData:
		p.Kind = &sockagentv1.Toxic_LimitData{LimitData: &sockagentv1.LimitDataToxic{Bytes: t.Bytes}}
	case scenario.ToxicLoss:
		p.Kind = &sockagentv1.Toxic_Loss{Loss: &sockagentv1.LossToxic{}}
	case scenario.ToxicDuplicate:
		p.Kind = &sockagentv1.Toxic_Duplicate{Duplicate: &sockagentv1.DuplicateToxic{}}
	case scenario.ToxicReorder:
		p.Kind = &sockagentv1.Toxic_Reorder{Reorder: &sockagentv1.ReorderToxic{Depth: t.Depth, Delay: protoTimeout(t.Delay)}}
	}
	return p
}

// ToxicsProto is ts as the API's toxics.
func ToxicsProto(ts []scenario.Toxic) []*sockagentv1.Toxic {
	out := make([]*sockagentv1.Toxic, len(ts))
	for i, t := range ts {
		out[i] = ToxicProto(t)
	}
	return out
}

// ToxicOfProto is the API's toxic p as sockctl writes it (scenario.Toxic's String). A
// toxicity of 1, the default the agent fills in, is left out.
func ToxicOfProto(p *sockagentv1.Toxic) scenario.Toxic {
	t := scenario.Toxic{Name: p.GetName(), Toxicity: p.GetToxicity(), HasToxicity: p.Toxicity != nil && p.GetToxicity() != 1}
	for name, d := range toxicDirections {
		if d == p.GetDirection() {
			t.Direction = name
		}
	}
	switch k := p.GetKind().(type) {
	case *sockagentv1.Toxic_Latency:
		t.Kind, t.Latency, t.Jitter = scenario.ToxicLatency, k.Latency.GetLatency().AsDuration(), k.Latency.GetJitter().AsDuration()
	case *sockagentv1.Toxic_Bandwidth:
		t.Kind, t.BytesPerSecond = scenario.ToxicBandwidth, k.Bandwidth.GetBytesPerSecond()
	case *sockagentv1.Toxic_Slicer:
		t.Kind, t.AverageSize, t.SizeVariation, t.Delay = scenario.ToxicSlicer, k.Slicer.GetAverageSize(), k.Slicer.GetSizeVariation(), k.Slicer.GetDelay().AsDuration()
	case *sockagentv1.Toxic_ResetPeer:
		t.Kind, t.After, t.AfterBytes = scenario.ToxicResetPeer, k.ResetPeer.GetAfter().AsDuration(), k.ResetPeer.GetAfterBytes()
	case *sockagentv1.Toxic_Timeout:
		t.Kind, t.CloseAfter = scenario.ToxicTimeout, k.Timeout.GetCloseAfter().AsDuration()
	case *sockagentv1.Toxic_LimitData:
		t.Kind, t.Bytes = scenario.ToxicLimitData, k.LimitData.GetBytes()
	case *sockagentv1.Toxic_Loss:
		t.Kind = scenario.ToxicLoss
	case *sockagentv1.Toxic_Duplicate:
		t.Kind = scenario.ToxicDuplicate
	case *sockagentv1.Toxic_Reorder:
		t.Kind, t.Depth, t.Delay = scenario.ToxicReorder, k.Reorder.GetDepth(), k.Reorder.GetDelay().AsDuration()
	default:
		t.Kind = "unknown"
	}
	return t
}

// ToxicsText shows a proxy's toxics as sockctl writes them, space-separated; "none" for none.
func ToxicsText(ts []*sockagentv1.Toxic) string {
	if len(ts) == 0 {
		return "none"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = ToxicOfProto(t).String()
	}
	return strings.Join(parts, " ")
}

// runToxics replaces a proxy's toxics; it does not block, so the step timeout bounds it.
func runToxics(ctx context.Context, c call) (scenario.Outcome, *sockagentv1.Socket, error) {
	id, err := c.socket()
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	ts, err := c.args.Toxics()
	if err != nil {
		return scenario.Outcome{}, nil, &scenarioError{err}
	}
	resp, err := c.rm.sockets.UpdateToxics(ctx, &sockagentv1.UpdateToxicsRequest{SocketId: id, Toxics: ToxicsProto(ts)})
	if err != nil {
		return scenario.Outcome{}, nil, err
	}
	return scenario.Outcome{Text: fmt.Sprintf("%s toxics: %s", resp.GetSocket().GetSocketId(), ToxicsText(resp.GetSocket().GetProxy().GetToxics()))}, nil, nil
}
