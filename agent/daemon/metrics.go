package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sockagent/sockagent/agent"
)

// metricsRefusal is the error of a non-loopback --metrics-listen that nobody must
// authenticate to: the metrics name the agent's callers, sockets and peers.
func metricsRefusal(addr string) error {
	return fmt.Errorf("refusing to serve metrics on %s without authentication: they name the agent's callers, sockets and peers.\n"+
		"Fix: --token-file F (scrapes then send \"Authorization: Bearer TOKEN\"), --tls-cert F --tls-key F --client-ca F (mTLS),\n"+
		"or --metrics-listen on loopback (127.0.0.1:9700), or --insecure to accept the risk", addr)
}

// MetricsServer serves the agent's Prometheus metrics over HTTP, or HTTPS with the agent's
// TLS settings (--tls-cert, and --client-ca for client certificates), on --metrics-listen.
type MetricsServer struct {
	srv  *http.Server
	lis  net.Listener
	done chan error
}

// ServeMetrics starts serving a's metrics on --metrics-listen; nil when the flag is empty. A
// non-loopback address needs the same authentication as --listen: tokens, mTLS, or
// --insecure. Stop it with Shutdown.
func (s *Setup) ServeMetrics(a *agent.Agent) (*MetricsServer, error) {
	addr := s.Config.MetricsListen
	h := a.MetricsHandler()
	if addr == "" || h == nil {
		return nil, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w; choose another address", addr, err)
	}
	if !s.Config.authenticated() && !s.Config.Insecure && !isLoopback(lis.Addr()) {
		lis.Close()
		return nil, metricsRefusal(addr + " (" + lis.Addr().String() + ")")
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	m := &MetricsServer{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
			ErrorLog: nil},
		lis: lis, done: make(chan error, 1),
	}
	if s.Agent.TLS != nil {
		cfg := s.Agent.TLS.Clone()
		cfg.NextProtos = []string{"h2", "http/1.1"}
		m.lis = tls.NewListener(lis, cfg)
	}
	s.Logger.Info("serving metrics", "addr", lis.Addr().String(), "path", "/metrics", "tls", s.Agent.TLS != nil)
	go func() { m.done <- m.srv.Serve(m.lis) }()
	return m, nil
}

// Addr is where the metrics are served.
func (m *MetricsServer) Addr() net.Addr { return m.lis.Addr() }

// Shutdown stops serving metrics, letting scrapes in progress finish until ctx ends.
func (m *MetricsServer) Shutdown(ctx context.Context) error {
	if m == nil {
		return nil
	}
	err := m.srv.Shutdown(ctx)
	if serr := <-m.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
