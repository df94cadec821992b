package engine

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/testpki"
	"github.com/sockagent/sockagent/agent/policy"
)

func wantArgErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	var ae *argError
	if !errors.As(err, &ae) || ae.reason != contract.ReasonInvalidArgument {
		t.Fatalf("error %v (%T), want INVALID_ARGUMENT", err, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q lacks %q", err, p)
		}
	}
}

// TestParseCertPool: the size bound holds at exactly maxPEMBytes, every block must be a
// certificate, nothing but PEM may follow, and at least one certificate is needed.
func TestParseCertPool(t *testing.T) {
	t.Parallel()
	ca, other := testpki.NewCA(t, "a"), testpki.NewCA(t, "b")
	two := append(append([]byte{}, ca.PEM...), other.PEM...)
	pool, err := parseCertPool("f", append(two, "\n  \n"...))
	if err != nil || len(pool.Subjects()) != 2 { //nolint:staticcheck // counting what was added
		t.Fatalf("two CAs: %v", err)
	}
	pad := func(n int) []byte {
		return append(append([]byte{}, ca.PEM...), bytes.Repeat([]byte("\n"), n-len(ca.PEM))...)
	}
	if _, err := parseCertPool("f", pad(maxPEMBytes)); err != nil {
		t.Errorf("exactly %d bytes: %v", maxPEMBytes, err)
	}
	_, err = parseCertPool("f", pad(maxPEMBytes+1))
	wantArgErr(t, err, "f: 65537 bytes, over the limit of 65536")
	key := ca.Server(t).KeyPEM
	_, err = parseCertPool("f", append(append([]byte{}, ca.PEM...), key...))
	wantArgErr(t, err, `f: PEM block 2 is a "PRIVATE KEY", not a CERTIFICATE`)
	_, err = parseCertPool("f", append(append([]byte{}, ca.PEM...), "junk"...))
	wantArgErr(t, err, "f: 4 bytes that are not a PEM block")
	_, err = parseCertPool("f", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	wantArgErr(t, err, "f: PEM block 1: x509: malformed certificate")
	_, err = parseCertPool("f", []byte("  \n"))
	wantArgErr(t, err, "f: no PEM CERTIFICATE block")
}

// TestParseKeyPair: both or neither, each bounded, each the right kind of block first, and
// the key matching the certificate; no message quotes the key.
func TestParseKeyPair(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "a")
	c, d := ca.Server(t), ca.Client(t, "x")
	if got, err := parseKeyPair("p.", c.CertPEM, c.KeyPEM); err != nil || got.Leaf == nil {
		t.Fatalf("good pair: %v", err)
	}
	big := bytes.Repeat([]byte("x"), maxPEMBytes+1)
	body := strings.Split(string(c.KeyPEM), "\n")[1]
	for _, tc := range []struct {
		cert, key []byte
		want      string
	}{
		{big, c.KeyPEM, "p.cert_pem: 65537 bytes"},
		{c.CertPEM, big, "p.key_pem: 65537 bytes"},
		{nil, c.KeyPEM, "p.key_pem given without p.cert_pem"},
		{c.CertPEM, nil, "p.cert_pem given without p.key_pem"},
		{c.KeyPEM, c.KeyPEM, "p.cert_pem: no PEM CERTIFICATE block first"},
		{c.CertPEM, c.CertPEM, "p.key_pem: no PEM PRIVATE KEY block first"},
		{c.CertPEM, d.KeyPEM, "p.cert_pem and p.key_pem: tls: private key does not match public key"},
		{c.CertPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "p.cert_pem and p.key_pem: tls: failed to parse private key"},
	} {
		_, err := parseKeyPair("p.", tc.cert, tc.key)
		wantArgErr(t, err, tc.want)
		if err != nil && strings.Contains(err.Error(), body) {
			t.Errorf("error quotes the key: %v", err)
		}
	}
	if got := keyPairMessage(errors.New(strings.Repeat("k", 300))); len(got) != 203 || !strings.HasSuffix(got, "...") {
		t.Errorf("a long message is kept to %d bytes: %q", len(got), got)
	}
	if got := keyPairMessage(errors.New(strings.Repeat("k", 200))); got != strings.Repeat("k", 200) {
		t.Errorf("a 200-byte message was cut: %q", got)
	}
}

