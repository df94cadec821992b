package agent_test

// Authentication, caller identity and audit, in-process over real TLS on 127.0.0.1: mTLS
// with certificates made here (agent/internal/testpki), bearer tokens, the log lines.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/internal/testpki"
	"github.com/sockagent/sockagent/agent/policy"
	"github.com/sockagent/sockagent/agent/reflection"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

// logBuf collects JSON log lines and lets a test wait for one.
type logBuf struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLogBuf() *logBuf { return &logBuf{changed: make(chan struct{})} }

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.changed)
	l.changed = make(chan struct{})
	return l.buf.Write(p)
}

func (l *logBuf) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// records returns the lines whose msg is msg, decoded, without time, level and dur.
func (l *logBuf) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if m["msg"] != msg {
			continue
		}
		if _, ok := m["dur"].(float64); msg != "tls handshake failed" && !ok {
			t.Errorf("line without a numeric dur: %q", line)
		}
		if p, _ := m["peer"].(string); msg != "tls handshake failed" && !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("line without the client's address as peer: %q", line)
		}
		for _, k := range []string{"time", "level", "msg", "dur", "peer"} {
			delete(m, k)
		}
		out = append(out, m)
	}
	return out
}

// waitFor waits until a line matches re.
func (l *logBuf) waitFor(t *testing.T, re *regexp.Regexp) {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		l.mu.Lock()
		found, changed, text := re.MatchString(l.buf.String()), l.changed, l.buf.String()
		l.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("no log line matching %s:\n%s", re, text)
		}
	}
}

// secServer is an in-process agent on a real 127.0.0.1 TCP port, with its log, its audit
// log, and the callers its handlers saw.
type secServer struct {
	a     *agent.Agent
	addr  string
	log   *logBuf
	audit *logBuf

	mu      sync.Mutex
	callers map[string][]agent.Caller // RPC name -> the callers its handler saw
}

func startSec(t *testing.T, tlsCfg *tls.Config, tokens *agent.Tokens) *secServer {
	t.Helper()
	return startSecPolicy(t, tlsCfg, tokens, nil)
}

