package agent

import (
	"log/slog"
	"testing"
)

// rpcLevel: audited RPCs and refused credentials at INFO, everything else at DEBUG.
func TestRPCLevel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		audit bool
		auth  string
		want  slog.Level
	}{
		{true, "", slog.LevelInfo},
		{false, "token revoked", slog.LevelInfo},
		{true, "token revoked", slog.LevelInfo},
		{false, "", slog.LevelDebug},
	} {
		if got := rpcLevel(tc.audit, tc.auth); got != tc.want {
			t.Errorf("rpcLevel(%v, %q) = %s, want %s", tc.audit, tc.auth, got, tc.want)
		}
	}
}
