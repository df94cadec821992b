package policy

import (
	"strings"
	"testing"
)

// agent_limits: each key is optional, inherited from DefaultYAML one by one, and checked.
func TestAgentLimits(t *testing.T) {
	t.Parallel()
	def := Default()
	if def.MaxSockets != 4096 || def.MaxBlockingCalls != 4096 || def.MaxBufferedBytes != 256<<20 {
		t.Errorf("default agent limits: sockets %d blocking_calls %d buffered_bytes %d; want 4096 4096 %d",
			def.MaxSockets, def.MaxBlockingCalls, def.MaxBufferedBytes, 256<<20)
	}
	for _, tc := range []struct {
		src                    string
		sockets, calls, buffer int
	}{
		{"default: {}\n", 4096, 4096, 256 << 20},
		{"agent_limits: {blocking_calls: 7}\n", 4096, 7, 256 << 20},
		{"agent_limits: {buffered_bytes: 1048576, sockets: 9}\n", 9, 4096, 1 << 20},
		{"agent_limits: {sockets: 1, blocking_calls: 2, buffered_bytes: 3}\n", 1, 2, 3},
	} {
		p, err := Parse("p.yaml", []byte(tc.src))
		if err != nil {
			t.Errorf("%q: %v", tc.src, err)
			continue
		}
		if p.MaxSockets != tc.sockets || p.MaxBlockingCalls != tc.calls || p.MaxBufferedBytes != tc.buffer {
			t.Errorf("%q: sockets %d blocking_calls %d buffered_bytes %d; want %d %d %d", tc.src,
				p.MaxSockets, p.MaxBlockingCalls, p.MaxBufferedBytes, tc.sockets, tc.calls, tc.buffer)
		}
	}
	for _, tc := range []struct{ src, want string }{
		{"agent_limits: {blocking_calls: 0}\n", "p.yaml:1:32: agent_limits.blocking_calls: want a whole number from 1 to"},
		{"agent_limits: {buffered_bytes: -1}\n", "p.yaml:1:32: agent_limits.buffered_bytes: want a whole number from 1 to"},
		{"agent_limits: {buffered_bytes: 1e9}\n", "agent_limits.buffered_bytes: want a whole number"},
		{"agent_limits: {bytes: 1}\n", `unknown key "bytes"; known keys: blocking_calls, buffered_bytes, sockets`},
	} {
		_, err := Parse("p.yaml", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.src, err, tc.want)
		}
	}
}
