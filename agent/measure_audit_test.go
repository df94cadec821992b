package agent_test

import (
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Serve, Probe and Throughput open sockets or send on the caller's behalf: each gets an audit
// line naming the socket or the target.
func TestMeasureAudited(t *testing.T) {
	t.Parallel()
	audit := newLogBuf()
	e := newEnvWith(t, agent.Config{AuditLogger: slog.New(slog.NewJSONHandler(audit, nil))})
	ctx := ctxT(t)
	echo := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, echo.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	discard := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, discard.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_DISCARD, 0, 0)
	audit.waitFor(t, regexp.MustCompile(`"msg":"audit","rpc":"Serve","caller":"anonymous",.*"audit":true,"socket":"`+
		echo.GetSocketId()+`","network":"tcp","local":"`+regexp.QuoteMeta(echo.GetLocalAddress())+`","code":"OK"`))

	e.probe(t, &sockagentv1.ProbeRequest{Network: "tcp", Address: echo.GetLocalAddress(), Mode: sockagentv1.ProbeMode_PROBE_MODE_ECHO, Count: 3})
	audit.waitFor(t, regexp.MustCompile(`"msg":"audit","rpc":"Probe","caller":"anonymous",.*"audit":true,"network":"tcp","remote":"`+
		regexp.QuoteMeta(echo.GetLocalAddress())+`","code":"OK"`))

	if _, _, err := tputRun(ctx, t, e, &sockagentv1.ThroughputRequest{Network: "tcp", Address: discard.GetLocalAddress(),
		Duration: durationpb.New(50 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	audit.waitFor(t, regexp.MustCompile(`"msg":"audit","rpc":"Throughput","caller":"anonymous",.*"audit":true,"network":"tcp","remote":"`+
		regexp.QuoteMeta(discard.GetLocalAddress())+`","code":"OK"`))
	for _, id := range []string{echo.GetSocketId(), discard.GetSocketId()} {
		if _, err := e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err != nil {
			t.Fatal(err)
		}
	}
}
