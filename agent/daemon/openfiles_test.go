package daemon_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/agent/daemon"
)

// TestFitOpenFiles: the agent's socket limit leaves the open files of --max-connections and
// 64 of the agent's own; it is lowered (and logged) when the policy asks for more, kept when
// it fits or the limit is unknown, and the agent refuses to start when fewer than 16 sockets
// would fit.
func TestFitOpenFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	small := filepath.Join(dir, "small.yaml")
	if err := os.WriteFile(small, []byte("agent_limits:\n  sockets: 100\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		soft    uint64
		conns   int
		policy  string
		sockets int    // the agent's socket limit after fitting
		lowered bool   // a log line says so
		refusal string // "" starts
	}{
		{"hard limit of a systemd service", 524288, 1024, "", 4096, false, ""},
		{"unknown (Windows)", 0, 1024, "", 4096, false, ""},
		{"unlimited", 1 << 62, 1024, "", 4096, false, ""},
		{"exactly fits", 4096 + 1024 + 64, 1024, "", 4096, false, ""},
		{"one file short", 4096 + 1024 + 63, 1024, "", 4095, true, ""},
		{"1024 files, 64 connections", 1024, 64, "", 1024 - 64 - 64, true, ""},
		{"policy smaller than the room", 1024, 64, small, 100, false, ""},
		{"policy lowered too", 200, 64, small, 200 - 64 - 64, true, ""},
		{"16 sockets fit", 64 + 64 + 16, 64, "", 16, true, ""},
		{"15 sockets fit", 64 + 64 + 15, 64, "", 0, false,
			"open-file limit 143 leaves room for 15 sockets beside --max-connections 64 and 64 files of the agent's own, fewer than 16:\n" +
				"raise the limit (ulimit -n, LimitNOFILE= in a systemd unit) to at least 144, or lower --max-connections"},
		{"1024 files, default connections", 1024, 1024, "", 0, false,
			"open-file limit 1024 leaves room for 0 sockets beside --max-connections 1024 and 64 files of the agent's own, fewer than 16:\n" +
				"raise the limit (ulimit -n, LimitNOFILE= in a systemd unit) to at least 1104, or lower --max-connections"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := daemon.DefaultConfig()
			c.Listen = "127.0.0.1:0"
			c.MaxConnections = tt.conns
			c.MaxUnauthenticated = min(c.MaxUnauthenticated, tt.conns)
			c.MaxConnectionsPerPeer = min(c.MaxConnectionsPerPeer, tt.conns)
			c.PolicyFile = tt.policy
			var log bytes.Buffer
			s, err := c.Build(&log)
			if err != nil {
				t.Fatal(err)
			}
			before := s.Agent.Policy
			err = s.FitOpenFiles(tt.soft)
			if tt.refusal != "" {
				if err == nil || err.Error() != tt.refusal {
					t.Fatalf("FitOpenFiles(%d) = %v\nwant %s", tt.soft, err, tt.refusal)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Agent.Policy == nil {
				if tt.sockets != 4096 {
					t.Fatalf("policy left default (4096 sockets), want %d", tt.sockets)
				}
			} else if got := s.Agent.Policy.MaxSockets; got != tt.sockets {
				t.Errorf("agent_limits.sockets %d, want %d", got, tt.sockets)
			}
			if before != nil && before.MaxSockets != 100 {
				t.Errorf("the loaded policy was modified: %d sockets", before.MaxSockets)
			}
			said := strings.Contains(log.String(), "agent_limits.sockets lowered to fit the open-file limit")
			if said != tt.lowered {
				t.Errorf("logged lowering %v, want %v:\n%s", said, tt.lowered, log.String())
			}
			if tt.lowered && !strings.Contains(log.String(), " sockets="+itoa(tt.sockets)+" ") {
				t.Errorf("log does not give sockets=%d:\n%s", tt.sockets, log.String())
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
