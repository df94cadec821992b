package agent_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/agent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/metadata"
)

// rpcLines counts the lines of a JSON log by msg and rpc: "rpc Recv" -> 3.
func rpcLines(t *testing.T, text string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		n[fmt.Sprintf("%v %v", m["msg"], m["rpc"])]++
	}
	return n
}

// At the default level (INFO) the log has a line for each audited RPC and none for the
// calls that change nothing (Recv, GetSocket, ListSockets, GetInfo); the audit log has the
// audited lines, whatever the log's level. At DEBUG every RPC has its line.
func TestRPCLinesAtDebug(t *testing.T) {
	t.Parallel()
	const rounds = 20
	for _, tc := range []struct {
		level     slog.Level
		wantReads int // lines per read-only RPC
	}{{slog.LevelInfo, 0}, {slog.LevelDebug, rounds}} {
		t.Run(tc.level.String(), func(t *testing.T) {
			t.Parallel()
			logs, audit := newLogBuf(), newLogBuf()
			e := newEnvWith(t, agent.Config{
				Logger:      slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: tc.level})),
				AuditLogger: slog.New(slog.NewJSONHandler(audit, nil)),
			})
			ctx := ctxT(t)
			lis := e.listen(t, "tcp", "127.0.0.1:0")
			cli := e.dial(t, "tcp", lis.GetLocalAddress())
			srv := e.accept(t, lis.GetSocketId())
			for range rounds {
				e.send(t, cli.GetSocketId(), "ping")
				if got := e.recvExact(t, srv.GetSocketId(), 4); got != "ping" {
					t.Fatalf("recv: %q", got)
				}
				if _, err := e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: srv.GetSocketId()}); err != nil {
					t.Fatal(err)
				}
				if _, err := e.sc.ListSockets(ctx, &sockagentv1.ListSocketsRequest{}); err != nil {
					t.Fatal(err)
				}
				if _, err := e.ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			for _, id := range []string{srv.GetSocketId(), cli.GetSocketId(), lis.GetSocketId()} {
				if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err != nil {
					t.Fatal(err)
				}
			}
			audited := map[string]int{"Listen": 1, "Dial": 1, "Accept": 1, "Send": rounds, "Close": 3}
			reads := []string{"Recv", "GetSocket", "ListSockets", "GetInfo"}
			got, gotAudit := rpcLines(t, logs.text()), rpcLines(t, audit.text())
			for rpc, n := range audited {
				if got["rpc "+rpc] != n || gotAudit["audit "+rpc] != n {
					t.Errorf("%s: %d lines in the log, %d in the audit log; want %d in each", rpc, got["rpc "+rpc], gotAudit["audit "+rpc], n)
				}
			}
			for _, rpc := range reads {
				if got["rpc "+rpc] != tc.wantReads || gotAudit["audit "+rpc] != 0 {
					t.Errorf("%s: %d lines in the log, %d in the audit log; want %d and 0", rpc, got["rpc "+rpc], gotAudit["audit "+rpc], tc.wantReads)
				}
			}
			total := 0
			for k, n := range got {
				if strings.HasPrefix(k, "rpc ") {
					total += n
				}
			}
			if want := 6 + rounds + len(reads)*tc.wantReads; total != want {
				t.Errorf("%d rpc lines in the log, want %d:\n%s", total, want, logs.text())
			}
		})
	}
}

// A call refused for its credentials is logged at INFO, whatever the RPC: who was turned
// away matters at the default level; the same call with a valid token is not.
func TestRefusedCallLoggedAtInfo(t *testing.T) {
	t.Parallel()
	tokens, err := agent.ParseTokens(strings.NewReader("alice:alice-secret-0123456789\n"))
	if err != nil {
		t.Fatal(err)
	}
	logs := newLogBuf()
	e := newEnvWith(t, agent.Config{Tokens: tokens, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	_, err = e.ac.GetInfo(ctxT(t), &sockagentv1.GetInfoRequest{})
	wantUnauthenticated(t, err)
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer alice-secret-0123456789")
	if _, err := e.ac.GetInfo(ctx, &sockagentv1.GetInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	got := rpcLines(t, logs.text())
	if got["rpc GetInfo"] != 1 || !strings.Contains(logs.text(), `"level":"INFO","msg":"rpc","rpc":"GetInfo"`) || !strings.Contains(logs.text(), `"code":"Unauthenticated"`) {
		t.Errorf("want one INFO line, the refused call's:\n%s", logs.text())
	}
}
