package agent_test

// TLS on both ends against Go peers of the test: Dial as a TLS client, Listen/Accept and Serve
// as a TLS server, Probe mode tls, and every way a handshake fails.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/testpki"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/prototext"
)

// goTLSServer serves TLS on 127.0.0.1:0 with cfg, running handle for each connection (in its
// own goroutine); it stops, and waits for its handlers, when the test ends.
func goTLSServer(t *testing.T, cfg *tls.Config, handle func(c *tls.Conn)) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return servePeer(t, ln, func(c net.Conn) { handle(c.(*tls.Conn)) })
}

// servePeer accepts on ln until the test ends, running handle for each connection.
func servePeer(t *testing.T, ln net.Listener, handle func(c net.Conn)) string {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func (e *env) dialTLS(t *testing.T, address string, cl *sockagentv1.TlsClient) *sockagentv1.Socket {
	t.Helper()
	r, err := e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: address, Timeout: dur(5 * time.Second), Tls: cl})
	if err != nil {
		t.Fatalf("dial tls %s: %v", address, err)
	}
	e.closeAtEnd(t, r.GetSocket().GetSocketId())
	return r.GetSocket()
}

func (e *env) listenTLS(t *testing.T, srv *sockagentv1.TlsServer) *sockagentv1.Socket {
	t.Helper()
	r, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", Tls: srv})
	if err != nil {
		t.Fatalf("listen tls: %v", err)
	}
	e.closeAtEnd(t, r.GetSocket().GetSocketId())
	return r.GetSocket()
}

// TestTLSDialStream: the agent dials a Go TLS server; Send, exact Recv across records,
// GetSocket's TLS view, Shutdown write (close_notify, then EOF) and the peer's close.
func TestTLSDialStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca := testpki.NewCA(t, "test CA")
	srvCert := ca.Server(t)
	got := make(chan []byte, 1)
	addr := goTLSServer(t, &tls.Config{Certificates: []tls.Certificate{srvCert.TLS(t)}, NextProtos: []string{"sock/1"}}, func(c *tls.Conn) {
		b := make([]byte, 5)
		if _, err := io.ReadFull(c, b); err != nil {
			got <- nil
			return
		}
		// Two records for one exact read of 11 bytes.
		_, _ = c.Write([]byte("from "))
		_, _ = c.Write([]byte("server"))
		rest, err := io.ReadAll(c) // until close_notify
		if err != nil {
			rest = append(rest, []byte(" err:"+err.Error())...)
		}
		got <- append(b, rest...)
	})
	s := e.dialTLS(t, addr, &sockagentv1.TlsClient{RootCasPem: ca.PEM, Alpn: []string{"sock/1"}})
	ti := s.GetTls()
	leaf := srvCert.TLS(t).Leaf
	if ti.GetVersion() != sockagentv1.TlsVersion_TLS_VERSION_1_3 || ti.GetCipherSuite() == "" || !strings.HasPrefix(ti.GetCipherSuite(), "TLS_") ||
		ti.GetAlpn() != "sock/1" || ti.GetPeerSubject() != "CN=sockagent,O=sockagent tests" || ti.GetPeerIssuer() != "CN=test CA,O=sockagent tests" ||
		!ti.GetPeerNotAfter().AsTime().Equal(leaf.NotAfter) || ti.GetServerName() != "127.0.0.1" || ti.GetListener() ||
		ti.GetMinVersion() != sockagentv1.TlsVersion_TLS_VERSION_1_2 {
		t.Errorf("tls info %v", ti)
	}
	id := s.GetSocketId()
	e.send(t, id, "hello")
	if d := e.recvExact(t, id, 11); d != "from server" {
		t.Errorf("exact recv %q, want %q", d, "from server")
	}
	e.send(t, id, " and bye")
	if _, err := e.sc.Shutdown(ctxT(t), &sockagentv1.ShutdownRequest{SocketId: id, Direction: sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_WRITE}); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "hello and bye" {
		t.Errorf("server read %q, want %q then a clean EOF", b, "hello and bye")
	}
	r, err := e.sc.Recv(ctxT(t), &sockagentv1.RecvRequest{SocketId: id, Timeout: dur(5 * time.Second)})
	if err != nil || !r.GetEof() || len(r.GetData()) != 0 {
		t.Errorf("recv after the server closed: %v %v; want eof", r, err)
	}
	gs, err := e.sc.GetSocket(ctxT(t), &sockagentv1.GetSocketRequest{SocketId: id})
	if err != nil || gs.GetSocket().GetBytesSent() != 13 || gs.GetSocket().GetBytesReceived() != 11 || gs.GetSocket().GetState() != sockagentv1.SocketState_SOCKET_STATE_WRITE_SHUT {
		t.Errorf("get: %v %v; want 13 bytes sent, 11 received, write shut", gs, err)
	}
}

