package agent_test

import (
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Every socket the agent closes on its own (its session closed, idle) gets one audit line,
// message "reclaim", naming the socket, its owner, its session and why.
func TestAuditReclaim(t *testing.T) {
	t.Parallel()
	audit := newLogBuf()
	e := newSessEnv(t, agent.Config{IdleTimeout: 100 * time.Millisecond, AuditLogger: slog.New(slog.NewJSONHandler(audit, nil))})
	ctx := ctxT(t)
	s := e.open(t, ctx, time.Minute)
	sid := s.GetSessionId()
	inS := e.listenCtx(t, inSess(ctx, sid))
	if _, err := e.ss.CloseSession(ctx, &sockagentv1.CloseSessionRequest{SessionId: sid}); err != nil {
		t.Fatal(err)
	}
	idle := e.listenCtx(t, ctx)
	audit.waitFor(t, regexp.MustCompile(`"msg":"reclaim".*"socket":"`+idle.GetSocketId()+`"`))

	var got []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(audit.text()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line is not JSON: %q: %v", line, err)
		}
		if m["msg"] == "reclaim" {
			delete(m, "time")
			got = append(got, m)
		}
	}
	want := []map[string]any{
		{"level": "INFO", "msg": "reclaim", "audit": true, "socket": inS.GetSocketId(), "owner": "anonymous", "session": sid,
			"network": "tcp", "local": inS.GetLocalAddress(), "cause": "session_closed", "why": "session " + sid + " was closed"},
		{"level": "INFO", "msg": "reclaim", "audit": true, "socket": idle.GetSocketId(), "owner": "anonymous",
			"network": "tcp", "local": idle.GetLocalAddress(), "cause": "idle",
			"why": "idle for the agent's idle timeout (100ms); open sockets in a session to keep them"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d reclaim lines, want %d:\n%s", len(got), len(want), audit.text())
	}
	for i := range want {
		gb, _ := json.Marshal(got[i])
		wb, _ := json.Marshal(want[i])
		if string(gb) != string(wb) {
			t.Errorf("reclaim line %d:\n got %s\nwant %s", i, gb, wb)
		}
	}
}
