package engine

import (
	"errors"
	"maps"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/sockagent/sockagent/agent/policy"
)

// TestErrorTexts: the messages name what was refused and by which rule set, only when there
// is one, and never repeat what net.OpError already says.
func TestErrorTexts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&limitError{Limit: "agent_limits.sockets", Max: 5}, "limit agent_limits.sockets (5) exceeded"},
		{&limitError{Limit: "agent_limits.sockets", Max: 5, Detail: "close some first"}, "limit agent_limits.sockets (5) exceeded: close some first"},
		{&limitError{Limit: "limits.sockets", Max: 3, RuleSet: "lab", Detail: "close some first"}, `limit limits.sockets (3) exceeded (rule set "lab"): close some first`},
		{&OpError{Op: "dial", Network: "tcp", Address: "127.0.0.1:1", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}},
			"dial tcp 127.0.0.1:1: connect: connection refused"},
		{&OpError{Op: "close", Err: errors.New("boom")}, "close: boom"},
		{&closedError{why: "its session ended"}, "socket closed by the agent: its session ended"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

// TestMetadataExact: the metadata holds exactly the keys that have values: an agent-wide limit
// has no rule set, a rule set's limit and a policy refusal name theirs.
func TestMetadataExact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want map[string]string
	}{
		{&OpError{Op: "listen", Err: &limitError{Limit: "agent_limits.sockets", Max: 5}}, map[string]string{"op": "listen", "limit": "agent_limits.sockets"}},
		{&OpError{Op: "listen", Network: "tcp", Err: &limitError{Limit: "limits.sockets", Max: 3, RuleSet: "lab"}},
			map[string]string{"op": "listen", "network": "tcp", "limit": "limits.sockets", "rule_set": "lab"}},
		{&OpError{Op: "dial", Address: "10.0.0.1:22", Err: &policy.Denied{What: "destination", Rule: "ssh", RuleSet: "lab"}},
			map[string]string{"op": "dial", "address": "10.0.0.1:22", "rule": "ssh", "rule_set": "lab"}},
		{&OpError{Op: "recv", SocketID: "s1-2", Err: errors.New("x")}, map[string]string{"op": "recv", "socket_id": "s1-2"}},
		{errors.New("plain"), map[string]string{}},
	} {
		if got := Metadata(tc.err); !maps.Equal(got, tc.want) {
			t.Errorf("Metadata(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
