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

// session_limits: inherited field by field, from DefaultYAML into the default set and from the
// default set into rule sets, and checked.
func TestSessionLimits(t *testing.T) {
	t.Parallel()
	p, err := Parse("p.yaml", []byte(`default: {session_limits: {sockets: 5}}
rule_sets:
  - {name: ci, callers: ["token:ci"], session_limits: {buffered_bytes: 7}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Default.SessionLimits, (SessionLimits{Sockets: 5, BlockingCalls: 64, BufferedBytes: 64 << 20}); got != want {
		t.Errorf("default set: %+v, want %+v", got, want)
	}
	if got, want := p.RuleSets[0].SessionLimits, (SessionLimits{Sockets: 5, BlockingCalls: 64, BufferedBytes: 7}); got != want {
		t.Errorf("rule set ci: %+v, want %+v", got, want)
	}
	if got, want := Default().Default.SessionLimits, (SessionLimits{Sockets: 256, BlockingCalls: 64, BufferedBytes: 64 << 20}); got != want {
		t.Errorf("built-in default: %+v, want %+v", got, want)
	}
	for _, tc := range []struct{ src, want string }{
		{"default: {session_limits: {sockets: 0}}\n", "default.session_limits.sockets: want a whole number from 1 to"},
		{"default: {session_limits: {bytes: 1}}\n", `unknown key "bytes"; known keys: blocking_calls, buffered_bytes, sockets`},
	} {
		_, err := Parse("p.yaml", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.src, err, tc.want)
		}
	}
}