// TestTLSDialCertificateInvalid: a certificate the verifier refuses is CERTIFICATE_INVALID
// with the verifier's words; a peer that does not speak TLS is TLS_HANDSHAKE_FAILED.
func TestTLSDialCertificateInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca, other := testpki.NewCA(t, "test CA"), testpki.NewCA(t, "other CA")
	good := ca.Server(t).TLS(t)
	expired := ca.Issue(t, testpki.Options{CN: "old", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true,
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}).TLS(t)
	serve := func(cert tls.Certificate) string {
		return goTLSServer(t, &tls.Config{Certificates: []tls.Certificate{cert}}, func(c *tls.Conn) { _ = c.Handshake() })
	}
	goodAddr := serve(good)
	plain := servePeer(t, mustListen(t), func(c net.Conn) {
		_, _ = c.Read(make([]byte, 512))
		_, _ = c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
	})
	hangup := servePeer(t, mustListen(t), func(c net.Conn) { _, _ = c.Read(make([]byte, 4096)) })
	reset := servePeer(t, mustListen(t), func(c net.Conn) {
		_, _ = c.Read(make([]byte, 4096))
		_ = c.(*net.TCPConn).SetLinger(0)
	})
	for _, tc := range []struct {
		name, addr string
		cl         *sockagentv1.TlsClient
		reason     string
		msg        []string
	}{
		{"wrong CA", goodAddr, &sockagentv1.TlsClient{RootCasPem: other.PEM}, contract.ReasonCertificateInvalid,
			[]string{"dial tcp " + goodAddr + ": tls handshake: certificate refused:", "x509: certificate signed by unknown authority"}},
		{"expired", serve(expired), &sockagentv1.TlsClient{RootCasPem: ca.PEM}, contract.ReasonCertificateInvalid,
			[]string{"certificate refused", "x509: certificate has expired or is not yet valid"}},
		{"name mismatch", goodAddr, &sockagentv1.TlsClient{RootCasPem: ca.PEM, ServerName: "db.example"}, contract.ReasonCertificateInvalid,
			[]string{"certificate refused", "x509: certificate is valid for localhost, not db.example"}},
		{"no common ALPN", goTLSServer(t, &tls.Config{Certificates: []tls.Certificate{good}, NextProtos: []string{"h2"}}, func(c *tls.Conn) { _ = c.Handshake() }),
			&sockagentv1.TlsClient{RootCasPem: ca.PEM, Alpn: []string{"sock/1"}}, contract.ReasonTLSHandshakeFailed,
			[]string{"tls handshake: remote error: tls: no application protocol"}},
		{"plain TCP peer", plain, &sockagentv1.TlsClient{RootCasPem: ca.PEM}, contract.ReasonTLSHandshakeFailed,
			[]string{"tls handshake: tls: first record does not look like a TLS handshake"}},
		{"peer hangs up", hangup, &sockagentv1.TlsClient{RootCasPem: ca.PEM}, contract.ReasonTLSHandshakeFailed,
			[]string{"tls handshake: the peer closed the connection during the handshake (does it speak TLS?)"}},
		// An OS error keeps its own reason.
		{"peer resets", reset, &sockagentv1.TlsClient{RootCasPem: ca.PEM}, contract.ReasonConnectionReset, []string{"connection reset by peer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: tc.addr, Timeout: dur(5 * time.Second), Tls: tc.cl})
			code := codes.Unavailable
			if tc.reason == contract.ReasonConnectionReset {
				code = codes.Aborted
			}
			wantStatus(t, err, code, tc.reason, tc.msg...)
		})
	}
	if n := e.a.NumSockets(); n != 0 {
		t.Errorf("%d sockets left after failed handshakes", n)
	}
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestTLSDialTimeoutCoversHandshake: a server that accepts and never answers the ClientHello
// makes Dial fail with TIMEOUT at its timeout, not later.
func TestTLSDialTimeoutCoversHandshake(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca := testpki.NewCA(t, "test CA")
	release := make(chan struct{})
	addr := servePeer(t, mustListen(t), func(c net.Conn) { <-release })
	t.Cleanup(func() { close(release) })
	const timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: addr, Timeout: dur(timeout), Tls: &sockagentv1.TlsClient{RootCasPem: ca.PEM}})
	took := time.Since(start)
	wantStatus(t, err, codes.DeadlineExceeded, contract.ReasonTimeout)
	if took < timeout || took > timeout+time.Second {
		t.Errorf("dial took %s; want the timeout %s (and under a second more)", took, timeout)
	}
}