// startSecPolicy is startSec with a policy (nil: the default).
func startSecPolicy(t *testing.T, tlsCfg *tls.Config, tokens *agent.Tokens, pol *policy.Policy) *secServer {
	t.Helper()
	s := &secServer{log: newLogBuf(), audit: newLogBuf(), callers: map[string][]agent.Caller{}}
	// Runs inside the agent's interceptor: sees the context the handler gets.
	seen := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		s.mu.Lock()
		rpc := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
		s.callers[rpc] = append(s.callers[rpc], agent.CallerFrom(ctx))
		s.mu.Unlock()
		return h(ctx, req)
	}
	a, err := agent.New(agent.Config{
		Logger:        slog.New(slog.NewJSONHandler(s.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AuditLogger:   slog.New(slog.NewJSONHandler(s.audit, nil)),
		TLS:           tlsCfg,
		Tokens:        tokens,
		Policy:        pol,
		ServerOptions: []grpc.ServerOption{grpc.ChainUnaryInterceptor(seen)},
		Reflection:    reflection.Register,
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.a, s.addr = a, lis.Addr().String()
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.Serve(lis)
	}()
	t.Cleanup(func() {
		if n := a.NumSockets(); n != 0 {
			t.Errorf("socket table not empty at the end of the test: %d sockets", n)
		}
		a.Close()
		<-served
	})
	return s
}

func (s *secServer) seen(rpc string) []agent.Caller {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.callers[rpc])
}

// conn is a client of the server with creds, closed when the test ends.
func (s *secServer) conn(t *testing.T, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pki is one test PKI: a CA whose certificates the agent trusts, another CA, and files.
type pki struct {
	ca, other                   *testpki.CA
	dir                         string
	caFile, serverCrt, serverKy string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{ca: testpki.NewCA(t, "test CA"), other: testpki.NewCA(t, "other CA"), dir: t.TempDir()}
	p.caFile = filepath.Join(p.dir, "ca.crt")
	testpki.WriteFile(t, p.caFile, p.ca.PEM)
	p.serverCrt, p.serverKy = p.ca.Server(t).Write(t, p.dir, "server")
	return p
}

// serverTLS is the agent's TLS config from files; mTLS when mtls.
func (p *pki) serverTLS(t *testing.T, mtls bool) *tls.Config {
	t.Helper()
	ca := ""
	if mtls {
		ca = p.caFile
	}
	cfg, err := agent.ServerTLS(p.serverCrt, p.serverKy, ca)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// clientCreds trusts rootCA for the server and presents cert when given.
func clientCreds(t *testing.T, rootCA *testpki.CA, cert *testpki.Cert) credentials.TransportCredentials {
	t.Helper()
	cfg := &tls.Config{RootCAs: rootCA.Pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		// Always presented, even when the server asks for certificates of other CAs.
		tc := cert.TLS(t)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc, nil }
	}
	return credentials.NewTLS(cfg)
}

// testSubject is the subject of a testpki client certificate with common name cn.
func testSubject(cn string) policy.Subject {
	return policy.Subject{{{Type: "CN", Value: cn}}, {{Type: "O", Value: "sockagent tests"}}}
}

func getInfo(ctx context.Context, c *grpc.ClientConn) error {
	_, err := sockagentv1.NewAgentServiceClient(c).GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	return err
}

func TestServerTLSErrors(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	junk := filepath.Join(p.dir, "junk.pem")
	testpki.WriteFile(t, junk, []byte("not a certificate\n"))
	_, otherKey := p.ca.Server(t).Write(t, p.dir, "other")
	tests := []struct {
		name            string
		cert, key, ca   string
		wantErrContains string
	}{
		{"no key", p.serverCrt, "", "", "needs both a certificate and a key"},
		{"missing cert", filepath.Join(p.dir, "nope.crt"), p.serverKy, "", "nope.crt"},
		{"key of another cert", p.serverCrt, otherKey, "", "private key does not match public key"},
		{"missing CA", p.serverCrt, p.serverKy, filepath.Join(p.dir, "nope-ca.crt"), "read client CA"},
		{"CA file without PEM", p.serverCrt, p.serverKy, junk, "no PEM certificate in the file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := agent.ServerTLS(tt.cert, tt.key, tt.ca)
			if err == nil || !strings.Contains(err.Error(), tt.wantErrContains) {
				t.Errorf("ServerTLS: %v, want an error containing %q", err, tt.wantErrContains)
			}
		})
	}
	cfg, err := agent.ServerTLS(p.serverCrt, p.serverKy, p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		t.Errorf("mTLS config: min version %x, client auth %v, client CAs %v", cfg.MinVersion, cfg.ClientAuth, cfg.ClientCAs)
	}
}

// TestMTLS: a client certificate of the trusted CA names the caller, in the handler's
// context and in the log; every other client fails the handshake (UNAVAILABLE) and never
// reaches a handler.
func TestMTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	s := startSec(t, p.serverTLS(t, true), nil)

	alice := p.ca.Issue(t, testpki.Options{CN: "alice", DNS: []string{"alice.lab"}, IPs: []net.IP{net.IPv4(10, 0, 0, 1)}, Emails: []string{"alice@lab"}})
	c := s.conn(t, clientCreds(t, p.ca, &alice))
	if err := getInfo(ctxT(t), c); err != nil {
		t.Fatalf("GetInfo with a valid client certificate: %v", err)
	}
	got := s.seen("GetInfo")
	if len(got) != 1 {
		t.Fatalf("GetInfo handler saw %d callers, want 1", len(got))
	}
	want := agent.Caller{ID: "cert:CN=alice,O=sockagent tests", Kind: "cert", Subject: testSubject("alice"), SANs: []string{"alice.lab", "10.0.0.1", "alice@lab"}}
	if fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Errorf("caller\n got %+v\nwant %+v", got[0], want)
	}
	if recs := s.log.records(t, "rpc"); len(recs) != 1 || recs[0]["caller"] != "cert:CN=alice,O=sockagent tests" || recs[0]["code"] != "OK" {
		t.Errorf("rpc log lines %v, want one with caller cert:CN=alice,O=sockagent tests, code OK", recs)
	}

	expired := p.ca.Issue(t, testpki.Options{CN: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	mallory := p.other.Client(t, "alice") // the right name from the wrong CA
	tests := []struct {
		name  string
		creds credentials.TransportCredentials
	}{
		{"no client certificate", clientCreds(t, p.ca, nil)},
		{"certificate of another CA", clientCreds(t, p.ca, &mallory)},
		{"expired certificate", clientCreds(t, p.ca, &expired)},
		{"client does not trust the server's CA", clientCreds(t, p.other, &alice)},
		{"plaintext client", insecure.NewCredentials()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := getInfo(ctxT(t), s.conn(t, tt.creds))
			if status.Code(err) != codes.Unavailable {
				t.Errorf("GetInfo: %v, want UNAVAILABLE", err)
			}
		})
	}
	if n := len(s.seen("GetInfo")); n != 1 {
		t.Errorf("GetInfo handler ran %d times, want 1 (the valid certificate only)", n)
	}
	// The server logs each failed handshake, with why.
	for _, why := range []string{"didn't provide a certificate", "unknown authority", "expired", "first record does not look like a TLS handshake"} {
		s.log.waitFor(t, regexp.MustCompile(`"msg":"tls handshake failed".*`+regexp.QuoteMeta(why)))
	}
}

