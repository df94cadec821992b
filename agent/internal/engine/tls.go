package engine

// TLS on both ends: Dial (and Probe in mode tls) as a TLS client, Listen as a TLS server whose
// Accept, and whose served connections, complete the handshake before anything else.
//
// A TLS socket keeps its *tls.Conn as sock.conn, so every call that reads, writes or sets
// deadlines (Send, Recv and exact reads, Attach's pump, the serving behaviours) moves the
// decrypted stream without knowing; only what needs the socket under it goes through
// tlsState: Shutdown read (TLS has no half of that), the TCP FIN after close_notify, and
// closing without waiting on a peer that reads nothing.
//
// PEM inputs come from callers: each is bounded (maxPEMBytes), parsed once when the request
// arrives, and an error names the field and the block, never a byte of its content. Keys are
// kept only inside the tls.Config, never in an Info, a log line or an error text.

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

// TLS bounds.
const (
	// maxPEMBytes bounds each PEM field of a TLS request: a certificate chain of a dozen
	// certificates fits, a caller cannot make the agent parse megabytes.
	maxPEMBytes = contract.MaxPEMBytes
	// maxALPN and maxALPNLen bound the ALPN protocols of a request, as RFC 7301 bounds each.
	maxALPN    = 16
	maxALPNLen = 255
	// closeNotifyWait bounds how long closing a TLS socket waits to send close_notify: a peer
	// that reads nothing must not hold a Close (or the agent's Stop) for long.
	closeNotifyWait = 50 * time.Millisecond
	// defaultTLSMin is the lowest version accepted when a request names none.
	defaultTLSMin = tls.VersionTLS12
)

// TLSClient is what a Dial or a Probe asks of its TLS client (TlsClient in the API). Versions
// are crypto/tls's (tls.VersionTLS12); 0 means defaultTLSMin.
type TLSClient struct {
	ServerName                  string
	RootCAsPEM, CertPEM, KeyPEM []byte
	ALPN                        []string
	MinVersion                  uint16
	InsecureSkipVerify          bool
}

// TLSServer is what a Listen asks of its TLS server (TlsServer in the API).
type TLSServer struct {
	CertPEM, KeyPEM, ClientCAPEM []byte
	ALPN                         []string
	MinVersion                   uint16
}

// TLSInfo describes the TLS session of a socket (nothing of its keys).
type TLSInfo struct {
	Version      uint16 // tls.VersionTLS13, ...
	CipherSuite  string // IANA name
	ALPN         string
	PeerSubject  string
	PeerIssuer   string
	PeerNotAfter time.Time // zero without a peer certificate
	ServerName   string
	Listener     bool   // a TLS listener: only MinVersion is set besides
	MinVersion   uint16 // the lowest version the socket accepts
}

// tlsState is what a TLS socket keeps besides sock.conn (its *tls.Conn) or sock.ln.
type tlsState struct {
	conn   *tls.Conn   // a connected socket's TLS connection (= sock.conn)
	raw    net.Conn    // the connection under it
	server *tls.Config // a listener's configuration; nil on a connected socket
	min    uint16
	name   string // a client's server name, checked against the server's certificate
}

func (st *tlsState) info() *TLSInfo {
	if st.server != nil {
		return &TLSInfo{Listener: true, MinVersion: st.min}
	}
	cs := st.conn.ConnectionState()
	in := &TLSInfo{Version: cs.Version, CipherSuite: tls.CipherSuiteName(cs.CipherSuite), ALPN: cs.NegotiatedProtocol,
		ServerName: cmp.Or(st.name, cs.ServerName), MinVersion: st.min}
	if len(cs.PeerCertificates) > 0 {
		leaf := cs.PeerCertificates[0]
		in.PeerSubject, in.PeerIssuer, in.PeerNotAfter = leaf.Subject.String(), leaf.Issuer.String(), leaf.NotAfter
	}
	return in
}

