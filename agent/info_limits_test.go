package agent_test

import (
	"testing"

	"github.com/sockagent/sockagent/agent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// GetInfo reports the limits in force: the agent's, and those of the caller's rule set.
func TestGetInfoLimits(t *testing.T) {
	t.Parallel()
	e := polEnv(t, `agent_limits: {sockets: 11, blocking_calls: 12, buffered_bytes: 13}
default: {session_limits: {sockets: 21}}
rule_sets:
  - {name: small, callers: ["token:carol"], limits: {sockets: 1, buffered_bytes: 5000, sessions: 3}, session_limits: {buffered_bytes: 99}}
`, true)
	base := &sockagentv1.Limits{
		DefaultTimeout:  durationpb.New(agent.DefaultTimeout),
		MaxRecvBytes:    agent.DefaultMaxRecvBytes,
		IdleTimeout:     durationpb.New(agent.DefaultIdleTimeout),
		MaxMessageBytes: agent.DefaultMaxMessageBytes,
		AgentSockets:    11, AgentBlockingCalls: 12, AgentBufferedBytes: 13,
		MaxConnections:             agent.DefaultMaxConnections,
		MaxUnauthenticated:         agent.DefaultMaxUnauthenticated,
		MaxConnectionsPerPeer:      agent.DefaultMaxConnectionsPerPeer,
		AuthTimeout:                durationpb.New(agent.DefaultAuthTimeout),
		MaxStreams:                 agent.DefaultMaxStreams,
		MaxHealthWatches:           agent.DefaultMaxHealthWatches,
		HealthWatchesPerConnection: agent.DefaultMaxHealthWatchesPerConn,
	}
	for _, tc := range []struct {
		caller string
		want   func(l *sockagentv1.Limits)
	}{
		{"bob", func(l *sockagentv1.Limits) {
			l.RuleSet, l.CallerSockets, l.BytesPerCall, l.CallerBlockingCalls = "default", 1024, 4<<20, 256
			l.CallerBufferedBytes, l.CallerSessions = 64<<20, 64
			l.SessionSockets, l.SessionBlockingCalls, l.SessionBufferedBytes = 21, 64, 64<<20
		}},
		{"carol", func(l *sockagentv1.Limits) {
			l.RuleSet, l.CallerSockets, l.BytesPerCall, l.CallerBlockingCalls = "small", 1, 4<<20, 256
			l.CallerBufferedBytes, l.CallerSessions = 5000, 3
			l.SessionSockets, l.SessionBlockingCalls, l.SessionBufferedBytes = 21, 64, 99
		}},
	} {
		r, err := e.ac.GetInfo(polAs(t, tc.caller), &sockagentv1.GetInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		want := proto.CloneOf(base)
		tc.want(want)
		got := r.GetLimits()
		got.OpenFilesSoft, got.OpenFilesHard = 0, 0 // the host's; checked in TestListGetInfoAndUnixCleanup
		if !proto.Equal(got, want) {
			t.Errorf("%s: limits\n%v\nwant\n%v", tc.caller, got, want)
		}
	}
}
