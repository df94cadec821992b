// Package metrics keeps an agent's Prometheus metrics: set agent.Config.Metrics to New, and
// serve Agent.MetricsHandler. It is a package of its own so that the programs that run agents
// without metrics (sockctl's local agents) do not link Prometheus: its packages initialise
// registries and collectors at every start of a program that links them, a millisecond of a
// one-shot sockctl command's few.
package metrics

import (
	"context"
	"errors"
	"net/http"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/internal/engine"
)

// metrics is what the agent tells Prometheus (Config.Metrics): the gRPC server's RPCs by
// method and code with latency histograms (named and counted as go-grpc-middleware's provider
// does: rpc.go), errors by reason, admission refusals by limit, probe and throughput results,
// and, read from the engine at each scrape, the sockets, traffic, sessions and served connections; Go runtime and process
// metrics too. Nothing is counted on the socket calls' path but what the engine already counts.
type metrics struct {
	reg        *prom.Registry
	grpc       *rpcMetrics
	errors     *prom.CounterVec // reason
	refusals   *prom.CounterVec // limit
	probes     *prom.CounterVec // mode, result
	probeRTT   *prom.HistogramVec
	throughput *prom.CounterVec // direction: bytes moved by Throughput tests
}

const metricsNamespace = "sockagent"

// rpcBuckets are the bounds of grpc_server_handling_seconds: from 100 µs (a local call) to a
// minute (a long blocking call).
var rpcBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// New makes the metrics of the agent src belongs to; agent.New calls it (Config.Metrics).
func New(src agent.MetricsSource) agent.MetricsRecorder {
	m := &metrics{
		reg:  prom.NewRegistry(),
		grpc: newRPCMetrics(rpcBuckets),
		errors: prom.NewCounterVec(prom.CounterOpts{Namespace: metricsNamespace, Name: "errors_total",
			Help: "RPCs that failed, by the ErrorInfo reason of their error (UNKNOWN when it has none)."}, []string{"reason"}),
		refusals: prom.NewCounterVec(prom.CounterOpts{Namespace: metricsNamespace, Name: "admission_refusals_total",
			Help: "Calls and connections refused because a limit was reached, by the limit named."}, []string{"limit"}),
		probes: prom.NewCounterVec(prom.CounterOpts{Namespace: metricsNamespace, Name: "probes_total",
			Help: "Probe RPCs by mode and result (ok: every sample answered; lossy: some did; failed: none did, or the RPC failed)."}, []string{"mode", "result"}),
		probeRTT: prom.NewHistogramVec(prom.HistogramOpts{Namespace: metricsNamespace, Name: "probe_rtt_seconds",
			Help:    "Round-trip (echo) or connect times of every Probe sample, by mode.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"mode"}),
		throughput: prom.NewCounterVec(prom.CounterOpts{Namespace: metricsNamespace, Name: "throughput_bytes_total",
			Help: "Bytes moved by Throughput tests, by direction (send: to a discard; receive: from a source)."}, []string{"direction"}),
	}
	m.reg.MustRegister(m.grpc.collectors()...)
	m.reg.MustRegister(m.errors, m.refusals, m.probes, m.probeRTT, m.throughput,
		&engineCollector{src: src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Interceptors are the metrics' gRPC interceptors, to run before the agent's own: every RPC
// is counted, the refused ones too.
func (m *metrics) Interceptors() ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		m.countError(err)
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		m.countError(err)
		return err
	}
	return []grpc.UnaryServerInterceptor{m.grpc.unary, unary},
		[]grpc.StreamServerInterceptor{m.grpc.stream, stream}
}

// countError counts a failed RPC by its reason, and a refusal by the limit it names.
func (m *metrics) countError(err error) {
	if err == nil {
		return
	}
	reason := "UNKNOWN"
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				reason = info.GetReason()
				if limit := info.GetMetadata()["limit"]; limit != "" {
					m.refusals.WithLabelValues(limit).Inc()
				}
			}
		}
	} else if errors.Is(err, context.Canceled) {
		reason = "CANCELLED"
	}
	m.errors.WithLabelValues(reason).Inc()
}