// tlsHalf shuts down the halves of a TLS connection: write sends close_notify and then the
// TCP FIN (a peer that ignores close_notify still reads EOF); read shuts the socket under it.
type tlsHalf struct{ st *tlsState }

func (h tlsHalf) CloseWrite() error {
	if err := h.st.conn.CloseWrite(); err != nil {
		return err
	}
	if hc, ok := h.st.raw.(halfCloser); ok {
		return hc.CloseWrite()
	}
	return nil
}

func (h tlsHalf) CloseRead() error {
	if hc, ok := h.st.raw.(halfCloser); ok {
		return hc.CloseRead()
	}
	return &kindError{"socket cannot shut down its read half"}
}

// halves returns what shuts down s's halves: its connection, or for a TLS socket tlsHalf.
func (s *sock) halves() (halfCloser, bool) {
	if s.tls != nil && s.tls.conn != nil {
		return tlsHalf{s.tls}, true
	}
	hc, ok := s.conn.(halfCloser)
	return hc, ok
}

// close sends close_notify, waiting at most closeNotifyWait, and closes the connection under
// it.
func (st *tlsState) close() error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = st.conn.CloseWrite() // best effort; fails at once on a connection never shaken hands
	}()
	tm := time.NewTimer(closeNotifyWait)
	select {
	case <-done:
	case <-tm.C:
	}
	tm.Stop()
	err := st.raw.Close()
	<-done // the closed socket ends a close_notify still being written
	return err
}

// tlsError is a failed TLS handshake: TLS_HANDSHAKE_FAILED, or CERTIFICATE_INVALID when a
// certificate was refused (the verifier's message says why).
type tlsError struct {
	cert bool
	err  error
}

func (e *tlsError) Error() string {
	if e.cert {
		return "tls handshake: certificate refused: " + e.err.Error()
	}
	return "tls handshake: " + e.err.Error()
}

func (e *tlsError) Unwrap() error { return e.err }

// certAlerts are the alerts a peer sends when it refuses our certificate.
var certAlerts = map[tls.AlertError]bool{42: true, 43: true, 44: true, 45: true, 46: true, 48: true}

// handshakeErr classifies a failed handshake: timeouts, cancellation and OS errors keep their
// own reasons (TIMEOUT, CANCELLED, CONNECTION_RESET, ...); a refused certificate, ours or the
// peer's, is CERTIFICATE_INVALID; anything else TLS_HANDSHAKE_FAILED.
func handshakeErr(err error) error {
	var (
		errno   syscall.Errno
		verr    *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		host    x509.HostnameError
		alert   tls.AlertError
	)
	switch {
	case err == nil:
		return nil
	case isTimeout(err), errors.Is(err, context.Canceled), errors.Is(err, net.ErrClosed), errors.As(err, &errno):
		return err
	case errors.As(err, &verr), errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &host):
		return &tlsError{cert: true, err: err}
	case errors.As(err, &alert) && certAlerts[alert]:
		return &tlsError{cert: true, err: fmt.Errorf("the peer refused our certificate: %w", err)}
	case errors.Is(err, io.EOF):
		return &tlsError{err: errors.New("the peer closed the connection during the handshake (does it speak TLS?)")}
	}
	return &tlsError{err: err}
}

// handshake runs a TLS handshake on tc within deadline (and ctx), then clears the deadline;
// on failure it closes the connection.
func handshake(ctx context.Context, tc *tls.Conn, deadline time.Time) error {
	if err := tc.SetDeadline(deadline); err != nil {
		_ = tc.Close()
		return err
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		// A plain close, not a reset: the peer reads the alert that says why.
		_ = tc.NetConn().Close()
		return handshakeErr(err)
	}
	return tc.SetDeadline(time.Time{})
}

func tlsVersionName(v uint16) string {
	if v == 0 {
		return "none"
	}
	return tls.VersionName(v)
}