func TestCheckALPNAndVersion(t *testing.T) {
	t.Parallel()
	many := make([]string, maxALPN)
	for i := range many {
		many[i] = "p"
	}
	if err := checkALPN("a", many); err != nil {
		t.Errorf("%d protocols: %v", maxALPN, err)
	}
	wantArgErr(t, checkALPN("a", append(many, "p")), "a: 17 protocols, at most 16")
	if err := checkALPN("a", []string{strings.Repeat("p", maxALPNLen)}); err != nil {
		t.Errorf("a 255-byte name: %v", err)
	}
	wantArgErr(t, checkALPN("a", []string{"h2", strings.Repeat("p", maxALPNLen+1)}), "a[1]: 256 bytes")
	wantArgErr(t, checkALPN("a", []string{""}), "a[0]: 0 bytes")
	for in, want := range map[uint16]uint16{0: tls.VersionTLS12, tls.VersionTLS10: tls.VersionTLS10, tls.VersionTLS11: tls.VersionTLS11, tls.VersionTLS12: tls.VersionTLS12, tls.VersionTLS13: tls.VersionTLS13} {
		if got, err := checkMinVersion("v", in); err != nil || got != want {
			t.Errorf("version %x: %x %v, want %x", in, got, err, want)
		}
	}
	_, err := checkMinVersion("v", 0x0305)
	wantArgErr(t, err, "v: version 0x0305 unknown")
	if tlsVersionName(0) != "none" || tlsVersionName(tls.VersionTLS13) != "TLS 1.3" {
		t.Errorf("version names %q %q", tlsVersionName(0), tlsVersionName(tls.VersionTLS13))
	}
}

func TestClientConfig(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "a")
	cli := ca.Client(t, "x")
	def := policy.Default().Default
	lax, err := policy.Parse("p", []byte("default:\n  tls: {insecure_skip_verify: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientConfig(def, "tcp", "db.lab:443", &TLSClient{RootCAsPEM: ca.PEM, CertPEM: cli.CertPEM, KeyPEM: cli.KeyPEM, ALPN: []string{"h2"}, MinVersion: tls.VersionTLS13})
	if err != nil || cfg.ServerName != "db.lab" || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.MinVersion != tls.VersionTLS13 || cfg.NextProtos[0] != "h2" || cfg.InsecureSkipVerify {
		t.Fatalf("client config %+v %v", cfg, err)
	}
	if cfg, err := clientConfig(def, "tcp", "[::1]:443", &TLSClient{ServerName: "given"}); err != nil || cfg.ServerName != "given" || cfg.RootCAs != nil || cfg.Certificates != nil || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("named: %+v %v", cfg, err)
	}
	_, err = clientConfig(def, "unix", "/run/x.sock", &TLSClient{})
	wantArgErr(t, err, "tls.server_name: needed to verify the server of a UNIX socket")
	var denied *policy.Denied
	if _, err := clientConfig(def, "tcp", "h:1", &TLSClient{InsecureSkipVerify: true}); !errors.As(err, &denied) {
		t.Errorf("insecure under the default policy: %v", err)
	}
	if cfg, err := clientConfig(lax.Default, "unix", "/run/x.sock", &TLSClient{InsecureSkipVerify: true}); err != nil || !cfg.InsecureSkipVerify {
		t.Errorf("insecure allowed, unix without a name: %+v %v", cfg, err)
	}
	if _, err := clientConfig(def, "tcp", "h:1", &TLSClient{ServerName: strings.Repeat("a", 253)}); err != nil {
		t.Errorf("a 253-byte name: %v", err)
	}
	_, err = clientConfig(def, "tcp", "h:1", &TLSClient{ServerName: strings.Repeat("a", 254)})
	wantArgErr(t, err, "tls.server_name: 254 bytes or unprintable")
	for _, bad := range []string{"a b", "a\x7fb", "é"} {
		_, err = clientConfig(def, "tcp", "h:1", &TLSClient{ServerName: bad})
		wantArgErr(t, err, "unprintable")
	}
	if _, err := clientConfig(def, "tcp", "h:1", &TLSClient{ServerName: "!~"}); err != nil {
		t.Errorf("printable edges: %v", err)
	}
	for _, tc := range []struct {
		c    *TLSClient
		want string
	}{
		{&TLSClient{MinVersion: 1}, "tls.min_version"},
		{&TLSClient{ALPN: []string{""}}, "tls.alpn[0]"},
		{&TLSClient{RootCAsPEM: []byte("x")}, "tls.root_cas_pem"},
		{&TLSClient{KeyPEM: cli.KeyPEM}, "tls.key_pem given without"},
	} {
		_, err := clientConfig(def, "tcp", "h:1", tc.c)
		wantArgErr(t, err, tc.want)
	}

}

