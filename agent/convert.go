package agent

import (
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// enumPair is one value of a proto enum and the engine value it stands for.
type enumPair[P, E comparable] struct {
	p P
	e E
}

// enumTable converts a proto enum and an engine enum into each other by explicit pairs, never by
// number: a value added to either side converts only once it is listed (a test checks every
// value of both).
type enumTable[P, E comparable] []enumPair[P, E]

func (t enumTable[P, E]) engine(p P) (E, bool) {
	for _, v := range t {
		if v.p == p {
			return v.e, true
		}
	}
	var zero E
	return zero, false
}

func (t enumTable[P, E]) proto(e E) (P, bool) {
	for _, v := range t {
		if v.e == e {
			return v.p, true
		}
	}
	var zero P
	return zero, false
}

var (
	kinds = enumTable[sockagentv1.SocketKind, engine.Kind]{
		{sockagentv1.SocketKind_SOCKET_KIND_LISTENER, engine.KindListener},
		{sockagentv1.SocketKind_SOCKET_KIND_STREAM, engine.KindStream},
		{sockagentv1.SocketKind_SOCKET_KIND_DATAGRAM, engine.KindDatagram},
	}
	states = enumTable[sockagentv1.SocketState, engine.State]{
		{sockagentv1.SocketState_SOCKET_STATE_OPEN, engine.StateOpen},
		{sockagentv1.SocketState_SOCKET_STATE_READ_SHUT, engine.StateReadShut},
		{sockagentv1.SocketState_SOCKET_STATE_WRITE_SHUT, engine.StateWriteShut},
		{sockagentv1.SocketState_SOCKET_STATE_SHUT, engine.StateShut},
		{sockagentv1.SocketState_SOCKET_STATE_CLOSED, engine.StateClosed},
	}
	shutdownDirections = enumTable[sockagentv1.ShutdownDirection, engine.Direction]{
		{sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_READ, engine.ShutRead},
		{sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_WRITE, engine.ShutWrite},
		{sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_BOTH, engine.ShutBoth},
	}
	behaviours = enumTable[sockagentv1.Behaviour, engine.Behaviour]{
		{sockagentv1.Behaviour_BEHAVIOUR_ECHO, engine.BehaviourEcho},
		{sockagentv1.Behaviour_BEHAVIOUR_DISCARD, engine.BehaviourDiscard},
		{sockagentv1.Behaviour_BEHAVIOUR_SOURCE, engine.BehaviourSource},
		{sockagentv1.Behaviour_BEHAVIOUR_PROXY, engine.BehaviourProxy},
	}
	probeModes = enumTable[sockagentv1.ProbeMode, engine.ProbeMode]{
		{sockagentv1.ProbeMode_PROBE_MODE_UNSPECIFIED, engine.ProbeAuto},
		{sockagentv1.ProbeMode_PROBE_MODE_CONNECT, engine.ProbeConnect},
		{sockagentv1.ProbeMode_PROBE_MODE_ECHO, engine.ProbeEcho},
		{sockagentv1.ProbeMode_PROBE_MODE_TLS, engine.ProbeTLS},
	}
	sweepVerdicts = enumTable[sockagentv1.SweepVerdict, engine.Verdict]{
		{sockagentv1.SweepVerdict_SWEEP_VERDICT_OPEN, engine.VerdictOpen},
		{sockagentv1.SweepVerdict_SWEEP_VERDICT_CLOSED, engine.VerdictClosed},
		{sockagentv1.SweepVerdict_SWEEP_VERDICT_FILTERED, engine.VerdictFiltered},
		{sockagentv1.SweepVerdict_SWEEP_VERDICT_UNREACHABLE, engine.VerdictUnreachable},
		{sockagentv1.SweepVerdict_SWEEP_VERDICT_ERROR, engine.VerdictError},
	}
	// receives: does a Throughput direction receive (from a source) rather than send?
	receives = enumTable[sockagentv1.Direction, bool]{
		{sockagentv1.Direction_DIRECTION_SEND, false},
		{sockagentv1.Direction_DIRECTION_RECEIVE, true},
	}
)

// maxTimeout bounds a request's timeout: anything longer is surely a mistake.
const maxTimeout = 24 * time.Hour

// timeoutOf reads the timeout of a blocking call: 0 (the agent's default) up to maxTimeout.
func timeoutOf(op string, d *durationpb.Duration) (time.Duration, error) {
	v, err := durationOf(op, "timeout", d)
	if err != nil {
		return 0, err
	}
	if v < 0 || v > maxTimeout {
		return 0, engine.BadArg(contract.ReasonInvalidArgument, "%s: timeout %s out of range; give 0 (the agent's default) up to %s", op, v, maxTimeout)
	}
	return v, nil
}

// durationOf reads an optional duration field of a request: nil is 0; an invalid one is
// INVALID_ARGUMENT naming op and field.
func durationOf(op, field string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, engine.BadArg(contract.ReasonInvalidArgument, "%s: %s: %v", op, field, err)
	}
	return d.AsDuration(), nil
}