// checkTLSNetwork refuses TLS on a datagram network.
func checkTLSNetwork(op, network string) error {
	if contract.IsDatagram(network) {
		return badArg(contract.ReasonInvalidArgument, "%s: tls needs a stream network (tcp, tcp4, tcp6, unix), not %s", op, network)
	}
	return nil
}

// checkPEMSize bounds one PEM field.
func checkPEMSize(field string, b []byte) error {
	if len(b) > maxPEMBytes {
		return badArg(contract.ReasonInvalidArgument, "%s: %d bytes, over the limit of %d; give the certificates that are needed, PEM-encoded", field, len(b), maxPEMBytes)
	}
	return nil
}

// parseCertPool parses a field of PEM CERTIFICATE blocks into a pool; it names the field and
// the block that is wrong.
func parseCertPool(field string, b []byte) (*x509.CertPool, error) {
	if err := checkPEMSize(field, b); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	rest := b
	for i := 0; ; i++ {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, badArg(contract.ReasonInvalidArgument, "%s: PEM block %d is a %q, not a CERTIFICATE", field, i+1, blk.Type)
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, badArg(contract.ReasonInvalidArgument, "%s: PEM block %d: %v", field, i+1, err)
		}
		pool.AddCert(cert)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, badArg(contract.ReasonInvalidArgument, "%s: %d bytes that are not a PEM block (-----BEGIN CERTIFICATE-----)", field, len(strings.TrimSpace(string(rest))))
	}
	if len(pool.Subjects()) == 0 { //nolint:staticcheck // counting the certificates added, not using system roots
		return nil, badArg(contract.ReasonInvalidArgument, "%s: no PEM CERTIFICATE block", field)
	}
	return pool, nil
}

// parseKeyPair parses a certificate chain and its key. The messages crypto/tls gives say what
// is wrong without quoting the input; the key's bytes never reach an error.
func parseKeyPair(prefix string, certPEM, keyPEM []byte) (tls.Certificate, error) {
	if err := checkPEMSize(prefix+"cert_pem", certPEM); err != nil {
		return tls.Certificate{}, err
	}
	if err := checkPEMSize(prefix+"key_pem", keyPEM); err != nil {
		return tls.Certificate{}, err
	}
	switch {
	case len(certPEM) == 0 && len(keyPEM) > 0:
		return tls.Certificate{}, badArg(contract.ReasonInvalidArgument, "%skey_pem given without %scert_pem; give both or neither", prefix, prefix)
	case len(certPEM) > 0 && len(keyPEM) == 0:
		return tls.Certificate{}, badArg(contract.ReasonInvalidArgument, "%scert_pem given without %skey_pem; give both or neither", prefix, prefix)
	}
	if blk, _ := pem.Decode(certPEM); blk == nil || blk.Type != "CERTIFICATE" {
		return tls.Certificate{}, badArg(contract.ReasonInvalidArgument, "%scert_pem: no PEM CERTIFICATE block first", prefix)
	}
	if blk, _ := pem.Decode(keyPEM); blk == nil || !strings.HasSuffix(blk.Type, "PRIVATE KEY") {
		return tls.Certificate{}, badArg(contract.ReasonInvalidArgument, "%skey_pem: no PEM PRIVATE KEY block first", prefix)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, badArg(contract.ReasonInvalidArgument, "%scert_pem and %skey_pem: %v", prefix, prefix, keyPairMessage(err))
	}
	return cert, nil
}