func TestServerConfig(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "a")
	srv, cli := ca.Server(t), ca.Client(t, "x")
	scfg, err := serverConfig(&TLSServer{CertPEM: srv.CertPEM, KeyPEM: srv.KeyPEM, ClientCAPEM: ca.PEM, ALPN: []string{"x"}})
	if err != nil || scfg.ClientAuth != tls.RequireAndVerifyClientCert || scfg.ClientCAs == nil || scfg.MinVersion != tls.VersionTLS12 || len(scfg.Certificates) != 1 {
		t.Fatalf("server config %+v %v", scfg, err)
	}
	if scfg, err := serverConfig(&TLSServer{CertPEM: srv.CertPEM, KeyPEM: srv.KeyPEM}); err != nil || scfg.ClientAuth != tls.NoClientCert || scfg.ClientCAs != nil {
		t.Errorf("no client CA: %+v %v", scfg, err)
	}
	for _, tc := range []struct {
		s    *TLSServer
		want string
	}{
		{&TLSServer{KeyPEM: srv.KeyPEM}, "needs cert_pem and key_pem"},
		{&TLSServer{CertPEM: srv.CertPEM}, "needs cert_pem and key_pem"},
		{&TLSServer{CertPEM: srv.CertPEM, KeyPEM: cli.KeyPEM}, "tls.cert_pem and tls.key_pem"},
		{&TLSServer{CertPEM: srv.CertPEM, KeyPEM: srv.KeyPEM, MinVersion: 7}, "tls.min_version"},
		{&TLSServer{CertPEM: srv.CertPEM, KeyPEM: srv.KeyPEM, ALPN: []string{""}}, "tls.alpn[0]"},
		{&TLSServer{CertPEM: srv.CertPEM, KeyPEM: srv.KeyPEM, ClientCAPEM: []byte("x")}, "tls.client_ca_pem"},
	} {
		_, err := serverConfig(tc.s)
		wantArgErr(t, err, tc.want)
	}
	if (*TLSClient)(nil).pemBytes() != 0 || (&TLSClient{RootCAsPEM: []byte("ab"), CertPEM: []byte("c"), KeyPEM: []byte("de")}).pemBytes() != 5 {
		t.Error("pemBytes")
	}
}

// TestHandshakeErr: each kind of handshake failure gets its reason, and the message keeps the
// verifier's words.
func TestHandshakeErr(t *testing.T) {
	t.Parallel()
	timeout := &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		name   string
		err    error
		reason string
		msg    string
	}{
		{"timeout", timeout, contract.ReasonTimeout, "i/o timeout"},
		{"context deadline", context.DeadlineExceeded, contract.ReasonTimeout, ""},
		{"cancelled", context.Canceled, contract.ReasonCancelled, ""},
		{"closed", net.ErrClosed, contract.ReasonSocketClosed, ""},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, contract.ReasonConnectionReset, ""},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, contract.ReasonCertificateInvalid, "tls handshake: certificate refused: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{"bare unknown authority", x509.UnknownAuthorityError{}, contract.ReasonCertificateInvalid, "certificate refused"},
		{"expired", x509.CertificateInvalidError{Reason: x509.Expired}, contract.ReasonCertificateInvalid, "certificate refused: x509: certificate has expired"},
		{"name", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "db"}, contract.ReasonCertificateInvalid, "tls handshake: certificate refused: x509: certificate is not valid for any names, but wanted to match db"},
		{"our certificate refused", &net.OpError{Op: "remote error", Err: tls.AlertError(42)}, contract.ReasonCertificateInvalid, "certificate refused: the peer refused our certificate: remote error: tls: bad certificate"},
		{"unknown CA alert", tls.AlertError(48), contract.ReasonCertificateInvalid, "tls handshake: certificate refused: the peer refused our certificate: tls: unknown certificate authority"},
		{"no ALPN alert", tls.AlertError(120), contract.ReasonTLSHandshakeFailed, "tls handshake: tls: no application protocol"},
		{"hang-up", io.EOF, contract.ReasonTLSHandshakeFailed, "tls handshake: the peer closed the connection during the handshake (does it speak TLS?)"},
		{"not TLS", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, contract.ReasonTLSHandshakeFailed, "dial tcp h:1: tls handshake: tls: first record does not look like a TLS handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := handshakeErr(tc.err)
			op := &OpError{Op: "dial", Network: "tcp", Address: "h:1", Err: err}
			if got := Reason(op); got != tc.reason {
				t.Errorf("reason %s, want %s (%v)", got, tc.reason, err)
			}
			if !strings.HasPrefix(op.Error(), "dial tcp h:1: ") || !strings.Contains(op.Error(), tc.msg) {
				t.Errorf("message %q, want it to hold %q", op.Error(), tc.msg)
			}
		})
	}
	for _, a := range []tls.AlertError{42, 43, 44, 45, 46, 48} {
		if Reason(handshakeErr(a)) != contract.ReasonCertificateInvalid {
			t.Errorf("alert %d: want CERTIFICATE_INVALID", a)
		}
	}
	for _, a := range []tls.AlertError{40, 47, 49, 70, 41} {
		if Reason(handshakeErr(a)) != contract.ReasonTLSHandshakeFailed {
			t.Errorf("alert %d: want TLS_HANDSHAKE_FAILED", a)
		}
	}
	if handshakeErr(nil) != nil {
		t.Error("nil is no error")
	}
}

