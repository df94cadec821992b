package metrics

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rpcMetrics are the gRPC server's metrics as go-grpc-middleware's Prometheus provider names
// them (grpc_server_started_total, _handled_total, _msg_received_total, _msg_sent_total and
// the grpc_server_handling_seconds histogram, by grpc_type, grpc_service, grpc_method and,
// handled, grpc_code), with the same help and counting rules, so dashboards built for it
// work. What differs is the cost: every method's series are made once, when the services are
// registered, so an RPC costs a map read and a few atomic adds instead of five label-value
// hashes and lookups (~1 µs an RPC, 5% of a Send+Recv). TestRPCMetricsAsProvider checks the
// two expose the same samples.
type rpcMetrics struct {
	started, handled, received, sent *prom.CounterVec
	seconds                          *prom.HistogramVec
	methods                          atomic.Pointer[map[string]*methodSeries] // by full method name
}

// methodSeries are one method's series.
type methodSeries struct {
	started, received, sent prom.Counter
	handled                 [codes.Unauthenticated + 1]prom.Counter // by code
	seconds                 prom.Observer
	// others and labels count a code gRPC does not define (a handler's own status).
	others *prom.CounterVec
	labels [3]string
}

var rpcLabels = []string{"grpc_type", "grpc_service", "grpc_method"}

func newRPCMetrics(buckets []float64) *rpcMetrics {
	return &rpcMetrics{
		started: prom.NewCounterVec(prom.CounterOpts{Name: "grpc_server_started_total",
			Help: "Total number of RPCs started on the server."}, rpcLabels),
		handled: prom.NewCounterVec(prom.CounterOpts{Name: "grpc_server_handled_total",
			Help: "Total number of RPCs completed on the server, regardless of success or failure."}, append(rpcLabels[:3:3], "grpc_code")),
		received: prom.NewCounterVec(prom.CounterOpts{Name: "grpc_server_msg_received_total",
			Help: "Total number of RPC stream messages received on the server."}, rpcLabels),
		sent: prom.NewCounterVec(prom.CounterOpts{Name: "grpc_server_msg_sent_total",
			Help: "Total number of gRPC stream messages sent by the server."}, rpcLabels),
		seconds: prom.NewHistogramVec(prom.HistogramOpts{Name: "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: buckets}, rpcLabels),
	}
}

// collectors are what the registry gathers.
func (r *rpcMetrics) collectors() []prom.Collector {
	return []prom.Collector{r.started, r.handled, r.received, r.sent, r.seconds}
}

// register makes the series of every method srv serves, at zero (every code of handled too).
func (r *rpcMetrics) register(srv *grpc.Server) {
	methods := map[string]*methodSeries{}
	for service, info := range srv.GetServiceInfo() {
		for _, m := range info.Methods {
			methods["/"+service+"/"+m.Name] = r.series(rpcType(m.IsClientStream, m.IsServerStream), service, m.Name)
		}
	}
	r.methods.Store(&methods)
}

func (r *rpcMetrics) series(typ, service, method string) *methodSeries {
	s := &methodSeries{
		others:   r.handled,
		labels:   [3]string{typ, service, method},
		started:  r.started.WithLabelValues(typ, service, method),
		received: r.received.WithLabelValues(typ, service, method),
		sent:     r.sent.WithLabelValues(typ, service, method),
		seconds:  r.seconds.WithLabelValues(typ, service, method),
	}
	for c := range s.handled {
		s.handled[c] = r.handled.WithLabelValues(typ, service, method, codes.Code(c).String())
	}
	return s
}

// of is the series of fullMethod ("/sockagent.v1.SocketService/Send"), made now for a method
// register did not see.
func (r *rpcMetrics) of(fullMethod, typ string) *methodSeries {
	if m := r.methods.Load(); m != nil {
		if s := (*m)[fullMethod]; s != nil {
			return s
		}
	}
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	return r.series(typ, service, method)
}

// done counts the end of an RPC that started at start and ended with err.
func (s *methodSeries) done(start time.Time, err error) {
	if code := codeOf(err); int(code) < len(s.handled) {
		s.handled[code].Inc()
	} else {
		s.others.WithLabelValues(s.labels[0], s.labels[1], s.labels[2], code.String()).Inc()
	}
	s.seconds.Observe(time.Since(start).Seconds())
}

// codeOf is err's code as the gRPC server sends it: context errors included.
func codeOf(err error) codes.Code {
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	return st.Code()
}

func rpcType(clientStream, serverStream bool) string {
	switch {
	case clientStream && serverStream:
		return "bidi_stream"
	case clientStream:
		return "client_stream"
	case serverStream:
		return "server_stream"
	}
	return "unary"
}

func (r *rpcMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	s := r.of(info.FullMethod, "unary")
	s.started.Inc()
	s.received.Inc()
	resp, err := handler(ctx, req)
	if err == nil {
		s.sent.Inc()
	}
	s.done(start, err)
	return resp, err
}

func (r *rpcMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	s := r.of(info.FullMethod, rpcType(info.IsClientStream, info.IsServerStream))
	s.started.Inc()
	err := handler(srv, &countedStream{ServerStream: ss, s: s})
	s.done(start, err)
	return err
}

// countedStream counts the messages a stream receives and sends.
type countedStream struct {
	grpc.ServerStream
	s *methodSeries
}

func (c *countedStream) RecvMsg(m any) error {
	err := c.ServerStream.RecvMsg(m)
	if err == nil {
		c.s.received.Inc()
	}
	return err
}

func (c *countedStream) SendMsg(m any) error {
	err := c.ServerStream.SendMsg(m)
	if err == nil {
		c.s.sent.Inc()
	}
	return err
}
