package daemon_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/daemon"
)

// TestMetricsListenRule: a non-loopback --metrics-listen needs authentication, as --listen
// does, with a message that says how to fix it.
func TestMetricsListenRule(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	for _, tc := range []struct {
		name string
		set  func(*daemon.Config)
		want string
	}{
		{"loopback", func(c *daemon.Config) { c.MetricsListen = "127.0.0.1:0" }, ""},
		{"wildcard without authentication", func(c *daemon.Config) { c.MetricsListen = "0.0.0.0:9700" },
			"refusing to serve metrics on 0.0.0.0:9700 without authentication"},
		{"wildcard with tokens", func(c *daemon.Config) { c.MetricsListen, c.TokenFile = "0.0.0.0:9700", f.tokens }, ""},
		{"wildcard with --insecure", func(c *daemon.Config) { c.MetricsListen, c.Insecure = "0.0.0.0:9700", true }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := daemon.DefaultConfig()
			tc.set(&c)
			s, err := c.Build(&bytes.Buffer{})
			if s != nil {
				defer s.Close()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Build: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Fix: --token-file")):
				t.Fatalf("Build: %v, want an error with %q and a fix", err, tc.want)
			case tc.want == "" && s.Agent.Metrics == nil:
				t.Fatal("metrics off in the agent's config with --metrics-listen given")
			}
		})
	}
}

// TestServeMetrics serves the metrics over HTTP on loopback, and over HTTPS with the agent's
// certificate, client certificate required (mTLS), and stops.
func TestServeMetrics(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	for _, tc := range []struct {
		name string
		set  func(*daemon.Config)
	}{
		{"http", func(c *daemon.Config) {}},
		{"mtls", func(c *daemon.Config) { c.TLSCert, c.TLSKey, c.ClientCA = f.pki.Agent, f.pki.AgentKey, f.pki.CA }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := daemon.DefaultConfig()
			c.MetricsListen, c.SocketDir = "127.0.0.1:0", filepath.Join(t.TempDir(), "sockets")
			tc.set(&c)
			s, err := c.Build(&bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.MakeSocketDir(); err != nil {
				t.Fatal(err)
			}
			a, err := agent.New(s.Agent)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			m, err := s.ServeMetrics(a)
			if err != nil {
				t.Fatal(err)
			}
			client, scheme := &http.Client{Timeout: 5 * time.Second}, "http"
			if c.TLSCert != "" {
				scheme = "https"
				pool := x509.NewCertPool()
				ca, err := os.ReadFile(f.pki.CA)
				if err != nil || !pool.AppendCertsFromPEM(ca) {
					t.Fatalf("CA: %v", err)
				}
				// Without a client certificate the handshake fails: mTLS as on --listen.
				noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
				if resp, err := noCert.Get(scheme + "://" + m.Addr().String() + "/metrics"); err == nil {
					resp.Body.Close()
					t.Fatalf("scrape without a client certificate: HTTP %d, want a refused handshake", resp.StatusCode)
				}
				cert, err := tls.LoadX509KeyPair(f.pki.Client, f.pki.ClientKey)
				if err != nil {
					t.Fatal(err)
				}
				client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost"}}
			}
			resp, err := client.Get(scheme + "://" + m.Addr().String() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "\nsockagent_sessions 0\n") {
				t.Fatalf("HTTP %d:\n%.2000s", resp.StatusCode, body)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := m.Shutdown(ctx); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			if _, err := client.Get(scheme + "://" + m.Addr().String() + "/metrics"); err == nil {
				t.Fatal("metrics still served after Shutdown")
			}
		})
	}
}