// tlsTable is a table whose caller may skip verification, and a context naming its caller.
func tlsTable(t *testing.T, timeout time.Duration) (*Table, context.Context) {
	t.Helper()
	p, err := policy.Parse("p", []byte("default:\n  tls: {insecure_skip_verify: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tb := newTable(timeout, 1<<20, p)
	t.Cleanup(tb.Stop)
	ctx, cancel := context.WithTimeout(WithCaller(context.Background(), Caller{ID: "c"}), 20*time.Second)
	t.Cleanup(cancel)
	return tb, ctx
}

// checkTLSInfos checks what TestTLSTable's listener, client and accepted socket show.
func checkTLSInfos(t *testing.T, lis, cli, acc *TLSInfo) {
	t.Helper()
	if lis == nil || !lis.Listener || lis.MinVersion != tls.VersionTLS13 || lis.CipherSuite != "" {
		t.Errorf("listener %+v", lis)
	}
	if cli == nil || cli.Version != tls.VersionTLS13 || cli.ALPN != "x/1" || cli.ServerName != "localhost" || cli.PeerSubject != "CN=sockagent,O=sockagent tests" ||
		cli.PeerIssuer != "CN=ca,O=sockagent tests" || cli.PeerNotAfter.IsZero() || cli.Listener || cli.MinVersion != tls.VersionTLS12 || cli.CipherSuite == "" {
		t.Errorf("client %+v", cli)
	}
	if acc == nil || acc.PeerSubject != "CN=alice,O=sockagent tests" || acc.ServerName != "localhost" || acc.MinVersion != tls.VersionTLS13 {
		t.Errorf("accepted %+v", acc)
	}
}

// TestTLSTable: through the engine's own calls, a TLS listener and a TLS client meet;
// GetSocket's view on both ends; bytes and an exact read; Shutdown read and write on a TLS
// socket; the handshake's timeout; Serve and Probe over TLS.
func TestTLSTable(t *testing.T) {
	t.Parallel()
	tb, ctx := tlsTable(t, 5*time.Second)
	ca, clientCA := testpki.NewCA(t, "ca"), testpki.NewCA(t, "client ca")
	srv, cli := ca.Server(t), clientCA.Client(t, "alice")
	l, err := tb.ListenTLS(ctx, "tcp", "127.0.0.1:0", "", &TLSServer{CertPEM: srv.CertPEM, KeyPEM: srv.KeyPEM, ClientCAPEM: clientCA.PEM, MinVersion: tls.VersionTLS13, ALPN: []string{"x/1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	type accepted struct {
		in  Info
		err error
	}
	ach := make(chan accepted, 1)
	go func() {
		in, err := tb.Accept(ctx, l.ID, 5*time.Second, "")
		ach <- accepted{in, err}
	}()
	d, err := tb.DialTLS(ctx, "tcp", l.Local, "", 5*time.Second, "", &TLSClient{RootCAsPEM: ca.PEM, ServerName: "localhost", CertPEM: cli.CertPEM, KeyPEM: cli.KeyPEM, ALPN: []string{"x/1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := <-ach
	if a.err != nil {
		t.Fatal(a.err)
	}
	checkTLSInfos(t, l.TLS, d.TLS, a.in.TLS)
	if _, err := tb.Send(ctx, d.ID, []byte("hello world"), 0); err != nil {
		t.Fatal(err)
	}
	if got, eof, err := tb.Recv(ctx, a.in.ID, 0, 11, 0); string(got) != "hello world" || eof || err != nil {
		t.Errorf("exact recv %q %v %v", got, eof, err)
	}
	if _, err := tb.Shutdown(ctx, a.in.ID, ShutRead); err != nil {
		t.Errorf("shutdown read: %v", err)
	}
	if in, err := tb.Shutdown(ctx, d.ID, ShutWrite); err != nil || in.State != StateWriteShut {
		t.Errorf("shutdown write: %v %v", in.State, err)
	}
	if _, err := tb.Send(ctx, d.ID, []byte("x"), 0); err == nil {
		t.Error("send after shutdown write succeeded")
	}
	if _, err := tb.Shutdown(ctx, a.in.ID, ShutWrite); err != nil {
		t.Errorf("shutdown write of the accepted side: %v", err)
	}
	if got, eof, err := tb.Recv(ctx, d.ID, 0, 0, time.Second); len(got) != 0 || !eof || err != nil {
		t.Errorf("client read after the peer's close_notify: %q %v %v; want eof", got, eof, err)
	}
	// The accepted side's Shutdown write sent the TCP FIN after close_notify: the TCP stream
	// under the client's TLS ends too (the client's read half is open: its EOF is the FIN).
	tb.mu.Lock()
	raw := tb.socks[d.ID].tls.raw
	tb.mu.Unlock()
	_ = raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	if rest, err := io.ReadAll(raw); err != nil || len(rest) != 0 {
		t.Errorf("TCP under the client after the accepted side's Shutdown write: %d bytes, %v; want EOF (the FIN)", len(rest), err)
	}
	for _, id := range []string{d.ID, a.in.ID} {
		if _, err := tb.Close(ctx, id); err != nil {
			t.Error(err)
		}
	}
	if _, err := tb.Close(ctx, l.ID); err != nil {
		t.Error(err)
	}
}

// TestTLSAcceptTimeout: Accept's timeout covers the handshake: a peer that connects and
// never speaks costs the timeout, no more, no less.
func TestTLSAcceptTimeout(t *testing.T) {
	t.Parallel()
	tb, ctx := tlsTable(t, 5*time.Second)
	srv := testpki.NewCA(t, "ca").Server(t)
	l, err := tb.ListenTLS(ctx, "tcp", "127.0.0.1:0", "", &TLSServer{CertPEM: srv.CertPEM, KeyPEM: srv.KeyPEM}, nil)
	if err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("tcp", l.Local)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()
	_, err = tb.Accept(ctx, l.ID, 200*time.Millisecond, "")
	if took := time.Since(start); Reason(err) != contract.ReasonTimeout || took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("silent peer: %v after %s; want TIMEOUT after 200ms", err, took)
	}

}

// TestTLSNoClientCertificate: a client without a certificate, where none is required: the
// accepted socket has no peer certificate to show.
func TestTLSNoClientCertificate(t *testing.T) {
	t.Parallel()
	tb, ctx := tlsTable(t, 5*time.Second)
	ca := testpki.NewCA(t, "ca")
	srv := ca.Server(t)
	type accepted struct {
		in  Info
		err error
	}
	ach := make(chan accepted, 1)
	nl, err := tb.ListenTLS(ctx, "tcp", "127.0.0.1:0", "", &TLSServer{CertPEM: srv.CertPEM, KeyPEM: srv.KeyPEM}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		in, err := tb.Accept(ctx, nl.ID, 5*time.Second, "")
		ach <- accepted{in, err}
	}()
	nd, err := tb.DialTLS(ctx, "tcp", nl.Local, "", 5*time.Second, "", &TLSClient{RootCAsPEM: ca.PEM, ServerName: "localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	na := <-ach
	if na.err != nil || na.in.TLS == nil || na.in.TLS.PeerSubject != "" || na.in.TLS.PeerIssuer != "" || !na.in.TLS.PeerNotAfter.IsZero() || na.in.TLS.Version != tls.VersionTLS13 {
		t.Errorf("accepted without a client certificate: %+v %v", na.in.TLS, na.err)
	}
	for _, id := range []string{nd.ID, na.in.ID, nl.ID} {
		if _, err := tb.Close(ctx, id); err != nil {
			t.Error(err)
		}
	}

}

// probeFromDeniedPort: a probe's local address is judged once bound, as a Dial's.
func probeFromDeniedPort(t *testing.T, ctx context.Context, target string, caPEM []byte) {
	t.Helper()
	strict, err := policy.Parse("p", []byte("default:\n  local: {deny: [{name: no ports, ports: [\"1-65535\"]}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	st := newTable(time.Second, 1<<20, strict)
	defer st.Stop()
	_, err = st.Probe(ctx, ProbeSpec{Network: "tcp", Address: target, Mode: ProbeTLS, Count: 2, Local: "127.0.0.1:0", TLS: &TLSClient{RootCAsPEM: caPEM, ServerName: "localhost"}})
	if Reason(err) != contract.ReasonPolicyDenied || !strings.Contains(err.Error(), `"no ports"`) {
		t.Errorf("probe from a denied local port: %v", err)
	}
}

// TestTLSServeProbe: Serve echoes over TLS, and Probe mode tls times handshakes against it,
// counts refused certificates, and judges its local address.
func TestTLSServeProbe(t *testing.T) {
	t.Parallel()
	tb, ctx := tlsTable(t, 5*time.Second)
	ca := testpki.NewCA(t, "ca")
	srv := ca.Server(t)
	e, err := tb.ListenTLS(ctx, "tcp", "127.0.0.1:0", "", &TLSServer{CertPEM: srv.CertPEM, KeyPEM: srv.KeyPEM}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Serve(ctx, e.ID, BehaviourEcho, 0, 0); err != nil {
		t.Fatal(err)
	}
	res, err := tb.Probe(ctx, ProbeSpec{Network: "tcp", Address: e.Local, Mode: ProbeTLS, Count: 5, TLS: &TLSClient{RootCAsPEM: ca.PEM, ServerName: "localhost"}})
	if err != nil || res.Received != 5 || len(res.Samples) != 5 || len(res.Errors) != 0 {
		t.Errorf("probe: %+v %v", res, err)
	}
	res, err = tb.Probe(ctx, ProbeSpec{Network: "tcp", Address: e.Local, Mode: ProbeTLS, Count: 3, TLS: &TLSClient{InsecureSkipVerify: true}})
	if err != nil || res.Received != 3 {
		t.Errorf("probe, insecure: %+v %v", res, err)
	}
	res, err = tb.Probe(ctx, ProbeSpec{Network: "tcp", Address: e.Local, Mode: ProbeTLS, Count: 2})
	if err != nil || res.Received != 0 || len(res.Errors) != 1 || res.Errors[0].Reason != contract.ReasonCertificateInvalid || res.Errors[0].Count != 2 {
		t.Errorf("probe with the system roots: %+v %v", res, err)
	}
	probeFromDeniedPort(t, ctx, e.Local, ca.PEM)
	c, err := tls.Dial("tcp", e.Local, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("echo me")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "echo me" {
		t.Errorf("echo %q %v", buf, err)
	}
	c.Close()
	// The listener counts the refused handshakes once its side of each has ended.
	for deadline := time.Now().Add(10 * time.Second); ; {
		in, err := tb.GetFor(ctx, e.ID)
		if err != nil || (in.Serving.Errors >= 2 && in.Serving.Active == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond) // polling interval; the counters decide
	}
	in, err := tb.Close(ctx, e.ID)
	if err != nil || in.Serving == nil || in.Serving.Connections != 12 || in.Serving.Errors != 2 || !strings.HasPrefix(in.Serving.LastError, "TLS_HANDSHAKE_FAILED: tls handshake: remote error: tls: bad certificate") {
		t.Errorf("served: %+v %v", in.Serving, err)
	}
}

// TestTLSDialChecks: a TLS Dial is refused before any socket for a datagram network, a bad
// field or a policy refusal, and a UNIX listener serves TLS too.
func TestTLSDialChecks(t *testing.T) {
	t.Parallel()
	tb, ctx := tlsTable(t, 5*time.Second)
	for _, tc := range []struct {
		network string
		cl      *TLSClient
		want    string
	}{
		{"udp", &TLSClient{}, "dial: tls needs a stream network (tcp, tcp4, tcp6, unix), not udp"},
		{"unixgram", &TLSClient{}, "not unixgram"},
		{"tcp", &TLSClient{ALPN: []string{""}}, "tls.alpn[0]"},
	} {
		addr := "127.0.0.1:1"
		if tc.network == "unixgram" {
			addr = "/nonexistent/x.sock"
		}
		_, err := tb.DialTLS(ctx, tc.network, addr, "", time.Second, "", tc.cl, nil)
		if err == nil || Reason(err) != contract.ReasonInvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %+v: %v, want %q", tc.network, tc.cl, err, tc.want)
		}
	}
	_, err := tb.ListenTLS(ctx, "udp", "127.0.0.1:0", "", &TLSServer{}, nil)
	if Reason(err) != contract.ReasonInvalidNetwork {
		t.Errorf("listen udp with tls: %v", err)
	}
	_, err = tb.ListenTLS(ctx, "tcp", "127.0.0.1:0", "", &TLSServer{}, nil)
	if Reason(err) != contract.ReasonInvalidArgument || !strings.Contains(err.Error(), "listen tcp 127.0.0.1:0: tls: a TLS listener needs") {
		t.Errorf("listen without a certificate: %v", err)
	}
	if _, err := tb.Probe(ctx, ProbeSpec{Network: "udp", Address: "127.0.0.1:1", Mode: ProbeTLS}); err == nil || !strings.Contains(err.Error(), "mode tls needs a tcp network, not udp") {
		t.Errorf("probe udp tls: %v", err)
	}
	if _, err := tb.Probe(ctx, ProbeSpec{Network: "tcp", Address: "127.0.0.1:1", Mode: ProbeEcho, TLS: &TLSClient{}}); err == nil || !strings.Contains(err.Error(), "tls given with mode echo") {
		t.Errorf("probe echo with tls: %v", err)
	}
	if _, err := tb.Probe(ctx, ProbeSpec{Network: "tcp", Address: "127.0.0.1:1", Mode: ProbeTLS, TLS: &TLSClient{MinVersion: 3}}); Reason(err) != contract.ReasonInvalidArgument {
		t.Errorf("probe bad version: %v", err)
	}
	if n := tb.Len(); n != 0 {
		t.Errorf("%d sockets left", n)
	}
	for m, want := range map[ProbeMode]string{ProbeAuto: "auto", ProbeConnect: "connect", ProbeEcho: "echo", ProbeTLS: "tls"} {
		if m.String() != want {
			t.Errorf("mode %d: %q", m, m.String())
		}
	}
	// A dial whose handshake fails leaves no socket and no budget behind.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Read(make([]byte, 1024))
			_, _ = c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	_, err = tb.DialTLS(ctx, "tcp", ln.Addr().String(), "", 5*time.Second, "", &TLSClient{InsecureSkipVerify: true}, nil)
	if Reason(err) != contract.ReasonTLSHandshakeFailed {
		t.Errorf("dial a plain server: %v", err)
	}
	if n, b := tb.Len(), tb.budget.sockets; n != 0 || b != 0 {
		t.Errorf("after a failed handshake: %d sockets, %d slots", n, b)
	}
}

// TestTLSCloseNotifyBounded: closing a TLS connection whose peer reads nothing (a pipe without
// a buffer: close_notify cannot be written) takes closeNotifyWait, not the 5 s crypto/tls
// would wait.
func TestTLSCloseNotifyBounded(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "ca")
	a, b := net.Pipe()
	srv := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLS(t)}})
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }() // then reads nothing
	cli := tls.Client(a, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st := &tlsState{conn: cli, raw: a}
	start := time.Now()
	_ = st.close()
	if took := time.Since(start); took < closeNotifyWait || took > time.Second {
		t.Errorf("close took %s; want %s, under a second", took, closeNotifyWait)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("the connection under it: %v, want closed", err)
	}
}
