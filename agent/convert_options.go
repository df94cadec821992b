package agent

import (
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// optionsOf converts a request's SocketOptions; nil stays nil. Presence carries over field by
// field: an unset field is nil, whatever its zero value.
func optionsOf(op string, p *sockagentv1.SocketOptions) (*engine.Options, error) {
	if p == nil {
		return nil, nil
	}
	o := &engine.Options{
		NoDelay: p.NoDelay, RecvBuffer: p.RecvBuffer, SendBuffer: p.SendBuffer,
		TTL: p.Ttl, TOS: p.Tos, ReuseAddress: p.ReuseAddress, ReusePort: p.ReusePort,
		BindToDevice: p.BindToDevice, MaxSegment: p.MaxSegment, Congestion: p.Congestion,
		DontFragment: p.DontFragment, Broadcast: p.Broadcast, MulticastTTL: p.MulticastTtl,
		MulticastLoop: p.MulticastLoop,
	}
	var err error
	if o.Linger, err = optDuration(op, contract.OptLinger, p.GetLinger()); err != nil {
		return nil, err
	}
	if k := p.GetKeepalive(); k != nil {
		o.Keepalive = &engine.Keepalive{Enabled: k.Enabled, Count: k.Count}
		if o.Keepalive.Idle, err = optDuration(op, contract.OptKeepaliveIdle, k.GetIdle()); err != nil {
			return nil, err
		}
		if o.Keepalive.Interval, err = optDuration(op, contract.OptKeepaliveInterval, k.GetInterval()); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// optDuration converts a duration option: nil (unset) stays nil.
func optDuration(op, field string, d *durationpb.Duration) (*time.Duration, error) {
	if d == nil {
		return nil, nil
	}
	v, err := durationOf(op, field, d)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

func multicastOf(p *sockagentv1.MulticastOptions) *engine.Multicast {
	if p == nil {
		return nil
	}
	mc := &engine.Multicast{Groups: p.GetGroups(), Interface: p.GetInterface()}
	for _, sg := range p.GetSourceGroups() {
		mc.Sources = append(mc.Sources, engine.SourceGroup{Group: sg.GetGroup(), Source: sg.GetSource()})
	}
	return mc
}

func durationProto(d *time.Duration) *durationpb.Duration {
	if d == nil {
		return nil
	}
	return durationpb.New(*d)
}

// optionsProto converts effective options for a Socket.
func optionsProto(o *engine.Options) *sockagentv1.SocketOptions {
	if o == nil {
		return nil
	}
	p := &sockagentv1.SocketOptions{
		NoDelay: o.NoDelay, RecvBuffer: o.RecvBuffer, SendBuffer: o.SendBuffer,
		Ttl: o.TTL, Tos: o.TOS, ReuseAddress: o.ReuseAddress, ReusePort: o.ReusePort,
		BindToDevice: o.BindToDevice, MaxSegment: o.MaxSegment, Congestion: o.Congestion,
		DontFragment: o.DontFragment, Broadcast: o.Broadcast, MulticastTtl: o.MulticastTTL,
		MulticastLoop: o.MulticastLoop, Linger: durationProto(o.Linger),
	}
	if k := o.Keepalive; k != nil {
		p.Keepalive = &sockagentv1.Keepalive{Enabled: k.Enabled, Count: k.Count,
			Idle: durationProto(k.Idle), Interval: durationProto(k.Interval)}
	}
	return p
}
