package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/ctl/pki"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// tlsRow alternates rounds of Probe mode tls with rounds of a plain Go TLS client loop (dial,
// handshake, close with a reset), both against one agent-served TLS echo with the same CA,
// server name and suites. A round's rate is its handshakes over its wall time; the row
// compares the medians of the rounds' rates. Short rounds, many of them: on a shared machine
// a burst of other work then spoils a round or two, not one side's whole figure.
func tlsRow(ctx context.Context, e *env) result {
	rounds, per := e.iterations(30, 2), e.iterations(50, 50)
	var r result
	srv, ca, err := benchCerts()
	if err != nil {
		r.err, r.baseErr = err, err
		return r
	}
	addr, closeEcho, err := e.serveTLS(ctx, srv)
	if err != nil {
		r.err, r.baseErr = err, err
		return r
	}
	defer closeEcho()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	var ours, base []float64
	runBase := func() {
		if r.baseErr == nil {
			var rate float64
			if rate, r.baseErr = goHandshakes(ctx, addr, cfg, per); r.baseErr == nil {
				base = append(base, rate)
			}
		}
	}
	runOurs := func() {
		if r.err != nil {
			return
		}
		p, err := e.mc.Probe(ctx, &sockagentv1.ProbeRequest{
			Network: "tcp", Address: addr, Mode: sockagentv1.ProbeMode_PROBE_MODE_TLS, Count: uint32(per),
			Timeout: durationpb.New(5 * time.Second), Tls: &sockagentv1.TlsClient{RootCasPem: ca.CertPEM, ServerName: "localhost"},
		})
		switch {
		case err != nil:
			r.err = rpcErr("Probe", err)
		case p.GetReceived() != uint32(per):
			r.err = fmt.Errorf("probe: %d of %d handshakes succeeded; errors: %v", p.GetReceived(), per, p.GetErrors())
		default:
			ours = append(ours, float64(per)/p.GetElapsed().AsDuration().Seconds())
		}
	}
	for i := range rounds { // the order alternates too: neither side always runs on a warmer cache
		if i%2 == 0 {
			runBase()
			runOurs()
		} else {
			runOurs()
			runBase()
		}
	}
	r.value, r.base = median(ours), median(base)
	return r
}

// benchCerts makes a CA and a server certificate for localhost, in memory.
func benchCerts() (*pki.KeyPair, *pki.CA, error) {
	now := time.Now()
	ca, err := pki.NewCA(pki.Spec{CommonName: "sockbench CA", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		return nil, nil, err
	}
	srv, err := ca.Issue(pki.Spec{CommonName: "sockbench", DNSNames: []string{"localhost"}, Server: true, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		return nil, nil, err
	}
	return srv, ca, nil
}

// serveTLS listens with TLS on the agent and serves an echo; the function closes it.
func (e *env) serveTLS(ctx context.Context, srv *pki.KeyPair) (string, func(), error) {
	l, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0",
		Tls: &sockagentv1.TlsServer{CertPem: srv.CertPEM, KeyPem: srv.KeyPEM}})
	if err != nil {
		return "", nil, rpcErr("Listen", err)
	}
	id := l.GetSocket().GetSocketId()
	if _, err := e.sc.Serve(ctx, &sockagentv1.ServeRequest{SocketId: id, Behaviour: sockagentv1.Behaviour_BEHAVIOUR_ECHO}); err != nil {
		e.closeSocket(id)
		return "", nil, rpcErr("Serve", err)
	}
	return l.GetSocket().GetLocalAddress(), func() { e.closeSocket(id) }, nil
}

// goHandshakes runs n TCP connects and TLS handshakes back to back, each connection closed
// with a reset as Probe closes its own, and returns the handshakes per second.
func goHandshakes(ctx context.Context, addr string, cfg *tls.Config, n int) (float64, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	start := time.Now()
	for range n {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return 0, err
		}
		tc := tls.Client(c, cfg)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		err = tc.HandshakeContext(ctx)
		resetClose(c)
		if err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
