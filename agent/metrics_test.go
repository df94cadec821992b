package agent_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/metrics"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// scrape gets the agent's metrics as Prometheus would, with the bearer token if any.
func scrape(t *testing.T, h http.Handler, token string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// sample is the value of the sample of name with exactly these labels (-1 when absent).
func sample(t *testing.T, text, name string, labels map[string]string) float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// TestMetrics: after a known exchange, the scrape shows exactly what happened: sockets by
// kind and state, bytes both ways (kept when the sockets close), RPCs by method and code,
// errors by reason, refusals by limit, probe samples; the names pass Prometheus' linter.
func TestMetrics(t *testing.T) {
	e := newEnvWith(t, agent.Config{Metrics: metrics.New})
	h := e.a.MetricsHandler()
	if h == nil {
		t.Fatal("MetricsHandler is nil with Metrics on")
	}
	ln := e.listen(t, "tcp", "127.0.0.1:0")
	cli := e.dial(t, "tcp", ln.GetLocalAddress())
	srv := e.accept(t, ln.GetSocketId())
	e.send(t, cli.GetSocketId(), "hello")
	if got := e.recvExact(t, srv.GetSocketId(), 5); got != "hello" {
		t.Fatalf("recv %q", got)
	}
	_, err := e.sc.Recv(ctxT(t), &sockagentv1.RecvRequest{SocketId: "s000000-99"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("recv on an unknown socket: %v, want NotFound", err)
	}
	e.probe(t, &sockagentv1.ProbeRequest{Network: "tcp", Address: ln.GetLocalAddress(), Count: 3, Interval: dur(time.Millisecond)})

	code, text := scrape(t, h, "")
	if code != http.StatusOK {
		t.Fatalf("scrape: HTTP %d\n%s", code, text)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sockagent_sockets", map[string]string{"network": "tcp", "kind": "listener", "state": "open"}, 1},
		{"sockagent_sockets", map[string]string{"network": "tcp", "kind": "stream", "state": "open"}, 2},
		{"sockagent_socket_bytes_total", map[string]string{"network": "tcp", "direction": "out"}, 5},
		{"sockagent_socket_bytes_total", map[string]string{"network": "tcp", "direction": "in"}, 5},
		{"sockagent_sessions", map[string]string{}, 0},
		{"sockagent_errors_total", map[string]string{"reason": "UNKNOWN_SOCKET"}, 1},
		{"grpc_server_handled_total", map[string]string{"grpc_type": "unary", "grpc_service": "sockagent.v1.SocketService", "grpc_method": "Send", "grpc_code": "OK"}, 1},
		{"grpc_server_handled_total", map[string]string{"grpc_type": "unary", "grpc_service": "sockagent.v1.SocketService", "grpc_method": "Recv", "grpc_code": "NotFound"}, 1},
		{"grpc_server_handled_total", map[string]string{"grpc_type": "unary", "grpc_service": "sockagent.v1.SocketService", "grpc_method": "Recv", "grpc_code": "OK"}, 1},
		{"grpc_server_handling_seconds", map[string]string{"grpc_type": "unary", "grpc_service": "sockagent.v1.SocketService", "grpc_method": "Send"}, 1},
		{"sockagent_probes_total", map[string]string{"mode": "auto", "result": "ok"}, 1},
		{"sockagent_probe_rtt_seconds", map[string]string{"mode": "auto"}, 3},
		{"sockagent_control_connections", map[string]string{"state": "authenticated"}, 1},
	} {
		if got := sample(t, text, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_open_fds"} {
		if !strings.Contains(text, "\n"+name+" ") {
			t.Errorf("no %s in the scrape", name)
		}
	}
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	// Closed sockets' bytes stay counted: counters never go back.
	for _, id := range []string{cli.GetSocketId(), srv.GetSocketId()} {
		if _, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: id}); err != nil {
			t.Fatal(err)
		}
	}
	_, text = scrape(t, h, "")
	if got := sample(t, text, "sockagent_socket_bytes_total", map[string]string{"network": "tcp", "direction": "out"}); got != 5 {
		t.Errorf("after close, bytes out = %v, want 5", got)
	}
	if got := sample(t, text, "sockagent_sockets", map[string]string{"network": "tcp", "kind": "stream", "state": "open"}); got != -1 {
		t.Errorf("after close, open streams = %v, want none", got)
	}
}

// TestMetricsOff: without Config.Metrics there is no handler.
func TestMetricsOff(t *testing.T) {
	e := newEnv(t)
	if e.a.MetricsHandler() != nil {
		t.Fatal("MetricsHandler is not nil with Metrics off")
	}
}

// TestMetricsTokens: with tokens, a scrape needs one, as an RPC does.
func TestMetricsTokens(t *testing.T) {
	tokens, err := agent.ParseTokens(strings.NewReader("prom:s3cret-token-for-metrics\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Metrics: metrics.New, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	h := a.MetricsHandler()
	for _, c := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"wrong", http.StatusUnauthorized}, {"s3cret-token-for-metrics", http.StatusOK}} {
		if code, body := scrape(t, h, c.token); code != c.want {
			t.Errorf("token %q: HTTP %d, want %d (%s)", c.token, code, c.want, body)
		}
	}
	if _, body := scrape(t, h, ""); !strings.Contains(body, "Authorization: Bearer TOKEN") {
		t.Errorf("refusal %q does not say what to send", body)
	}
}

// TestMetricsRefusals: a call refused at a limit is counted by the limit it names.
func TestMetricsRefusals(t *testing.T) {
	pol, err := policy.Parse("p.yaml", []byte("default: {limits: {sockets: 1}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, agent.Config{Metrics: metrics.New, Policy: pol})
	e.listen(t, "tcp", "127.0.0.1:0")
	for range 2 {
		_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("second socket: %v, want ResourceExhausted", err)
		}
	}
	_, text := scrape(t, e.a.MetricsHandler(), "")
	if got := sample(t, text, "sockagent_admission_refusals_total", map[string]string{"limit": "limits.sockets"}); got != 2 {
		t.Errorf("refusals at limits.sockets = %v, want 2\n%s", got, grepLines(text, "refusals"))
	}
	if got := sample(t, text, "sockagent_errors_total", map[string]string{"reason": "LIMIT_EXCEEDED"}); got != 2 {
		t.Errorf("LIMIT_EXCEEDED errors = %v, want 2", got)
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMetricsServed: a served connection's bytes are counted by behaviour, and stay counted
// once the served socket closes.
func TestMetricsServed(t *testing.T) {
	e := newEnvWith(t, agent.Config{Metrics: metrics.New})
	ln := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, ln.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	c := dialT(t, "tcp", ln.GetLocalAddress())
	if _, err := c.Write([]byte("ping!!")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping!!" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	c.Close()
	e.waitServing(t, ln.GetSocketId(), "the connection ended", func(s *sockagentv1.Serving) bool {
		return s.GetActiveConnections() == 0 && s.GetConnections() == 1 && s.GetBytesOut() == 6
	})
	check := func(when string) {
		t.Helper()
		_, text := scrape(t, e.a.MetricsHandler(), "")
		for _, c := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"sockagent_served_connections_total", map[string]string{"behaviour": "echo"}, 1},
			{"sockagent_served_bytes_total", map[string]string{"behaviour": "echo", "direction": "in"}, 6},
			{"sockagent_served_bytes_total", map[string]string{"behaviour": "echo", "direction": "out"}, 6},
		} {
			if got := sample(t, text, c.name, c.labels); got != c.want {
				t.Errorf("%s: %s%v = %v, want %v", when, c.name, c.labels, got, c.want)
			}
		}
	}
	check("while served")
	if _, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: ln.GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	check("after close")
}

// TestGetInfoLabels: the agent reports the labels it was configured with; invalid ones are
// refused at New.
func TestGetInfoLabels(t *testing.T) {
	e := newEnvWith(t, agent.Config{Labels: map[string]string{"zone": "a", "role": "web"}})
	info, err := e.ac.GetInfo(ctxT(t), &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := info.GetLabels(); len(got) != 2 || got["zone"] != "a" || got["role"] != "web" {
		t.Fatalf("labels %v, want zone=a role=web", got)
	}
	if _, err := agent.New(agent.Config{Labels: map[string]string{"bad key": "x"}}); err == nil || !strings.Contains(err.Error(), `label key "bad key"`) {
		t.Fatalf("New with a bad label: %v", err)
	}
}
