package agent

import (
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// eventKinds converts event kinds, value by value.
var eventKinds = enumTable[sockagentv1.EventKind, engine.EventKind]{
	{sockagentv1.EventKind_EVENT_KIND_OPENED, engine.EventOpened},
	{sockagentv1.EventKind_EVENT_KIND_ACCEPTED, engine.EventAccepted},
	{sockagentv1.EventKind_EVENT_KIND_CONNECTED, engine.EventConnected},
	{sockagentv1.EventKind_EVENT_KIND_DATA, engine.EventData},
	{sockagentv1.EventKind_EVENT_KIND_PEER_CLOSED, engine.EventPeerClosed},
	{sockagentv1.EventKind_EVENT_KIND_RESET, engine.EventReset},
	{sockagentv1.EventKind_EVENT_KIND_ERROR, engine.EventError},
	{sockagentv1.EventKind_EVENT_KIND_CLOSED, engine.EventClosed},
	{sockagentv1.EventKind_EVENT_KIND_SESSION_ENDED, engine.EventSessionEnded},
	{sockagentv1.EventKind_EVENT_KIND_LIMIT_REFUSED, engine.EventLimitRefused},
}

// WatchEvents streams the events the caller may see; the response headers go out once the
// watch is in force, so a client that waits for them misses nothing after.
func (s *socketService) WatchEvents(r *sockagentv1.WatchEventsRequest, stream grpc.ServerStreamingServer[sockagentv1.WatchEventsResponse]) error {
	interval, err := durationOf("watch events", "data_interval", r.GetDataInterval())
	if err != nil {
		return fail(err)
	}
	spec := engine.WatchSpec{Sockets: r.GetSocketIds(), Callers: r.GetCallers(), Interval: interval, AllCallers: r.GetAllCallers()}
	for _, k := range r.GetKinds() {
		ek, ok := eventKinds.engine(k)
		if !ok {
			return fail(engine.BadArg(contract.ReasonInvalidArgument, "watch events: kind %d unknown; give EVENT_KIND_OPENED up to EVENT_KIND_LIMIT_REFUSED", int32(k)))
		}
		spec.Kinds = append(spec.Kinds, ek)
	}
	instance := s.t.InstanceID()
	var resp sockagentv1.WatchEventsResponse
	err = s.t.Watch(stream.Context(), spec, func() error { return stream.SendHeader(nil) }, func(it engine.WatchItem) error {
		if it.Dropped > 0 {
			resp.Item = &sockagentv1.WatchEventsResponse_Dropped{Dropped: &sockagentv1.EventsDropped{Count: it.Dropped, Time: timestamppb.New(it.Event.Time)}}
		} else {
			resp.Item = &sockagentv1.WatchEventsResponse_Event{Event: eventProto(it.Event, instance)}
		}
		return stream.Send(&resp)
	})
	return fail(err)
}

// eventProto converts an engine event of agent instance instance.
func eventProto(ev engine.Event, instance string) *sockagentv1.Event {
	k, _ := eventKinds.proto(ev.Kind) // every engine kind is listed (TestEnumTables)
	return &sockagentv1.Event{
		Kind: k, Time: timestamppb.New(ev.Time), SocketId: ev.SocketID, ParentId: ev.Parent, Network: ev.Network,
		LocalAddress: ev.Local, RemoteAddress: ev.Remote, Caller: ev.Caller, SessionId: ev.Session, InstanceId: instance,
		BytesIn: ev.BytesIn, BytesOut: ev.BytesOut, Reason: ev.Reason, Message: ev.Message,
	}
}