// Registered readies the per-method series of the server's services at zero.
func (m *metrics) Registered(srv *grpc.Server) { m.grpc.register(srv) }

// Refused counts a refusal made outside any RPC (a control connection, a served connection).
func (m *metrics) Refused(limit string) {
	m.refusals.WithLabelValues(limit).Inc()
}

// Probed records one Probe: its samples, and whether they were answered.
func (m *metrics) Probed(mode string, res engine.ProbeResult, err error) {
	switch {
	case err != nil || res.Received == 0:
		m.probes.WithLabelValues(mode, "failed").Inc()
	case res.Received < res.Sent:
		m.probes.WithLabelValues(mode, "lossy").Inc()
	default:
		m.probes.WithLabelValues(mode, "ok").Inc()
	}
	h := m.probeRTT.WithLabelValues(mode)
	for _, d := range res.Samples {
		h.Observe(d.Seconds())
	}
}

// Measured records the bytes one Throughput test moved.
func (m *metrics) Measured(receive bool, sum engine.ThroughputSummary) {
	dir := "send"
	if receive {
		dir = "receive"
	}
	m.throughput.WithLabelValues(dir).Add(float64(sum.Bytes))
}

// Handler serves the metrics in Prometheus's formats.
func (m *metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// engineCollector reads the engine at every scrape.
type engineCollector struct{ src agent.MetricsSource }

var (
	descSockets = prom.NewDesc(metricsNamespace+"_sockets", "Open sockets by network, kind and state.", []string{"network", "kind", "state"}, nil)
	descBytes   = prom.NewDesc(metricsNamespace+"_socket_bytes_total", "Bytes moved by the agent's sockets (Send, Recv, Attach; closed sockets included), by network and direction.", []string{"network", "direction"}, nil)
	descMsgs    = prom.NewDesc(metricsNamespace+"_socket_messages_total", "Datagrams (datagram sockets) or reads and writes (streams) of the agent's sockets, by network and direction.", []string{"network", "direction"}, nil)
	descSess    = prom.NewDesc(metricsNamespace+"_sessions", "Open sessions.", nil, nil)
	descConns   = prom.NewDesc(metricsNamespace+"_served_connections_total", "Connections (or UDP peers) served by a Serve behaviour, by behaviour.", []string{"behaviour"}, nil)
	descActive  = prom.NewDesc(metricsNamespace+"_served_connections_active", "Connections served now, by behaviour.", []string{"behaviour"}, nil)
	descSBytes  = prom.NewDesc(metricsNamespace+"_served_bytes_total", "Bytes moved by Serve behaviours, by behaviour and direction.", []string{"behaviour", "direction"}, nil)
	descSDgrams = prom.NewDesc(metricsNamespace+"_served_datagrams_total", "Datagrams moved by Serve behaviours, by behaviour and direction.", []string{"behaviour", "direction"}, nil)
	descSErrors = prom.NewDesc(metricsNamespace+"_served_errors_total", "Errors of Serve behaviours' connections, by behaviour.", []string{"behaviour"}, nil)
	descPConns  = prom.NewDesc(metricsNamespace+"_proxy_connections_total", "Client connections (or UDP peers) proxied to an upstream.", nil, nil)
	descPBytes  = prom.NewDesc(metricsNamespace+"_proxy_bytes_total", "Bytes proxies forwarded, by direction (upstream: from clients to the upstream).", []string{"direction"}, nil)
	descPDgrams = prom.NewDesc(metricsNamespace+"_proxy_datagrams_total", "Datagrams UDP proxies forwarded, by direction.", []string{"direction"}, nil)
	descPToxic  = prom.NewDesc(metricsNamespace+"_proxy_datagrams_impaired_total", "Datagrams UDP proxies' toxics dropped, duplicated or held back, by toxic.", []string{"toxic"}, nil)
	descPResets = prom.NewDesc(metricsNamespace+"_proxy_resets_total", "Proxied connection pairs a reset_peer toxic reset.", nil, nil)
	descPFails  = prom.NewDesc(metricsNamespace+"_proxy_upstream_failures_total", "Upstream connections proxies could not make (the client was reset or its datagram dropped).", nil, nil)
	descControl = prom.NewDesc(metricsNamespace+"_control_connections", "Control (gRPC) connections served, by whether they have made an authenticated RPC yet.", []string{"state"}, nil)
)

func (c *engineCollector) Describe(ch chan<- *prom.Desc) {
	for _, d := range []*prom.Desc{descSockets, descBytes, descMsgs, descSess, descConns, descActive, descSBytes, descSDgrams, descSErrors, descPConns, descPBytes, descPDgrams, descPToxic, descPResets, descPFails, descControl} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prom.Metric) {
	st := c.src.Stats()
	for k, n := range st.Sockets {
		ch <- prom.MustNewConstMetric(descSockets, prom.GaugeValue, float64(n), k.Network, k.Kind, k.State)
	}
	for nw, tr := range st.Traffic {
		ch <- prom.MustNewConstMetric(descBytes, prom.CounterValue, float64(tr.BytesIn), nw, "in")
		ch <- prom.MustNewConstMetric(descBytes, prom.CounterValue, float64(tr.BytesOut), nw, "out")
		ch <- prom.MustNewConstMetric(descMsgs, prom.CounterValue, float64(tr.MsgsIn), nw, "in")
		ch <- prom.MustNewConstMetric(descMsgs, prom.CounterValue, float64(tr.MsgsOut), nw, "out")
	}
	ch <- prom.MustNewConstMetric(descSess, prom.GaugeValue, float64(st.Sessions))
	for b, sv := range st.Served {
		ch <- prom.MustNewConstMetric(descConns, prom.CounterValue, float64(sv.Connections), b)
		ch <- prom.MustNewConstMetric(descActive, prom.GaugeValue, float64(sv.Active), b)
		ch <- prom.MustNewConstMetric(descSBytes, prom.CounterValue, float64(sv.BytesIn), b, "in")
		ch <- prom.MustNewConstMetric(descSBytes, prom.CounterValue, float64(sv.BytesOut), b, "out")
		ch <- prom.MustNewConstMetric(descSDgrams, prom.CounterValue, float64(sv.DatagramsIn), b, "in")
		ch <- prom.MustNewConstMetric(descSDgrams, prom.CounterValue, float64(sv.DatagramsOut), b, "out")
		ch <- prom.MustNewConstMetric(descSErrors, prom.CounterValue, float64(sv.Errors), b)
	}
	px := st.Proxy
	ch <- prom.MustNewConstMetric(descPConns, prom.CounterValue, float64(px.Connections))
	ch <- prom.MustNewConstMetric(descPBytes, prom.CounterValue, float64(px.BytesUpstream), "upstream")
	ch <- prom.MustNewConstMetric(descPBytes, prom.CounterValue, float64(px.BytesDownstream), "downstream")
	ch <- prom.MustNewConstMetric(descPDgrams, prom.CounterValue, float64(px.DatagramsUpstream), "upstream")
	ch <- prom.MustNewConstMetric(descPDgrams, prom.CounterValue, float64(px.DatagramsDownstream), "downstream")
	ch <- prom.MustNewConstMetric(descPToxic, prom.CounterValue, float64(px.DatagramsDropped), "loss")
	ch <- prom.MustNewConstMetric(descPToxic, prom.CounterValue, float64(px.DatagramsDuplicated), "duplicate")
	ch <- prom.MustNewConstMetric(descPToxic, prom.CounterValue, float64(px.DatagramsReordered), "reorder")
	ch <- prom.MustNewConstMetric(descPResets, prom.CounterValue, float64(px.Resets))
	ch <- prom.MustNewConstMetric(descPFails, prom.CounterValue, float64(px.UpstreamFailures))
	total, unauth := c.src.Connections()
	ch <- prom.MustNewConstMetric(descControl, prom.GaugeValue, float64(total-unauth), "authenticated")
	ch <- prom.MustNewConstMetric(descControl, prom.GaugeValue, float64(unauth), "unauthenticated")
}