func socketProto(in engine.Info) *sockagentv1.Socket {
	now := time.Now()
	idle := now.Sub(in.LastUsed)
	if in.Pending > 0 || in.Serving != nil || idle < 0 {
		idle = 0
	}
	kind, _ := kinds.proto(in.Kind)
	state, _ := states.proto(in.State)
	return &sockagentv1.Socket{
		SessionId:        in.Session,
		LastUsedAt:       timestamppb.New(in.LastUsed),
		Age:              durationpb.New(now.Sub(in.Created)),
		Idle:             durationpb.New(idle),
		SocketId:         in.ID,
		Network:          in.Network,
		Kind:             kind,
		State:            state,
		LocalAddress:     in.Local,
		RemoteAddress:    in.Remote,
		BytesSent:        in.BytesSent,
		BytesReceived:    in.BytesRecv,
		MessagesSent:     in.MsgsSent,
		MessagesReceived: in.MsgsRecv,
		Accepted:         in.Accepted,
		ParentId:         in.Parent,
		CreatedAt:        timestamppb.New(in.Created),
		PendingCalls:     in.Pending,
		Owner:            in.Owner,
		Serving:          servingProto(in.Serving),
		Attached:         in.Attached,
		Options:          optionsProto(in.Options),
		MulticastGroups:  in.Groups,
		Tls:              tlsInfoProto(in.TLS),
		Proxy:            proxyProto(in.Serving),
	}
}

func servingProto(in *engine.ServingInfo) *sockagentv1.Serving {
	if in == nil {
		return nil
	}
	b, _ := behaviours.proto(in.Behaviour)
	return &sockagentv1.Serving{
		Behaviour:         b,
		StartedAt:         timestamppb.New(in.Started),
		Connections:       in.Connections,
		ActiveConnections: in.Active,
		BytesIn:           in.BytesIn,
		BytesOut:          in.BytesOut,
		DatagramsIn:       in.DatagramsIn,
		DatagramsOut:      in.DatagramsOut,
		Errors:            in.Errors,
		LastError:         in.LastError,
	}
}

func sessionProto(in engine.SessionInfo) *sockagentv1.Session {
	return &sockagentv1.Session{
		SessionId: in.ID,
		Name:      in.Name,
		Owner:     in.Owner,
		Ttl:       durationpb.New(in.TTL),
		CreatedAt: timestamppb.New(in.Created),
		ExpiresAt: timestamppb.New(in.Expires),
		Sockets:   uint32(in.Sockets),
	}
}

// errorsProto converts error counts for a response.
func errorsProto(in []engine.ErrorCount) []*sockagentv1.ErrorCount {
	var out []*sockagentv1.ErrorCount
	for _, c := range in {
		out = append(out, &sockagentv1.ErrorCount{Reason: c.Reason, Count: uint32(c.Count), Message: c.Message})
	}
	return out
}

func intervalProto(iv engine.ThroughputInterval) *sockagentv1.ThroughputInterval {
	return &sockagentv1.ThroughputInterval{
		Start: durationpb.New(iv.Start), End: durationpb.New(iv.End),
		Bytes: iv.Bytes, BitsPerSecond: engine.BitsPerSecond(iv.Bytes, iv.End-iv.Start),
		Retransmits: iv.Retransmits, Rtt: durationpb.New(iv.RTT),
		Datagrams: iv.Datagrams, Lost: iv.Lost,
	}
}

func summaryProto(s engine.ThroughputSummary) *sockagentv1.ThroughputSummary {
	return &sockagentv1.ThroughputSummary{
		Duration: durationpb.New(s.Duration), Bytes: s.Bytes, BitsPerSecond: engine.BitsPerSecond(s.Bytes, s.Duration),
		Retransmits: s.Retransmits, Rtt: durationpb.New(s.RTT),
		DatagramsSent: s.Sent, DatagramsReceived: s.Received, Loss: s.Loss,
		Streams: uint32(s.Streams), RemoteAddress: s.Remote,
		Errors: errorsProto(s.Errors),
	}
}

func latencyProto(st engine.LatencyStats) *sockagentv1.LatencyStats {
	return &sockagentv1.LatencyStats{
		Samples: uint32(st.Samples), Min: durationpb.New(st.Min), P50: durationpb.New(st.P50),
		P90: durationpb.New(st.P90), P99: durationpb.New(st.P99), Max: durationpb.New(st.Max), Mean: durationpb.New(st.Mean),
	}
}
