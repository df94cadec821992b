package agent

import (
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

var toxicDirections = enumTable[sockagentv1.ToxicDirection, engine.ToxicDirection]{
	{sockagentv1.ToxicDirection_TOXIC_DIRECTION_UPSTREAM, engine.Upstream},
	{sockagentv1.ToxicDirection_TOXIC_DIRECTION_DOWNSTREAM, engine.Downstream},
}

// proxyConfigOf reads the proxy fields of a Serve request; nil when the request has none, so
// a behaviour other than proxy with an upstream or toxics is refused by the engine.
func proxyConfigOf(r *sockagentv1.ServeRequest) (*engine.ProxyConfig, error) {
	if r.GetBehaviour() != sockagentv1.Behaviour_BEHAVIOUR_PROXY && r.GetUpstream() == "" && len(r.GetToxics()) == 0 && r.GetUpstreamTimeout() == nil {
		return nil, nil
	}
	toxics, err := toxicsOf("serve", r.GetToxics())
	if err != nil {
		return nil, err
	}
	timeout, err := durationOf("serve", "upstream_timeout", r.GetUpstreamTimeout())
	if err != nil {
		return nil, err
	}
	return &engine.ProxyConfig{Upstream: r.GetUpstream(), Toxics: toxics, UpstreamTimeout: timeout}, nil
}

// toxicsOf converts toxics; the engine checks their values (ValidateToxics).
func toxicsOf(op string, in []*sockagentv1.Toxic) ([]engine.Toxic, error) {
	out := make([]engine.Toxic, 0, len(in))
	for i, p := range in {
		tx, err := toxicOf(op, i, p)
		if err != nil {
			return nil, err
		}
		out = append(out, tx)
	}
	return out, nil
}

// toxicOf converts one toxic: an unset toxicity is 1, an unknown direction the zero one (which
// the engine refuses by name).
func toxicOf(op string, i int, p *sockagentv1.Toxic) (engine.Toxic, error) {
	d, _ := toxicDirections.engine(p.GetDirection())
	tx := engine.Toxic{Name: p.GetName(), Direction: d, Toxicity: 1}
	if p.Toxicity != nil {
		tx.Toxicity = p.GetToxicity()
	}
	var err error
	switch k := p.GetKind().(type) {
	case *sockagentv1.Toxic_Latency:
		tx.Kind = engine.ToxicLatency
		if tx.Latency, err = durationOf(op, "toxic latency", k.Latency.GetLatency()); err == nil {
			tx.Jitter, err = durationOf(op, "toxic jitter", k.Latency.GetJitter())
		}
	case *sockagentv1.Toxic_Bandwidth:
		tx.Kind, tx.Rate = engine.ToxicBandwidth, k.Bandwidth.GetBytesPerSecond()
	case *sockagentv1.Toxic_Slicer:
		tx.Kind, tx.AverageSize, tx.SizeVariation = engine.ToxicSlicer, k.Slicer.GetAverageSize(), k.Slicer.GetSizeVariation()
		tx.Delay, err = durationOf(op, "toxic slicer delay", k.Slicer.GetDelay())
	case *sockagentv1.Toxic_ResetPeer:
		tx.Kind, tx.AfterBytes = engine.ToxicResetPeer, k.ResetPeer.GetAfterBytes()
		tx.After, err = durationOf(op, "toxic reset_peer after", k.ResetPeer.GetAfter())
	case *sockagentv1.Toxic_Timeout:
		tx.Kind = engine.ToxicTimeout
		tx.CloseAfter, err = durationOf(op, "toxic timeout close_after", k.Timeout.GetCloseAfter())
	case *sockagentv1.Toxic_LimitData:
		tx.Kind, tx.Bytes = engine.ToxicLimitData, k.LimitData.GetBytes()
	case *sockagentv1.Toxic_Loss:
		tx.Kind = engine.ToxicLoss
	case *sockagentv1.Toxic_Duplicate:
		tx.Kind = engine.ToxicDuplicate
	case *sockagentv1.Toxic_Reorder:
		tx.Kind, tx.Depth = engine.ToxicReorder, k.Reorder.GetDepth()
		tx.Delay, err = durationOf(op, "toxic reorder delay", k.Reorder.GetDelay())
	}
	if err != nil {
		return tx, engine.BadArg(contract.ReasonInvalidArgument, "%s: toxics[%d]: %v", op, i, err)
	}
	return tx, nil
}

// toxicProto converts a toxic the engine holds back, with only its kind's fields.
func toxicProto(tx engine.Toxic) *sockagentv1.Toxic {
	d, _ := toxicDirections.proto(tx.Direction)
	p := &sockagentv1.Toxic{Name: tx.Name, Direction: d, Toxicity: proto.Float64(tx.Toxicity)}
	switch tx.Kind {
	case engine.ToxicLatency:
		p.Kind = &sockagentv1.Toxic_Latency{Latency: &sockagentv1.LatencyToxic{Latency: durationpb.New(tx.Latency), Jitter: durationpb.New(tx.Jitter)}}
	case engine.ToxicBandwidth:
		p.Kind = &sockagentv1.Toxic_Bandwidth{Bandwidth: &sockagentv1.BandwidthToxic{BytesPerSecond: tx.Rate}}
	case engine.ToxicSlicer:
		p.Kind = &sockagentv1.Toxic_Slicer{Slicer: &sockagentv1.SlicerToxic{AverageSize: tx.AverageSize, SizeVariation: tx.SizeVariation, Delay: durationpb.New(tx.Delay)}}
	case engine.ToxicResetPeer:
		p.Kind = &sockagentv1.Toxic_ResetPeer{ResetPeer: &sockagentv1.ResetPeerToxic{After: durationpb.New(tx.After), AfterBytes: tx.AfterBytes}}
	case engine.ToxicTimeout:
		p.Kind = &sockagentv1.Toxic_Timeout{Timeout: &sockagentv1.TimeoutToxic{CloseAfter: durationpb.New(tx.CloseAfter)}}
	case engine.ToxicLimitData:
		p.Kind = &sockagentv1.Toxic_LimitData{LimitData: &sockagentv1.LimitDataToxic{Bytes: tx.Bytes}}
	case engine.ToxicLoss:
		p.Kind = &sockagentv1.Toxic_Loss{Loss: &sockagentv1.LossToxic{}}
	case engine.ToxicDuplicate:
		p.Kind = &sockagentv1.Toxic_Duplicate{Duplicate: &sockagentv1.DuplicateToxic{}}
	case engine.ToxicReorder:
		p.Kind = &sockagentv1.Toxic_Reorder{Reorder: &sockagentv1.ReorderToxic{Depth: tx.Depth, Delay: durationpb.New(tx.Delay)}}
	}
	return p
}

func proxyProto(in *engine.ServingInfo) *sockagentv1.ProxyState {
	if in == nil || in.Proxy == nil {
		return nil
	}
	px := in.Proxy
	out := &sockagentv1.ProxyState{
		Upstream:            px.Upstream,
		Connections:         px.Connections,
		ActiveConnections:   px.Active,
		BytesUpstream:       px.BytesUpstream,
		BytesDownstream:     px.BytesDownstream,
		DatagramsUpstream:   px.DatagramsUpstream,
		DatagramsDownstream: px.DatagramsDownstream,
		DatagramsDropped:    px.DatagramsDropped,
		DatagramsDuplicated: px.DatagramsDuplicated,
		DatagramsReordered:  px.DatagramsReordered,
		Resets:              px.Resets,
		UpstreamFailures:    px.UpstreamFailures,
		LastUpstreamError:   px.LastUpstreamError,
	}
	for _, tx := range px.Toxics {
		out.Toxics = append(out.Toxics, toxicProto(tx))
	}
	return out
}