// TestTLSListenAccept: a Go TLS client (with a client certificate the listener requires)
// connects; Accept returns the socket with its TLS view, and bytes go both ways.
func TestTLSListenAccept(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca, clientCA := testpki.NewCA(t, "test CA"), testpki.NewCA(t, "client CA")
	srv := ca.Server(t)
	l := e.listenTLS(t, &sockagentv1.TlsServer{CertPem: srv.CertPEM, KeyPem: srv.KeyPEM, ClientCaPem: clientCA.PEM, Alpn: []string{"sock/1"}, MinVersion: sockagentv1.TlsVersion_TLS_VERSION_1_3})
	if ti := l.GetTls(); !ti.GetListener() || ti.GetMinVersion() != sockagentv1.TlsVersion_TLS_VERSION_1_3 || ti.GetCipherSuite() != "" {
		t.Errorf("listener tls %v; want listener, min 1.3, nothing negotiated", ti)
	}
	cli := clientCA.Client(t, "alice").TLS(t)
	done := make(chan string, 1)
	go func() {
		c, err := tls.Dial("tcp", l.GetLocalAddress(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{cli}, NextProtos: []string{"sock/1"}})
		if err != nil {
			done <- "dial: " + err.Error()
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			done <- "write: " + err.Error()
			return
		}
		b, err := io.ReadAll(c)
		done <- string(b) + errText(err)
	}()
	a := e.accept(t, l.GetSocketId())
	ti := a.GetTls()
	if ti.GetVersion() != sockagentv1.TlsVersion_TLS_VERSION_1_3 || ti.GetAlpn() != "sock/1" || ti.GetServerName() != "localhost" ||
		ti.GetPeerSubject() != "CN=alice,O=sockagent tests" || ti.GetPeerIssuer() != "CN=client CA,O=sockagent tests" || ti.GetListener() {
		t.Errorf("accepted tls %v", ti)
	}
	if d := e.recvExact(t, a.GetSocketId(), 4); d != "ping" {
		t.Errorf("recv %q", d)
	}
	e.send(t, a.GetSocketId(), "pong")
	if _, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: a.GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got != "pong" {
		t.Errorf("client read %q, want %q then a clean close", got, "pong")
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return " err: " + err.Error()
}

// TestTLSAcceptFailures: Accept's timeout covers a peer that connects and never sends a
// ClientHello (both bounds); a plain-TCP client and a client certificate of another CA fail
// the Accept with their reasons; the listener keeps accepting.
func TestTLSAcceptFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca, clientCA, other := testpki.NewCA(t, "test CA"), testpki.NewCA(t, "client CA"), testpki.NewCA(t, "other CA")
	srv := ca.Server(t)
	l := e.listenTLS(t, &sockagentv1.TlsServer{CertPem: srv.CertPEM, KeyPem: srv.KeyPEM, ClientCaPem: clientCA.PEM})
	id, addr := l.GetSocketId(), l.GetLocalAddress()

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	start := time.Now()
	_, err = e.sc.Accept(ctxT(t), &sockagentv1.AcceptRequest{SocketId: id, Timeout: dur(timeout)})
	took := time.Since(start)
	wantStatus(t, err, codes.DeadlineExceeded, contract.ReasonTimeout)
	if took < timeout || took > timeout+time.Second {
		t.Errorf("accept took %s; want its timeout %s (and under a second more)", took, timeout)
	}
	// The agent closed the silent connection: its peer reads EOF (or a reset) at once.
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := silent.Read(make([]byte, 1)); n != 0 || err == nil || isTimeoutErr(err) {
		t.Errorf("silent peer read %d, %v; want the connection closed", n, err)
	}
	silent.Close()

	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_, err = e.sc.Accept(ctxT(t), &sockagentv1.AcceptRequest{SocketId: id, Timeout: dur(5 * time.Second)})
	wantStatus(t, err, codes.Unavailable, contract.ReasonTLSHandshakeFailed, "accept "+id, "tls handshake: tls: first record does not look like a TLS handshake")

	wrong := other.Client(t, "mallory").TLS(t)
	cerr := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost",
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &wrong, nil }})
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1)) // TLS 1.3: the server's refusal comes after the client's Finished
			c.Close()
		}
		cerr <- err
	}()
	_, err = e.sc.Accept(ctxT(t), &sockagentv1.AcceptRequest{SocketId: id, Timeout: dur(5 * time.Second)})
	wantStatus(t, err, codes.Unavailable, contract.ReasonCertificateInvalid, "certificate refused", "x509: certificate signed by unknown authority")
	if err := <-cerr; err == nil || !strings.Contains(err.Error(), "tls: unknown certificate authority") {
		t.Errorf("client with the wrong CA: %v; want the server's alert", err)
	}
	if n := e.a.NumSockets(); n != 1 {
		t.Errorf("%d sockets, want only the listener", n)
	}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestTLSServeAndProbe: an echo served on a TLS listener handshakes each connection; Probe
