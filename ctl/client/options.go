package client

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// optionValue parses value as key's kind (contract.OptionKind).
func optionValue(key, value string) (any, error) {
	switch contract.OptionKind(key) {
	case contract.OptionBool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return nil, fmt.Errorf("option %s=%s: want true or false", key, value)
		}
		return b, nil
	case contract.OptionUint:
		n, err := strconv.ParseUint(value, 0, 32)
		if err != nil {
			return nil, fmt.Errorf("option %s=%s: want a whole number (0x.. for hex)", key, value)
		}
		return uint32(n), nil
	case contract.OptionDuration:
		d, err := time.ParseDuration(value)
		if err != nil {
			return nil, fmt.Errorf("option %s=%s: want a duration such as 10s or 1m", key, value)
		}
		return d, nil
	case contract.OptionString:
		return value, nil
	}
	return nil, fmt.Errorf("unknown option %q (options: %s)", key, strings.Join(contract.SocketOptions(), ", "))
}

// CheckOption reports whether key=value is a socket option with a value of its kind.
func CheckOption(key, value string) error {
	_, err := optionValue(key, value)
	return err
}

// SetOption sets the socket option key (contract.SocketOptions) of o from its text form:
// true/false, a whole number, a duration (10s) or a name.
func SetOption(o *sockagentv1.SocketOptions, key, value string) error {
	v, err := optionValue(key, value)
	if err != nil {
		return err
	}
	ka := func() *sockagentv1.Keepalive {
		if o.Keepalive == nil {
			o.Keepalive = &sockagentv1.Keepalive{}
		}
		return o.Keepalive
	}
	switch key {
	case contract.OptNoDelay:
		o.NoDelay = proto.Bool(v.(bool))
	case contract.OptKeepalive:
		ka().Enabled = proto.Bool(v.(bool))
	case contract.OptKeepaliveIdle:
		ka().Idle = durationpb.New(v.(time.Duration))
	case contract.OptKeepaliveInterval:
		ka().Interval = durationpb.New(v.(time.Duration))
	case contract.OptKeepaliveCount:
		ka().Count = proto.Uint32(v.(uint32))
	case contract.OptRecvBuffer:
		o.RecvBuffer = proto.Uint32(v.(uint32))
	case contract.OptSendBuffer:
		o.SendBuffer = proto.Uint32(v.(uint32))
	case contract.OptLinger:
		o.Linger = durationpb.New(v.(time.Duration))
	case contract.OptTTL:
		o.Ttl = proto.Uint32(v.(uint32))
	case contract.OptTOS:
		o.Tos = proto.Uint32(v.(uint32))
	case contract.OptReuseAddress:
		o.ReuseAddress = proto.Bool(v.(bool))
	case contract.OptReusePort:
		o.ReusePort = proto.Bool(v.(bool))
	case contract.OptBindToDevice:
		o.BindToDevice = proto.String(v.(string))
	case contract.OptMaxSegment:
		o.MaxSegment = proto.Uint32(v.(uint32))
	case contract.OptCongestion:
		o.Congestion = proto.String(v.(string))
	case contract.OptDontFragment:
		o.DontFragment = proto.Bool(v.(bool))
	case contract.OptBroadcast:
		o.Broadcast = proto.Bool(v.(bool))
	case contract.OptMulticastTTL:
		o.MulticastTtl = proto.Uint32(v.(uint32))
	case contract.OptMulticastLoop:
		o.MulticastLoop = proto.Bool(v.(bool))
	}
	return nil
}

// ParseOptions reads KEY=VALUE pairs (sockctl --opt) into options; none gives nil.
func ParseOptions(pairs []string) (*sockagentv1.SocketOptions, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	o := &sockagentv1.SocketOptions{}
	for _, kv := range pairs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("option %q: want KEY=VALUE, such as ttl=5", kv)
		}
		if err := SetOption(o, k, v); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// FormatOptions writes options as the KEY=VALUE pairs ParseOptions reads, in
// contract.SocketOptions' order.
func FormatOptions(o *sockagentv1.SocketOptions) string {
	if o == nil {
		return ""
	}
	k := o.GetKeepalive()
	if k == nil { // a UDP socket's: none
		k = &sockagentv1.Keepalive{}
	}
	vals := map[string]string{}
	set := func(key string, present bool, v any) {
		if present {
			vals[key] = fmt.Sprint(v)
		}
	}
	set(contract.OptNoDelay, o.NoDelay != nil, o.GetNoDelay())
	set(contract.OptKeepalive, k.Enabled != nil, k.GetEnabled())
	set(contract.OptKeepaliveIdle, k.GetIdle() != nil, k.GetIdle().AsDuration())
	set(contract.OptKeepaliveInterval, k.GetInterval() != nil, k.GetInterval().AsDuration())
	set(contract.OptKeepaliveCount, k.Count != nil, k.GetCount())
	set(contract.OptRecvBuffer, o.RecvBuffer != nil, o.GetRecvBuffer())
	set(contract.OptSendBuffer, o.SendBuffer != nil, o.GetSendBuffer())
	set(contract.OptLinger, o.GetLinger() != nil, o.GetLinger().AsDuration())
	set(contract.OptTTL, o.Ttl != nil, o.GetTtl())
	set(contract.OptTOS, o.Tos != nil, o.GetTos())
	set(contract.OptReuseAddress, o.ReuseAddress != nil, o.GetReuseAddress())
	set(contract.OptReusePort, o.ReusePort != nil, o.GetReusePort())
	set(contract.OptBindToDevice, o.BindToDevice != nil, strconv.Quote(o.GetBindToDevice()))
	set(contract.OptMaxSegment, o.MaxSegment != nil, o.GetMaxSegment())
	set(contract.OptCongestion, o.Congestion != nil, o.GetCongestion())
	set(contract.OptDontFragment, o.DontFragment != nil, o.GetDontFragment())
	set(contract.OptBroadcast, o.Broadcast != nil, o.GetBroadcast())
	set(contract.OptMulticastTTL, o.MulticastTtl != nil, o.GetMulticastTtl())
	set(contract.OptMulticastLoop, o.MulticastLoop != nil, o.GetMulticastLoop())
	var out []string
	for _, key := range contract.SocketOptions() {
		if v, ok := vals[key]; ok {
			out = append(out, key+"="+v)
		}
	}
	return strings.Join(out, " ")
}
