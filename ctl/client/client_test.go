package client

import (
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestRPCDeadline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		timeout, wait, want time.Duration
	}{
		{time.Minute, 0, time.Minute},
		{time.Minute, time.Second, time.Minute},
		{time.Minute, 55 * time.Second, time.Minute},
		{time.Minute, 56 * time.Second, 61 * time.Second},
		{time.Second, 10 * time.Minute, 10*time.Minute + 5*time.Second},
		{0, time.Hour, 0},
	} {
		if got := RPCDeadline(tc.timeout, tc.wait); got != tc.want {
			t.Errorf("RPCDeadline(%s, %s) = %s, want %s", tc.timeout, tc.wait, got, tc.want)
		}
	}
}

func TestMeasureDeadlines(t *testing.T) {
	t.Parallel()
	d := func(v time.Duration) *durationpb.Duration { return durationpb.New(v) }
	for _, tt := range []struct {
		req  *sockagentv1.ProbeRequest
		want time.Duration
	}{
		{&sockagentv1.ProbeRequest{}, 10*time.Second + CallMargin},
		{&sockagentv1.ProbeRequest{Count: 100, Warmup: 10, Timeout: d(time.Second)}, 110*time.Second + CallMargin},
		{&sockagentv1.ProbeRequest{Count: 100, Timeout: d(10 * time.Millisecond), Interval: d(20 * time.Millisecond)}, 2*time.Second + CallMargin},
	} {
		if got := ProbeDeadline(tt.req); got != tt.want {
			t.Errorf("ProbeDeadline(%v) = %s, want %s", tt.req, got, tt.want)
		}
	}
	for _, tt := range []struct {
		req  *sockagentv1.ThroughputRequest
		want time.Duration
	}{
		{&sockagentv1.ThroughputRequest{}, 15 * time.Second},
		{&sockagentv1.ThroughputRequest{Duration: d(2 * time.Second), Bytes: 1}, 7 * time.Second},
		{&sockagentv1.ThroughputRequest{Bytes: 1 << 30}, time.Minute},
	} {
		if got := ThroughputDeadline(tt.req, time.Minute); got != tt.want {
			t.Errorf("ThroughputDeadline(%v) = %s, want %s", tt.req, got, tt.want)
		}
	}
}

func TestIsLocalTarget(t *testing.T) {
	t.Parallel()
	for target, want := range map[string]bool{
		"127.0.0.1:7700":                            true,
		"127.1.2.3:7700":                            true,
		"[::1]:7700":                                true,
		"localhost:7700":                            true,
		"LOCALHOST:7700":                            true,
		"unix:/run/sockagent.sock":                  true,
		"unix:///run/sockagent.sock":                true,
		"dns:///127.0.0.1:7700":                     true,
		"passthrough:///[::1]:1":                    true,
		"10.77.0.2:7700":                            false,
		"[2001:db8::1]:7700":                        false,
		"agent.lab:7700":                            false,
		"dns:///agent.lab:7700":                     false,
		"dns://8.8.8.8/localhost.evil.example:7700": false,
		"localhost.evil.example:7700":               false,
	} {
		if got := IsLocalTarget(target); got != want {
			t.Errorf("IsLocalTarget(%q) = %v, want %v", target, got, want)
		}
	}
}

// TestRPCErrorText covers every shape of failure line, including those hard to provoke.
func TestRPCErrorText(t *testing.T) {
	t.Parallel()
	withInfo := func(c codes.Code, msg, reason, domain string) error {
		st, err := status.New(c, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: domain})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	for _, tc := range []struct {
		name  string
		err   error
		state connectivity.State
		want  string
	}{
		{"reason", withInfo(codes.Unavailable, "dial tcp 127.0.0.1:1: connect: connection refused", "CONNECTION_REFUSED", "sockagent.v1"),
			connectivity.Ready, "dial tcp 127.0.0.1:1: CONNECTION_REFUSED (Unavailable): connect: connection refused (next: nothing listens at that address on the agent's host: check the port, or open a listener ('sockctl listen'))"},
		{"reason, other message", withInfo(codes.NotFound, "no such socket", "UNKNOWN_SOCKET", "sockagent.v1"),
			connectivity.Ready, "dial tcp 127.0.0.1:1: UNKNOWN_SOCKET (NotFound): no such socket (next: 'sockctl ls' lists your open sockets)"},
		{"reason without a next step", withInfo(codes.Unknown, "weird", "OS_ERROR", "sockagent.v1"),
			connectivity.Ready, "dial tcp 127.0.0.1:1: OS_ERROR (Unknown): weird"},
		{"reason with advice already", withInfo(codes.Unauthenticated, "missing credentials", "UNKNOWN_SOCKET", "sockagent.v1"),
			connectivity.Ready, "dial tcp 127.0.0.1:1: UNKNOWN_SOCKET (Unauthenticated): missing credentials (the agent requires a token: --token-file FILE)"},
		{"too large", status.Error(codes.ResourceExhausted, "grpc: received message larger than max (10485776 vs. 4259840)"),
			connectivity.Ready, "dial tcp 127.0.0.1:1: ResourceExhausted: grpc: received message larger than max (10485776 vs. 4259840) (the agent's --max-message-bytes bounds one request, 'sockctl info' shows it: send less per call)"},
		{"exhausted otherwise", status.Error(codes.ResourceExhausted, "too many streams"),
			connectivity.Ready, "dial tcp 127.0.0.1:1: ResourceExhausted: too many streams"},
		{"no such UNIX socket", status.Error(codes.Unavailable, "dial unix /run/x.sock: connect: no such file or directory"),
			connectivity.TransientFailure, "cannot reach agent 127.0.0.1:7700: dial unix /run/x.sock: connect: no such file or directory (is sockagent running there? sockctl calls --agent, else $SOCKCTL_AGENT, else the default UNIX socket; 'sockagent --listen ADDR' serves on ADDR)"},
		{"foreign domain", withInfo(codes.Unavailable, "down", "X", "example.com"),
			connectivity.TransientFailure, "cannot reach agent 127.0.0.1:7700: down"},
		{"unreachable", status.Error(codes.Unavailable, "connection refused"),
			connectivity.TransientFailure, "cannot reach agent 127.0.0.1:7700: connection refused (is sockagent running there? sockctl calls --agent, else $SOCKCTL_AGENT, else the default UNIX socket; 'sockagent --listen ADDR' serves on ADDR)"},
		{"never connected", status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
			connectivity.Connecting, "cannot reach agent 127.0.0.1:7700: no connection within 1m0s (--timeout)"},
		{"slow", status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
			connectivity.Ready, "dial tcp 127.0.0.1:1: RPC deadline of 1m0s exceeded (raise --timeout)"},
		{"cancelled", status.Error(codes.Canceled, "context canceled"),
			connectivity.Ready, "dial tcp 127.0.0.1:1: cancelled"},
		{"not an agent", status.Error(codes.Unimplemented, "unknown service"),
			connectivity.Ready, "dial tcp 127.0.0.1:1: Unimplemented: unknown service (is 127.0.0.1:7700 a sockagent that knows this call?)"},
		{"other", status.Error(codes.Internal, "boom"),
			connectivity.Ready, "dial tcp 127.0.0.1:1: Internal: boom"},
	} {
		e := &RPCError{Op: "dial tcp 127.0.0.1:1", Agent: "127.0.0.1:7700", Deadline: time.Minute, State: tc.state, Err: tc.err}
		if got := e.Error(); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}