// mode tls times connect + handshake against it, and counts a plain listener's failures.
func TestTLSServeAndProbe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca := testpki.NewCA(t, "test CA")
	srv := ca.Server(t)
	l := e.listenTLS(t, &sockagentv1.TlsServer{CertPem: srv.CertPEM, KeyPem: srv.KeyPEM})
	e.serve(t, l.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	c, err := tls.Dial("tcp", l.GetLocalAddress(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB: several records each way
	go func() { _, _ = c.Write(msg) }()
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, msg) {
		t.Errorf("echo over TLS: %v, equal %v", err, bytes.Equal(back, msg))
	}
	c.Close()

	const count = 20
	res := e.probe(t, &sockagentv1.ProbeRequest{Network: "tcp", Address: l.GetLocalAddress(), Mode: sockagentv1.ProbeMode_PROBE_MODE_TLS, Count: count,
		Tls: &sockagentv1.TlsClient{RootCasPem: ca.PEM, ServerName: "localhost"}})
	wantClean(t, res, count)
	if p50 := res.GetRtt().GetP50().AsDuration(); p50 > time.Second {
		t.Errorf("handshake p50 %s", p50)
	}
	// Served connections: the echo's and the probe's handshakes.
	e.waitSocket(t, l.GetSocketId(), "1+20 connections served, none active", func(s *sockagentv1.Socket) bool {
		return s.GetServing().GetConnections() == count+1 && s.GetServing().GetActiveConnections() == 0
	})

	plain := e.listen(t, "tcp", "127.0.0.1:0")
	e.serve(t, plain.GetSocketId(), sockagentv1.Behaviour_BEHAVIOUR_ECHO, 0, 0)
	res = e.probe(t, &sockagentv1.ProbeRequest{Network: "tcp", Address: plain.GetLocalAddress(), Mode: sockagentv1.ProbeMode_PROBE_MODE_TLS, Count: 3,
		Timeout: dur(2 * time.Second), Tls: &sockagentv1.TlsClient{RootCasPem: ca.PEM, ServerName: "localhost"}})
	wantErrors(t, res, 3, contract.ReasonTLSHandshakeFailed)

	res = e.probe(t, &sockagentv1.ProbeRequest{Network: "tcp", Address: l.GetLocalAddress(), Mode: sockagentv1.ProbeMode_PROBE_MODE_TLS, Count: 2})
	wantErrors(t, res, 2, contract.ReasonCertificateInvalid) // the system roots do not know the test CA

	// A handshake the served listener refuses counts in its errors.
	if s := e.waitSocket(t, l.GetSocketId(), "errors counted", func(s *sockagentv1.Socket) bool { return s.GetServing().GetErrors() == 2 }); !strings.HasPrefix(s.GetServing().GetLastError(), "TLS_HANDSHAKE_FAILED: tls handshake: remote error: tls: bad certificate") {
		t.Errorf("served listener's last error %q", s.GetServing().GetLastError())
	}
}

// TestTLSAttach: an Attach stream carries the decrypted bytes of a TLS socket both ways, and
// its half-close reaches the peer as close_notify and EOF.
func TestTLSAttach(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca := testpki.NewCA(t, "test CA")
	addr := goTLSServer(t, &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLS(t)}}, func(c *tls.Conn) {
		b, _ := io.ReadAll(c)
		_, _ = c.Write(append([]byte("got "), b...))
	})
	s := e.dialTLS(t, addr, &sockagentv1.TlsClient{RootCasPem: ca.PEM})
	ctx := ctxT(t)
	st := e.attach(t, ctx, s.GetSocketId())
	if err := st.Send(&sockagentv1.AttachRequest{Data: []byte("attached bytes"), CloseWrite: true}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("attach recv: %v (so far %q)", err, got)
		}
		got = append(got, r.GetData()...)
		if r.GetEof() {
			break
		}
	}
	if string(got) != "got attached bytes" {
		t.Errorf("attach read %q", got)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Errorf("attach end: %v, want OK", err)
	}
}