// keyPairMessage is crypto/tls's message about a key pair, which never quotes the input; a
// message of unexpected length is cut, so a future one cannot carry key material.
func keyPairMessage(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

func checkALPN(field string, protos []string) error {
	if len(protos) > maxALPN {
		return badArg(contract.ReasonInvalidArgument, "%s: %d protocols, at most %d", field, len(protos), maxALPN)
	}
	for i, p := range protos {
		if len(p) == 0 || len(p) > maxALPNLen {
			return badArg(contract.ReasonInvalidArgument, "%s[%d]: %d bytes; a protocol name is 1 to %d bytes (h2, http/1.1)", field, i, len(p), maxALPNLen)
		}
	}
	return nil
}

func checkMinVersion(field string, v uint16) (uint16, error) {
	switch v {
	case 0:
		return defaultTLSMin, nil
	case tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13:
		return v, nil
	}
	return 0, badArg(contract.ReasonInvalidArgument, "%s: version 0x%04x unknown; use TLS 1.0 to 1.3", field, v)
}

// clientConfig checks a TLS client request and builds its configuration, once: server_name
// defaults to the host of address (an IP address is then checked against IP SANs).
func clientConfig(set *policy.RuleSet, network, address string, c *TLSClient) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: c.ServerName, NextProtos: c.ALPN, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.InsecureSkipVerify {
		if err := set.CheckInsecureSkipVerify(); err != nil {
			return nil, err
		}
	}
	if cfg.ServerName == "" && !contract.IsUnix(network) {
		cfg.ServerName, _, _ = net.SplitHostPort(address)
	}
	if cfg.ServerName == "" && !c.InsecureSkipVerify {
		return nil, badArg(contract.ReasonInvalidArgument, "tls.server_name: needed to verify the server of a UNIX socket; give the name its certificate carries")
	}
	if len(cfg.ServerName) > 253 || strings.ContainsFunc(cfg.ServerName, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return nil, badArg(contract.ReasonInvalidArgument, "tls.server_name: %d bytes or unprintable; give a host name or IP address", len(cfg.ServerName))
	}
	var err error
	if cfg.MinVersion, err = checkMinVersion("tls.min_version", c.MinVersion); err != nil {
		return nil, err
	}
	if err := checkALPN("tls.alpn", c.ALPN); err != nil {
		return nil, err
	}
	if len(c.RootCAsPEM) > 0 {
		if cfg.RootCAs, err = parseCertPool("tls.root_cas_pem", c.RootCAsPEM); err != nil {
			return nil, err
		}
	}
	if len(c.CertPEM) > 0 || len(c.KeyPEM) > 0 {
		cert, err := parseKeyPair("tls.", c.CertPEM, c.KeyPEM)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// serverConfig checks a TLS server request and builds its configuration, once.
func serverConfig(c *TLSServer) (*tls.Config, error) {
	if len(c.CertPEM) == 0 || len(c.KeyPEM) == 0 {
		return nil, badArg(contract.ReasonInvalidArgument, "tls: a TLS listener needs cert_pem and key_pem")
	}
	cert, err := parseKeyPair("tls.", c.CertPEM, c.KeyPEM)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: c.ALPN}
	if cfg.MinVersion, err = checkMinVersion("tls.min_version", c.MinVersion); err != nil {
		return nil, err
	}
	if err := checkALPN("tls.alpn", c.ALPN); err != nil {
		return nil, err
	}
	if len(c.ClientCAPEM) > 0 {
		if cfg.ClientCAs, err = parseCertPool("tls.client_ca_pem", c.ClientCAPEM); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// pemBytes is what a TLS request's PEM fields hold while the call runs (admitted as buffered
// bytes).
func (c *TLSClient) pemBytes() int {
	if c == nil {
		return 0
	}
	return len(c.RootCAsPEM) + len(c.CertPEM) + len(c.KeyPEM)
}

// ListenTLS opens a stream listener that serves TLS: Accept, and Serve's connections,
// complete the handshake first. A repeated requestID returns the first result.
func (t *Table) ListenTLS(ctx context.Context, network, address, requestID string, srv *TLSServer, o *Options) (Info, error) {
	return t.idempotent(ctx, "Listen", requestID, func() (Info, error) {
		if srv == nil {
			return t.listen(ctx, network, address, o, nil)
		}
		wrap := func(err error) error { return &OpError{Op: "listen", Network: network, Address: address, Err: err} }
		if err := checkNetwork(contract.OpListen, network); err != nil {
			return Info{}, err
		}
		if err := checkTLSNetwork("listen", network); err != nil {
			return Info{}, wrap(err)
		}
		cfg, err := serverConfig(srv)
		if err != nil {
			return Info{}, wrap(err)
		}
		return t.listen(ctx, network, address, o, &tlsState{server: cfg, min: cfg.MinVersion})
	})
}

// DialTLS opens a connected TLS socket: connect and handshake both within timeout. A repeated
// requestID returns the first result.
func (t *Table) DialTLS(ctx context.Context, network, address, local string, timeout time.Duration, requestID string, cl *TLSClient, o *Options) (Info, error) {
	return t.idempotent(ctx, "Dial", requestID, func() (Info, error) { return t.dial(ctx, network, address, local, timeout, o, cl) })
}

// dialTLSConfig checks a Dial's TLS request (nil: none) before any budget is taken.
func dialTLSConfig(set *policy.RuleSet, network, address string, cl *TLSClient) (*tls.Config, error) {
	if cl == nil {
		return nil, nil
	}
	if err := checkTLSNetwork("dial", network); err != nil {
		return nil, err
	}
	return clientConfig(set, network, address, cl)
}

// clientHandshake makes conn a TLS client connection, its handshake done by deadline.
func clientHandshake(ctx context.Context, conn net.Conn, cfg *tls.Config, deadline time.Time) (*tlsState, error) {
	tc := tls.Client(conn, cfg)
	if err := handshake(ctx, tc, deadline); err != nil {
		return nil, err
	}
	return &tlsState{conn: tc, raw: conn, min: cfg.MinVersion, name: cfg.ServerName}, nil
}

// serverHandshake makes conn, accepted on a TLS listener, a TLS server connection, its
// handshake done by deadline.
func serverHandshake(ctx context.Context, conn net.Conn, lst *tlsState, deadline time.Time) (*tlsState, error) {
	tc := tls.Server(conn, lst.server)
	if err := handshake(ctx, tc, deadline); err != nil {
		return nil, err
	}
	return &tlsState{conn: tc, raw: conn, min: lst.min}, nil
}

// deadlineRecorder wraps a deadline setter, remembering the last deadline set, so that a
// handshake after an Accept ends when the Accept's own timeout does.
type deadlineRecorder struct {
	setter func(time.Time) error
	last   atomic.Int64 // UnixNano
}

func (r *deadlineRecorder) set(d time.Time) error {
	r.last.Store(d.UnixNano())
	return r.setter(d)
}

func (r *deadlineRecorder) deadline() time.Time { return time.Unix(0, r.last.Load()) }

// tlsProbeConfig checks a Probe's TLS request: only mode tls takes one, and mode tls makes
// one of nil (system roots, server name from the address).
func tlsProbeConfig(set *policy.RuleSet, sp *ProbeSpec) (*tls.Config, error) {
	if sp.Mode != ProbeTLS {
		return nil, nil
	}
	cl := sp.TLS
	if cl == nil {
		cl = &TLSClient{}
	}
	return clientConfig(set, sp.Network, sp.Address, cl)
}

// tlsOnce times one TCP connect and TLS handshake, then resets the connection.
func (p *prober) tlsOnce(ctx context.Context, deadline time.Time) (time.Duration, error) {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	t0 := time.Now()
	c, err := p.dialer.DialContext(dctx, p.sp.Network, p.raddr.String())
	if err != nil {
		return 0, err
	}
	p.res.Local = c.LocalAddr().String()
	if p.sp.Local != "" {
		if err := checkBound(p.set, c.LocalAddr()); err != nil {
			resetClose(c)
			return 0, err
		}
	}
	tc := tls.Client(c, p.tls)
	if err := handshake(dctx, tc, deadline); err != nil {
		return 0, err
	}
	rtt := time.Since(t0)
	resetClose(c)
	return rtt, nil
}