// TestHostileSubjects: a certificate's identity is its whole subject with every value
// escaped, and policy patterns match its parsed attributes: a CN that spells another attribute
// stays a CN, and a subject without CN is not one whose CN looks like the rest of a subject.
func TestHostileSubjects(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	// Every rule set, the default too, allows only unixgram: a tcp Listen is refused with the
	// name of the rule set that applied.
	pol, err := policy.Parse("test", []byte(`default: {networks: [unixgram]}
rule_sets:
  - {name: lab, callers: ["subject:OU=lab", "*OU*lab*"], networks: [unixgram]}
  - {name: no-cn, callers: ["cert:O=Lab"], networks: [unixgram]}
  - {name: cn-lab, callers: ['cert:CN=O\=Lab'], networks: [unixgram]}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := startSecPolicy(t, p.serverTLS(t, true), nil, pol)
	for _, tc := range []struct {
		name    string
		subject pkix.Name
		id, set string
	}{
		{"CN that spells an OU", pkix.Name{CommonName: "mallory,OU=lab", Organization: []string{"Example"}}, `cert:CN=mallory\,OU\=lab,O=Example`, "default"},
		{"a real OU", pkix.Name{CommonName: "h1", OrganizationalUnit: []string{"lab"}, Organization: []string{"Example"}}, "cert:CN=h1,OU=lab,O=Example", "lab"},
		{"no CN", pkix.Name{Organization: []string{"Lab"}}, "cert:O=Lab", "no-cn"},
		{"CN that spells an O", pkix.Name{CommonName: "O=Lab"}, `cert:CN=O\=Lab`, "cn-lab"},
		{"CN with a terminal escape", pkix.Name{CommonName: "\x1b]0;owned\x07\x1b[31mred\n"}, `cert:CN=\1B]0\;owned\07\1B[31mred\0A`, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := p.ca.Issue(t, testpki.Options{Subject: &tc.subject})
			c := sockagentv1.NewSocketServiceClient(s.conn(t, clientCreds(t, p.ca, &cert)))
			_, err := c.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
			st := status.Convert(err)
			if st.Code() != codes.PermissionDenied || !strings.HasSuffix(st.Message(), fmt.Sprintf("(rule set %q)", tc.set)) {
				t.Errorf("Listen: %v, want PERMISSION_DENIED from rule set %q", err, tc.set)
			}
			var got []string
			for _, c := range s.seen("Listen") {
				got = append(got, c.ID)
			}
			if !slices.Contains(got, tc.id) {
				t.Errorf("callers %q, want one %s", got, tc.id)
			}
		})
	}
	if strings.ContainsAny(s.log.text(), "\x1b\x07") {
		t.Errorf("a control character from a certificate reached the log")
	}
}

// TestTLSWithoutClientCA: any client that trusts the server gets in, as anonymous; a client
// certificate, even from an unknown CA, is not asked for and names nobody.
func TestTLSWithoutClientCA(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	s := startSec(t, p.serverTLS(t, false), nil)
	stranger := p.other.Client(t, "stranger")
	for _, cert := range []*testpki.Cert{nil, &stranger} {
		if err := getInfo(ctxT(t), s.conn(t, clientCreds(t, p.ca, cert))); err != nil {
			t.Errorf("GetInfo over TLS without client CA: %v", err)
		}
	}
	if got := s.seen("GetInfo"); len(got) != 2 || got[0].ID != "anonymous" || got[1].ID != "anonymous" {
		t.Errorf("callers %v, want two anonymous", got)
	}
	err := getInfo(ctxT(t), s.conn(t, clientCreds(t, p.other, nil)))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("GetInfo from a client that does not trust the server's CA: %v, want UNAVAILABLE", err)
	}

	// TLS 1.3 when the client can, 1.2 still accepted, 1.1 refused.
	for _, tt := range []struct {
		max, want uint16 // 0: refused
	}{{tls.VersionTLS13, tls.VersionTLS13}, {tls.VersionTLS12, tls.VersionTLS12}, {tls.VersionTLS11, 0}} {
		var got uint16
		cfg := &tls.Config{RootCAs: p.ca.Pool(), MinVersion: tls.VersionTLS10, MaxVersion: tt.max,
			VerifyConnection: func(cs tls.ConnectionState) error { got = cs.Version; return nil }}
		err := getInfo(ctxT(t), s.conn(t, credentials.NewTLS(cfg)))
		switch {
		case tt.want == 0 && status.Code(err) != codes.Unavailable:
			t.Errorf("client with TLS up to %s: %v, want UNAVAILABLE", tls.VersionName(tt.max), err)
		case tt.want != 0 && (err != nil || got != tt.want):
			t.Errorf("client with TLS up to %s: %v, version %s, want %s", tls.VersionName(tt.max), err, tls.VersionName(got), tls.VersionName(tt.want))
		}
	}
}

func TestParseTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		in    string
		names []string
		err   string
	}{
		{"named and bare", "# tokens\n\nalice:s3cret-a\n  bob:s3cret-b  \nbare-secret\r\n", []string{"alice", "bob", "sha256-a02e5191baa76b95"}, ""},
		{"bare secrets are named by the secret, not the line", "\n\n\nbare-secret\n", []string{"sha256-a02e5191baa76b95"}, ""},
		{"reserved name", "sha256-a02e5191baa76b95:other\n", nil, `line 1: the token name starts with "sha256-", which is reserved for bare secrets`},
		{"secret with colon needs a name", "ci:a:b:c\n", []string{"ci"}, ""},
		{"empty", "# nothing\n\n", nil, "no tokens"},
		{"empty name", ":secret\n", nil, "line 1: empty name"},
		{"empty secret", "alice:\n", nil, `line 1: empty secret after ':'`},
		{"bad name", "al ice:secret\n", nil, `line 1: the text before the first ':' is not a token name`},
		{"space in secret", "alice:sec ret\n", nil, "line 1: the secret contains white space"},
		{"duplicate name", "alice:one\nalice:two\n", nil, `line 2: the token name is already used on line 1`},
		// Bare secrets containing ':' (which need a name) are refused without quoting them.
		{"bare secret with colon", "Xq7$z9Kp:w2Rm8vTn\n", nil, "line 1: the text before the first ':' is not a token name"},
		{"bare secret ending in colon", "Zk4pQ7wRt2:\n", nil, "line 1: empty secret after ':'"},
		{"bare secret with colon and space", "Vb8nM3xLq:Ty 5\n", nil, "line 1: the secret contains white space"},
		{"bare secrets sharing a prefix", "Hq3kW9zPd:a1\nHq3kW9zPd:b2\n", nil, "line 2: the token name is already used on line 1"},
		{"duplicate secret", "alice:same\n\nbob:same\n", nil, "line 3: the same secret as on line 1"},
		{"bare duplicate of named", "alice:same\nsame\n", nil, "line 2: the same secret as on line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			toks, err := agent.ParseTokens(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseTokens: %v, want an error containing %q", err, tt.err)
				}
				// No part of a line (a name may be the start of a secret) is in the error: the
				// secret-like fields of these cases (5+ characters with a digit) are looked for.
				for _, field := range strings.FieldsFunc(tt.in, func(r rune) bool { return r == ':' || r == '\n' || r == ' ' }) {
					if len(field) >= 5 && strings.ContainsAny(field, "0123456789") && strings.Contains(err.Error(), field) {
						t.Errorf("ParseTokens: %q quotes %q of the file", err, field)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(toks.Names(), tt.names) || toks.Len() != len(tt.names) {
				t.Errorf("names %q (len %d), want %q", toks.Names(), toks.Len(), tt.names)
			}
		})
	}
	if _, err := agent.LoadTokens(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadTokens of a missing file: %v, want ErrNotExist", err)
	}
}

func mustTokens(t *testing.T, s string) *agent.Tokens {
	t.Helper()
	toks, err := agent.ParseTokens(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

func withAuth(ctx context.Context, values ...string) context.Context {
	for _, v := range values {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
	}
	return ctx
}

// wantUnauthenticated checks the one refusal: UNAUTHENTICATED, the fixed message, reason
// UNAUTHENTICATED in our domain, and no other detail.
func wantUnauthenticated(t *testing.T, err error) {
	t.Helper()
	st := status.Convert(err)
	want := status.New(codes.Unauthenticated, "missing or invalid credentials")
	want, _ = want.WithDetails(&errdetails.ErrorInfo{Reason: "UNAUTHENTICATED", Domain: "sockagent.v1"})
	if !proto.Equal(st.Proto(), want.Proto()) {
		t.Errorf("got %v %q %v, want exactly %v %q %v", st.Code(), st.Message(), st.Details(), want.Code(), want.Message(), want.Details())
	}
}

// TestTokens: every RPC but health needs a known bearer token; every failure looks the same.
func TestTokens(t *testing.T) {
	t.Parallel()
	toks := mustTokens(t, "# test tokens\nalice:alice-secret-0123456789\n\nbare-secret-0123456789\n"+
		"longer:alice-secret-0123456789-and-more\n")
	s := startSec(t, nil, toks)
	c := s.conn(t, insecure.NewCredentials())
	tests := []struct {
		name   string
		auth   []string
		caller string // "" : refused
		why    string // the log's auth key when refused
	}{
		{"no header", nil, "", "no authorization header"},
		{"wrong token", []string{"Bearer wrong-secret"}, "", "unknown token"},
		{"prefix of a token", []string{"Bearer alice-secret"}, "", "unknown token"},
		{"token name as secret", []string{"Bearer alice"}, "", "unknown token"},
		{"whole line as secret", []string{"Bearer alice:alice-secret-0123456789"}, "", "unknown token"},
		{"basic scheme", []string{"Basic alice-secret-0123456789"}, "", "authorization header is not Bearer"},
		{"no scheme", []string{"alice-secret-0123456789"}, "", "authorization header is not Bearer"},
		{"empty bearer", []string{"Bearer "}, "", "empty bearer token"},
		{"two headers", []string{"Bearer alice-secret-0123456789", "Bearer alice-secret-0123456789"}, "", "more than one authorization header"},
		{"named", []string{"Bearer alice-secret-0123456789"}, "token:alice", ""},
		{"scheme in lower case", []string{"bearer alice-secret-0123456789"}, "token:alice", ""},
		{"bare secret is named by its secret's sum", []string{"Bearer bare-secret-0123456789"}, "token:sha256-4194319b9e81e859", ""},
		{"longer token with the same prefix", []string{"Bearer alice-secret-0123456789-and-more"}, "token:longer", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(s.seen("GetInfo"))
			err := getInfo(withAuth(ctxT(t), tt.auth...), c)
			recs := s.log.records(t, "rpc")
			last := recs[len(recs)-1]
			if tt.caller == "" {
				wantUnauthenticated(t, err)
				if got := len(s.seen("GetInfo")); got != n {
					t.Errorf("the handler ran for a refused call")
				}
				if last["code"] != "Unauthenticated" || last["auth"] != tt.why || last["caller"] != "anonymous" {
					t.Errorf("log line %v, want code Unauthenticated, auth %q, caller anonymous", last, tt.why)
				}
				return
			}
			if err != nil {
				t.Fatalf("GetInfo: %v", err)
			}
			seen := s.seen("GetInfo")
			want := agent.Caller{ID: tt.caller, Kind: "token", Token: strings.TrimPrefix(tt.caller, "token:")}
			if fmt.Sprint(seen[len(seen)-1]) != fmt.Sprint(want) {
				t.Errorf("caller %+v, want %+v", seen[len(seen)-1], want)
			}
			if last["caller"] != tt.caller || last["code"] != "OK" {
				t.Errorf("log line %v, want caller %s, code OK", last, tt.caller)
			}
		})
	}
	for _, line := range strings.Split(s.log.text(), "\n") {
		if strings.Contains(line, "secret-0123456789") || strings.Contains(line, "wrong-secret") {
			t.Errorf("a secret in the log: %s", line)
		}
	}

	// Health needs no token (load balancers); reflection does.
	r, err := healthpb.NewHealthClient(c).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health without a token: %v %v, want SERVING", r, err)
	}
	if _, err := healthpb.NewHealthClient(c).Check(withAuth(ctxT(t), "Bearer wrong"), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health with a wrong token: %v, want SERVING", err)
	}
	listServices := func(ctx context.Context) ([]string, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := reflectionpb.NewServerReflectionClient(c).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		// A Send on a stream the server already ended returns io.EOF; the status is Recv's.
		if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		resp, err := st.Recv()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, svc := range resp.GetListServicesResponse().GetService() {
			names = append(names, svc.GetName())
		}
		return names, nil
	}
	_, err = listServices(ctxT(t))
	wantUnauthenticated(t, err)
	names, err := listServices(withAuth(ctxT(t), "Bearer alice-secret-0123456789"))
	if err != nil || !slices.Contains(names, "sockagent.v1.SocketService") {
		t.Errorf("reflection with a token: %v %v", names, err)
	}
	// The stream's line is written when its handler returns, after the client's cancel.
	s.log.waitFor(t, regexp.MustCompile(`"rpc":"ServerReflectionInfo","caller":"token:alice"`))
	var streams []string
	for _, rec := range s.log.records(t, "rpc") {
		if rec["rpc"] == "ServerReflectionInfo" {
			streams = append(streams, fmt.Sprint(rec["caller"], " ", rec["code"]))
		}
	}
	if !slices.Equal(streams, []string{"anonymous Unauthenticated", "token:alice Canceled"}) &&
		!slices.Equal(streams, []string{"anonymous Unauthenticated", "token:alice OK"}) {
		t.Errorf("reflection log lines (caller code): %q", streams)
	}
}

// TestSetTokens: the new tokens replace the old ones at once.
func TestSetTokens(t *testing.T) {
	t.Parallel()
	s := startSec(t, nil, mustTokens(t, "old:old-secret-0123456789\n"))
	c := s.conn(t, insecure.NewCredentials())
	if err := getInfo(withAuth(ctxT(t), "Bearer old-secret-0123456789"), c); err != nil {
		t.Fatal(err)
	}
	if err := s.a.SetTokens(mustTokens(t, "new:new-secret-0123456789\n")); err != nil {
		t.Fatal(err)
	}
	wantUnauthenticated(t, getInfo(withAuth(ctxT(t), "Bearer old-secret-0123456789"), c))
	if err := getInfo(withAuth(ctxT(t), "Bearer new-secret-0123456789"), c); err != nil {
		t.Errorf("new token: %v", err)
	}
	if err := s.a.SetTokens(nil); err == nil {
		t.Error("SetTokens(nil) succeeded; it must not turn authentication off")
	}
	if err := getInfo(withAuth(ctxT(t), "Bearer new-secret-0123456789"), c); err != nil {
		t.Errorf("new token after a refused SetTokens: %v", err)
	}
	open := startSec(t, nil, nil)
	if err := open.a.SetTokens(mustTokens(t, "x:x-secret-0123456789\n")); err == nil {
		t.Error("SetTokens on an agent started without tokens succeeded")
	}
}

// TestMTLSAndToken: with both, both are required; the certificate names the caller and the
// token's name is recorded with it.
func TestMTLSAndToken(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	s := startSec(t, p.serverTLS(t, true), mustTokens(t, "ci:ci-secret-0123456789\n"))
	bob := p.ca.Client(t, "bob")
	c := s.conn(t, clientCreds(t, p.ca, &bob))
	wantUnauthenticated(t, getInfo(ctxT(t), c))
	if err := getInfo(withAuth(ctxT(t), "Bearer ci-secret-0123456789"), c); err != nil {
		t.Fatal(err)
	}
	seen := s.seen("GetInfo")
	want := agent.Caller{ID: "cert:CN=bob,O=sockagent tests", Kind: "cert", Subject: testSubject("bob"), Token: "ci"}
	if len(seen) != 1 || fmt.Sprint(seen[0]) != fmt.Sprint(want) {
		t.Errorf("callers %+v, want [%+v]", seen, want)
	}
	recs := s.log.records(t, "rpc")
	if len(recs) != 2 || recs[0]["caller"] != want.ID || recs[0]["code"] != "Unauthenticated" ||
		recs[1]["caller"] != want.ID || recs[1]["token"] != "ci" || recs[1]["code"] != "OK" {
		t.Errorf("log lines %v", recs)
	}
}

// TestAudit: every RPC that creates, writes to or closes a socket is logged with caller,
// rpc, addresses and code, audit=true, in the log and in the audit log; the others are not
// audited.
func TestAudit(t *testing.T) {
	t.Parallel()
	s := startSec(t, nil, mustTokens(t, "alice:alice-secret-0123456789\n"))
	sc := sockagentv1.NewSocketServiceClient(s.conn(t, insecure.NewCredentials()))
	ctx := withAuth(ctxT(t), "Bearer alice-secret-0123456789")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	lis, err := sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
	must(err)
	l := lis.GetSocket()
	dial, err := sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: l.GetLocalAddress()})
	must(err)
	d := dial.GetSocket()
	acc, err := sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: l.GetSocketId()})
	must(err)
	a := acc.GetSocket()
	_, err = sc.Send(ctx, &sockagentv1.SendRequest{SocketId: d.GetSocketId(), Data: []byte("hello")})
	must(err)
	_, err = sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: a.GetSocketId(), ExactBytes: 5})
	must(err)
	_, err = sc.Shutdown(ctx, &sockagentv1.ShutdownRequest{SocketId: d.GetSocketId(), Direction: sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_WRITE})
	must(err)
	bind, err := sc.Bind(ctx, &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0"})
	must(err)
	b := bind.GetSocket()
	_, err = sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: b.GetSocketId(), Address: b.GetLocalAddress(), Data: []byte("hi")})
	must(err)
	_, err = sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: b.GetSocketId()})
	must(err)
	for _, id := range []string{a.GetSocketId(), d.GetSocketId(), l.GetSocketId(), b.GetSocketId()} {
		_, err = sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id})
		must(err)
	}
	_, err = sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: l.GetLocalAddress()}) // no token
	wantUnauthenticated(t, err)

	c := "token:alice"
	base := func(rpc, id, network, local, remote string) map[string]any {
		m := map[string]any{"rpc": rpc, "caller": c, "audit": true, "socket": id, "network": network, "local": local, "code": "OK"}
		if remote != "" {
			m["remote"] = remote
		}
		return m
	}
	with := func(m map[string]any, kv ...any) map[string]any {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	tcp, udp := "tcp", "udp"
	wantAudit := []map[string]any{
		base("Listen", l.GetSocketId(), tcp, l.GetLocalAddress(), ""),
		base("Dial", d.GetSocketId(), tcp, d.GetLocalAddress(), l.GetLocalAddress()),
		base("Accept", a.GetSocketId(), tcp, a.GetLocalAddress(), a.GetRemoteAddress()),
		with(base("Send", d.GetSocketId(), tcp, d.GetLocalAddress(), l.GetLocalAddress()), "bytes", float64(5)),
		base("Shutdown", d.GetSocketId(), tcp, d.GetLocalAddress(), l.GetLocalAddress()),
		base("Bind", b.GetSocketId(), udp, b.GetLocalAddress(), ""),
		with(base("SendTo", b.GetSocketId(), udp, b.GetLocalAddress(), b.GetLocalAddress()), "bytes", float64(2)),
		base("Close", a.GetSocketId(), tcp, a.GetLocalAddress(), a.GetRemoteAddress()),
		base("Close", d.GetSocketId(), tcp, d.GetLocalAddress(), l.GetLocalAddress()),
		base("Close", l.GetSocketId(), tcp, l.GetLocalAddress(), ""),
		base("Close", b.GetSocketId(), udp, b.GetLocalAddress(), ""),
		// Refused from its headers: its request was never read, so the line names no address.
		{"rpc": "Dial", "caller": "anonymous", "audit": true,
			"code": "Unauthenticated", "err": "missing or invalid credentials", "auth": "no authorization header"},
	}
	gotAudit := s.audit.records(t, "audit")
	var gotLog []map[string]any
	for _, rec := range s.log.records(t, "rpc") {
		if rec["audit"] == true {
			gotLog = append(gotLog, rec)
		} else if r := rec["rpc"]; r != "Recv" && r != "GetSocket" {
			t.Errorf("not audited: %v", rec)
		}
	}
	for name, got := range map[string][]map[string]any{"audit log": gotAudit, "log": gotLog} {
		if len(got) != len(wantAudit) {
			t.Errorf("%s: %d audit lines, want %d:\n%v", name, len(got), len(wantAudit), got)
			continue
		}
		for i := range wantAudit {
			if fmt.Sprint(got[i]) != fmt.Sprint(wantAudit[i]) {
				t.Errorf("%s line %d:\n got %v\nwant %v", name, i, got[i], wantAudit[i])
			}
		}
	}
}

// TestAuditWhateverLogLevel: the audit logger gets the mutating RPCs even when the log's
// level hides every rpc line.
func TestAuditWhateverLogLevel(t *testing.T) {
	t.Parallel()
	logs, audit := newLogBuf(), newLogBuf()
	a, err := agent.New(agent.Config{
		Logger:      slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelError})),
		AuditLogger: slog.New(slog.NewJSONHandler(audit, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = a.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		conn.Close()
		a.Close()
		<-served
	}()
	sc := sockagentv1.NewSocketServiceClient(conn)
	r, err := sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.ListSockets(ctxT(t), &sockagentv1.ListSocketsRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: r.GetSocket().GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	if text := logs.text(); text != "" {
		t.Errorf("log at level error has lines:\n%s", text)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(audit.text()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line is not JSON: %q", line)
		}
		got = append(got, fmt.Sprint(m["msg"], " ", m["rpc"], " ", m["caller"], " ", m["local"], " ", m["code"]))
	}
	local := r.GetSocket().GetLocalAddress()
	want := []string{"audit Bind anonymous " + local + " OK", "audit Close anonymous " + local + " OK"}
	if !slices.Equal(got, want) {
		t.Errorf("audit lines %q, want %q", got, want)
	}
}