// TestTLSBadRequests: hostile or wrong TLS fields are INVALID_ARGUMENT naming the field (and
// no byte of a key); insecure_skip_verify is POLICY_DENIED unless the rule set allows it.
func TestTLSBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca := testpki.NewCA(t, "test CA")
	srv := ca.Server(t)
	other := ca.Client(t, "other")
	big := bytes.Repeat([]byte("A"), 64<<10+1)
	for _, tc := range []struct {
		name    string
		network string
		cl      *sockagentv1.TlsClient
		code    codes.Code
		reason  string
		msg     string
	}{
		{"udp", "udp", &sockagentv1.TlsClient{}, codes.InvalidArgument, contract.ReasonInvalidArgument, "tls needs a stream network (tcp, tcp4, tcp6, unix), not udp"},
		{"huge roots", "tcp", &sockagentv1.TlsClient{RootCasPem: big}, codes.InvalidArgument, contract.ReasonInvalidArgument, "tls.root_cas_pem: 65537 bytes, over the limit of 65536"},
		{"garbage roots", "tcp", &sockagentv1.TlsClient{RootCasPem: []byte("not pem")}, codes.InvalidArgument, contract.ReasonInvalidArgument, "tls.root_cas_pem: 7 bytes that are not a PEM block"},
		{"key as root", "tcp", &sockagentv1.TlsClient{RootCasPem: srv.KeyPEM}, codes.InvalidArgument, contract.ReasonInvalidArgument, `tls.root_cas_pem: PEM block 1 is a "PRIVATE KEY", not a CERTIFICATE`},
		{"key without cert", "tcp", &sockagentv1.TlsClient{KeyPem: srv.KeyPEM}, codes.InvalidArgument, contract.ReasonInvalidArgument, "tls.key_pem given without tls.cert_pem"},
		{"mismatched key", "tcp", &sockagentv1.TlsClient{CertPem: srv.CertPEM, KeyPem: other.KeyPEM}, codes.InvalidArgument, contract.ReasonInvalidArgument, "tls.cert_pem and tls.key_pem: tls: private key does not match public key"},
		{"cert as key", "tcp", &sockagentv1.TlsClient{CertPem: srv.CertPEM, KeyPem: srv.CertPEM}, codes.InvalidArgument, contract.ReasonInvalidArgument, "tls.key_pem: no PEM PRIVATE KEY block first"},
		{"huge key", "tcp", &sockagentv1.TlsClient{CertPem: srv.CertPEM, KeyPem: big}, codes.InvalidArgument, contract.ReasonInvalidArgument, "tls.key_pem: 65537 bytes"},
		{"alpn", "tcp", &sockagentv1.TlsClient{Alpn: []string{"h2", ""}}, codes.InvalidArgument, contract.ReasonInvalidArgument, "tls.alpn[1]: 0 bytes"},
		{"version", "tcp", &sockagentv1.TlsClient{MinVersion: 9}, codes.InvalidArgument, contract.ReasonInvalidArgument, "dial: tls.min_version 9 unknown"},
		{"server name", "tcp", &sockagentv1.TlsClient{ServerName: "a\x1bb"}, codes.InvalidArgument, contract.ReasonInvalidArgument, "tls.server_name: 3 bytes or unprintable"},
		{"insecure", "tcp", &sockagentv1.TlsClient{InsecureSkipVerify: true}, codes.PermissionDenied, contract.ReasonPolicyDenied, `tls insecure_skip_verify not allowed by policy rule "tls.insecure_skip_verify"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: tc.network, Address: "127.0.0.1:1", Tls: tc.cl})
			wantStatus(t, err, tc.code, tc.reason, tc.msg)
			if err != nil && strings.Contains(err.Error(), keyBody(srv.KeyPEM)) {
				t.Errorf("the error quotes the key: %v", err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		srv  *sockagentv1.TlsServer
		msg  string
	}{
		{"no key", &sockagentv1.TlsServer{CertPem: srv.CertPEM}, "tls: a TLS listener needs cert_pem and key_pem"},
		{"bad client CA", &sockagentv1.TlsServer{CertPem: srv.CertPEM, KeyPem: srv.KeyPEM, ClientCaPem: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}, "tls.client_ca_pem: PEM block 1: x509: malformed certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", Tls: tc.srv})
			wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, tc.msg)
		})
	}
	_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "unixgram", Address: e.sockPath("x"), Tls: &sockagentv1.TlsServer{}})
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidNetwork)
	_, err = e.mc().Probe(ctxT(t), &sockagentv1.ProbeRequest{Network: "tcp", Address: "127.0.0.1:1", Mode: sockagentv1.ProbeMode_PROBE_MODE_CONNECT, Tls: &sockagentv1.TlsClient{}})
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "probe: tls given with mode connect")
	_, err = e.mc().Probe(ctxT(t), &sockagentv1.ProbeRequest{Network: "udp", Address: "127.0.0.1:1", Mode: sockagentv1.ProbeMode_PROBE_MODE_TLS})
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, "probe: mode tls needs a tcp network, not udp")
}

// keyBody is a line from the middle of a PEM key: what a leak of the key would contain.
func keyBody(keyPEM []byte) string {
	lines := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")
	return lines[len(lines)/2]
}

// TestTLSInsecureSkipVerifyAllowed: a rule set with tls.insecure_skip_verify may dial a server
// whose certificate nobody vouches for; another caller's set still may not.
func TestTLSInsecureSkipVerifyAllowed(t *testing.T) {
	t.Parallel()
	pol, err := policy.Parse("p.yaml", []byte("default:\n  tls: {insecure_skip_verify: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, agent.Config{Policy: pol})
	unknown := testpki.NewCA(t, "nobody's CA")
	addr := goTLSServer(t, &tls.Config{Certificates: []tls.Certificate{unknown.Server(t).TLS(t)}}, func(c *tls.Conn) { _, _ = c.Write([]byte("hi")) })
	s := e.dialTLS(t, addr, &sockagentv1.TlsClient{InsecureSkipVerify: true})
	if d := e.recvExact(t, s.GetSocketId(), 2); d != "hi" {
		t.Errorf("recv %q", d)
	}
	if s.GetTls().GetPeerIssuer() != "CN=nobody's CA,O=sockagent tests" {
		t.Errorf("tls %v", s.GetTls())
	}
}

// TestTLSKeysNeverShown: with the log at debug level and an audit log, a TLS listener and a
// TLS client with a client certificate, failed handshakes and refused requests leave no byte
// of either key in the log, the audit log, GetSocket or ListSockets.
func TestTLSKeysNeverShown(t *testing.T) {
	t.Parallel()
	var logBuf, auditBuf lockedBuffer
	e := newEnvWith(t, agent.Config{
		Logger:      slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AuditLogger: slog.New(slog.NewJSONHandler(&auditBuf, nil)),
	})
	ca := testpki.NewCA(t, "test CA")
	srv, cli := ca.Server(t), ca.Client(t, "alice")
	l := e.listenTLS(t, &sockagentv1.TlsServer{CertPem: srv.CertPEM, KeyPem: srv.KeyPEM, ClientCaPem: ca.PEM})
	var shown []string
	ctx := ctxT(t)
	accepted := make(chan error, 1)
	go func() {
		_, err := e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: l.GetSocketId(), Timeout: dur(5 * time.Second)})
		accepted <- err
	}()
	d := e.dialTLS(t, l.GetLocalAddress(), &sockagentv1.TlsClient{RootCasPem: ca.PEM, CertPem: cli.CertPEM, KeyPem: cli.KeyPEM})
	if err := <-accepted; err != nil {
		t.Fatalf("accept: %v", err)
	}
	e.send(t, d.GetSocketId(), "x")
	_, err := e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: l.GetLocalAddress(), Tls: &sockagentv1.TlsClient{CertPem: cli.CertPEM, KeyPem: srv.KeyPEM}})
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument)
	shown = append(shown, err.Error())
	_, err = e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: l.GetLocalAddress(), Tls: &sockagentv1.TlsClient{RootCasPem: cli.KeyPEM, KeyPem: cli.KeyPEM}})
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument)
	shown = append(shown, err.Error())
	ls, err := e.sc.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.GetSockets()) != 3 {
		t.Errorf("%d sockets listed, want listener, dialled and accepted", len(ls.GetSockets()))
	}
	shown = append(shown, prototext.Format(ls))
	for _, s := range ls.GetSockets() {
		e.closeAtEnd(t, s.GetSocketId())
	}
	shown = append(shown, logBuf.String(), auditBuf.String())
	if !strings.Contains(logBuf.String(), `"rpc":"Dial"`) || !strings.Contains(auditBuf.String(), `"rpc":"Listen"`) {
		t.Fatalf("the logs hold no Dial or Listen line:\n%s\n%s", logBuf.String(), auditBuf.String())
	}
	for _, key := range [][]byte{srv.KeyPEM, cli.KeyPEM} {
		for _, line := range strings.Split(strings.TrimSpace(string(key)), "\n")[1:] {
			if strings.HasPrefix(line, "-----") {
				continue
			}
			for i, s := range shown {
				if strings.Contains(s, line) || strings.Contains(s, line[:24]) {
					t.Errorf("output %d holds key material %q", i, line)
				}
			}
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for the agent's concurrent log writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
