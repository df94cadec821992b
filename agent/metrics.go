package agent

import (
	"net/http"
	"strings"

	"google.golang.org/grpc"

	"github.com/sockagent/sockagent/agent/internal/engine"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// MetricsRecorder keeps an agent's metrics (Config.Metrics; package agent/metrics keeps them
// for Prometheus). Its methods run on the paths of RPCs and connections and must not block.
type MetricsRecorder interface {
	// Interceptors run before the agent's own, so that every RPC is counted, the refused ones
	// too.
	Interceptors() ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor)
	// Registered is called once the agent's services are registered on srv.
	Registered(srv *grpc.Server)
	// Refused counts a refusal made outside any RPC (a control connection, a served
	// connection), by the limit that refused it.
	Refused(limit string)
	// Probed records one Probe: its mode ("auto", "connect", "echo", "tls"), its samples,
	// and whether they were answered.
	Probed(mode string, res engine.ProbeResult, err error)
	// Measured records what one Throughput test moved.
	Measured(receive bool, sum engine.ThroughputSummary)
	// Handler serves the metrics; the agent's MetricsHandler puts its token check before it.
	Handler() http.Handler
}

// MetricsSource is what a MetricsRecorder reads from its agent at a scrape.
type MetricsSource struct {
	// Stats returns the engine's counts: sockets, traffic, sessions, served connections.
	Stats func() engine.AgentStats
	// Connections returns the control connections served, and those not yet authenticated.
	Connections func() (total, unauthenticated int)
}

// metrics is the agent's MetricsRecorder, nil when Config.Metrics is off: its methods then
// do nothing, so the paths that report need no test of their own.
type metrics struct{ r MetricsRecorder }

func newMetrics(a *Agent) *metrics {
	return &metrics{r: a.cfg.Metrics(MetricsSource{Stats: a.table.Stats, Connections: a.conns.counts})}
}

func (m *metrics) interceptors() ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	return m.r.Interceptors()
}

func (m *metrics) refused(limit string) {
	if m != nil {
		m.r.Refused(limit)
	}
}

func (m *metrics) probed(pm sockagentv1.ProbeMode, res engine.ProbeResult, err error) {
	if m == nil {
		return
	}
	mode := "auto" // by network: connect on streams, echo on datagrams
	if pm != sockagentv1.ProbeMode_PROBE_MODE_UNSPECIFIED {
		mode = strings.ToLower(strings.TrimPrefix(pm.String(), "PROBE_MODE_"))
	}
	m.r.Probed(mode, res, err)
}

func (m *metrics) measured(receive bool, sum engine.ThroughputSummary) {
	if m != nil {
		m.r.Measured(receive, sum)
	}
}

// MetricsHandler serves the agent's metrics (nil when Config.Metrics is off). With tokens
// (Config.Tokens), a scrape must carry "Authorization: Bearer SECRET" with one of them, as an
// RPC must; the caller's TLS, if any, is the listener's business.
func (a *Agent) MetricsHandler() http.Handler {
	if a.metrics == nil {
		return nil
	}
	h := a.metrics.r.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tokens := a.tokens.Current(); tokens != nil {
			secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if _, known := tokens.Match(secret); !ok || !known {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sockagent"`)
				http.Error(w, "sockagent metrics: give \"Authorization: Bearer TOKEN\" with a token of the agent's --token-file", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
