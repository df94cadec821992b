package main

// The security flags of the sockagent binary: --tls-cert/--tls-key/--client-ca (real
// handshakes with certificates made here), --token-file and its SIGHUP reload, the refusal
// of a non-loopback --listen without authentication, --insecure, --audit-log.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/testpki"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// dialWith is a client of the process with creds, closed when the test ends.
func (p *proc) dialWith(t *testing.T, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(p.target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// agentPKI is a CA of the test and the files of an agent that serves with a certificate of it.
type agentPKI struct {
	ca                    *testpki.CA
	dir, caFile, crt, key string
}

// newAgentPKI makes a CA named "lab CA" and writes its certificate (ca.crt) and an agent
// certificate for loopback (agent.crt, agent.key) into a directory of the test.
func newAgentPKI(t *testing.T) agentPKI {
	t.Helper()
	k := agentPKI{ca: testpki.NewCA(t, "lab CA"), dir: t.TempDir()}
	k.caFile = filepath.Join(k.dir, "ca.crt")
	testpki.WriteFile(t, k.caFile, k.ca.PEM)
	k.crt, k.key = k.ca.Server(t).Write(t, k.dir, "agent")
	return k
}

// mtlsFlags are sockagent's flags to serve mTLS with k's files.
func (k agentPKI) mtlsFlags() []string {
	return []string{"--tls-cert", k.crt, "--tls-key", k.key, "--client-ca", k.caFile}
}

func tlsClient(t *testing.T, root *testpki.CA, cert *testpki.Cert) credentials.TransportCredentials {
	t.Helper()
	cfg := &tls.Config{RootCAs: root.Pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc := cert.TLS(t)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc, nil }
	}
	return credentials.NewTLS(cfg)
}

func info(ctx context.Context, c *grpc.ClientConn) error {
	_, err := sockagentv1.NewAgentServiceClient(c).GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	return err
}

func bearerCtx(t *testing.T, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+token)
}

func wantUnauthenticated(t *testing.T, err error) {
	t.Helper()
	wantStatus(t, err, codes.Unauthenticated, contract.ReasonUnauthenticated)
	if msg := status.Convert(err).Message(); msg != "missing or invalid credentials" {
		t.Errorf("message %q, want the fixed one", msg)
	}
}

// TestMTLSFlags: with --tls-cert, --tls-key and --client-ca only a client certificate of the
// CA gets in, and names the caller in the log.
func TestMTLSFlags(t *testing.T) {
	t.Parallel()
	k := newAgentPKI(t)
	ca, other := k.ca, testpki.NewCA(t, "other CA")
	p := startLocal(t, append([]string{"--log-format", "json", "--log-level", "debug"}, k.mtlsFlags()...)...)

	alice := ca.Client(t, "alice")
	if err := info(ctxT(t), p.dialWith(t, tlsClient(t, ca, &alice))); err != nil {
		t.Fatalf("GetInfo with a client certificate of the CA: %v", err)
	}
	if _, err := p.log.waitFor(regexp.MustCompile(`"rpc":"GetInfo","caller":"cert:CN=alice,O=sockagent tests".*"code":"OK"`), 5*time.Second); err != nil {
		t.Error(err)
	}
	expired := ca.Issue(t, testpki.Options{CN: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Minute)})
	wrongCA := other.Client(t, "alice")
	for name, creds := range map[string]credentials.TransportCredentials{
		"no client certificate":                 tlsClient(t, ca, nil),
		"certificate of another CA":             tlsClient(t, ca, &wrongCA),
		"expired certificate":                   tlsClient(t, ca, &expired),
		"client does not trust the agent's CA":  tlsClient(t, other, &alice),
		"plaintext":                             insecure.NewCredentials(),
		"health without a certificate (no LB)":  tlsClient(t, ca, nil),
		"health of a client of another CA (no)": tlsClient(t, ca, &wrongCA),
	} {
		c := p.dialWith(t, creds)
		var err error
		if strings.HasPrefix(name, "health") {
			_, err = healthpb.NewHealthClient(c).Check(ctxT(t), &healthpb.HealthCheckRequest{})
		} else {
			err = info(ctxT(t), c)
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: %v, want UNAVAILABLE (failed handshake)", name, err)
		}
	}
	for _, why := range []string{"didn't provide a certificate", "unknown authority", "expired", "bad certificate"} {
		if _, err := p.log.waitFor(regexp.MustCompile(`"msg":"tls handshake failed".*`+why), 5*time.Second); err != nil {
			t.Error(err)
		}
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	lines, err := p.log.all(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n := countMatching(lines, regexp.MustCompile(`"msg":"rpc"`)); n != 1 {
		t.Errorf("%d rpc lines, want 1 (only alice got through):\n%s", n, strings.Join(lines, "\n"))
	}
}

func countMatching(lines []string, re *regexp.Regexp) int {
	n := 0
	for _, l := range lines {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}

// TestTLSWithoutClientCA: --tls-cert and --tls-key alone serve TLS to any client.
func TestTLSWithoutClientCA(t *testing.T) {
	t.Parallel()
	k := newAgentPKI(t)
	p := startLocal(t, "--tls-cert", k.crt, "--tls-key", k.key)
	if err := info(ctxT(t), p.dialWith(t, tlsClient(t, k.ca, nil))); err != nil {
		t.Errorf("GetInfo over TLS: %v", err)
	}
	if err := info(ctxT(t), p.dialWith(t, insecure.NewCredentials())); status.Code(err) != codes.Unavailable {
		t.Errorf("GetInfo in plaintext from a TLS agent: %v, want UNAVAILABLE", err)
	}
}

// TestTokenFileReload: --token-file requires a token; SIGHUP rereads the file, and a file
// that does not load keeps the tokens in force.
func TestTokenFileReload(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "tokens")
	testpki.WriteFile(t, file, []byte("# agent tokens\nalice:old-secret-0123456789\n"))
	p := startLocal(t, "--log-format", "json", "--log-level", "debug", "--token-file", file) // GetInfo's lines too
	c := p.dialWith(t, insecure.NewCredentials())

	wantUnauthenticated(t, info(ctxT(t), c))
	wantUnauthenticated(t, info(bearerCtx(t, "wrong-secret"), c))
	if err := info(bearerCtx(t, "old-secret-0123456789"), c); err != nil {
		t.Fatalf("GetInfo with the token: %v", err)
	}
	r, err := healthpb.NewHealthClient(c).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health without a token: %v %v", r, err)
	}

	testpki.WriteFile(t, file, []byte("bob:new-secret-0123456789\n"))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := p.log.waitFor(regexp.MustCompile(`"msg":"tokens reloaded".*"tokens":1`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	wantUnauthenticated(t, info(bearerCtx(t, "old-secret-0123456789"), c))
	if err := info(bearerCtx(t, "new-secret-0123456789"), c); err != nil {
		t.Fatalf("GetInfo with the new token: %v", err)
	}

	testpki.WriteFile(t, file, []byte("bob:new-secret-0123456789\nbob:again-0123456789\n"))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := p.log.waitFor(regexp.MustCompile(`"msg":"tokens not reloaded; the old ones stay in force".*already used on line 1`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := info(bearerCtx(t, "new-secret-0123456789"), c); err != nil {
		t.Errorf("GetInfo with the token in force after a failed reload: %v", err)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	lines, err := p.log.all(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"anonymous Unauthenticated", "anonymous Unauthenticated", "token:alice OK",
		"anonymous OK", // the health check, without a token
		"anonymous Unauthenticated", "token:bob OK", "token:bob OK"}
	var got []string
	for _, l := range lines {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "rpc" {
			got = append(got, m["caller"].(string)+" "+m["code"].(string))
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("rpc lines (caller code):\n got %q\nwant %q", got, want)
	}
	if strings.Contains(strings.Join(lines, "\n"), "secret-0123456789") {
		t.Error("a secret in the log")
	}
}

// TestListenRefusals: a non-loopback --listen without authentication is refused (exit 2,
// with the fix); so are incomplete TLS flags and bad token files. Nothing here binds.
func TestListenRefusals(t *testing.T) {
	t.Parallel()
	k := newAgentPKI(t)
	dir, crt, key := k.dir, k.crt, k.key
	badTokens := filepath.Join(dir, "bad-tokens")
	testpki.WriteFile(t, badTokens, []byte("alice:\n"))
	emptyTokens := filepath.Join(dir, "empty-tokens")
	testpki.WriteFile(t, emptyTokens, []byte("# none\n"))
	fix := "Fix: --tls-cert F --tls-key F --client-ca F (mTLS), or --token-file F"
	tests := []struct {
		name   string
		args   []string
		stderr []string
	}{
		{"IPv4 wildcard", []string{"--listen", "0.0.0.0:0"}, []string{"refusing to serve on 0.0.0.0:0 without authentication", fix, "--insecure to accept the risk"}},
		{"IPv6 wildcard", []string{"--listen", "[::]:0"}, []string{"refusing to serve on [::]:0", fix}},
		{"empty host", []string{"--listen", ":0"}, []string{"refusing to serve on :0", fix}},
		{"a LAN address", []string{"--listen", "192.0.2.1:7700"}, []string{"refusing to serve on 192.0.2.1:7700", fix}},
		{"TLS without client CA", []string{"--listen", "0.0.0.0:0", "--tls-cert", crt, "--tls-key", key}, []string{"TLS without --client-ca encrypts but does not say who calls", fix}},
		{"cert without key", []string{"--tls-cert", crt}, []string{"give --tls-cert and --tls-key together"}},
		{"client CA without TLS", []string{"--client-ca", crt}, []string{"--client-ca needs TLS"}},
		{"missing cert file", []string{"--tls-cert", filepath.Join(dir, "nope.crt"), "--tls-key", key}, []string{"load server certificate", "nope.crt"}},
		{"missing token file", []string{"--token-file", filepath.Join(dir, "nope")}, []string{"--token-file: token file: open", "no such file"}},
		{"bad token file", []string{"--token-file", badTokens}, []string{`--token-file: token file `, `line 1: empty secret after ':'`}},
		{"empty token file", []string{"--token-file", emptyTokens}, []string{"no tokens"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, code := runBin(t, sockagentBin, tt.args...)
			if code != 2 || out != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, out)
			}
			for _, s := range tt.stderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr %q does not contain %q", errOut, s)
				}
			}
			if strings.Contains(errOut, "serving") {
				t.Errorf("it served: %s", errOut)
			}
		})
	}
}

// TestAuditLogFlag: --audit-log writes exactly the mutating RPCs to a file, as JSON lines,
// readable by the owner only.
func TestAuditLogFlag(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	p := startLocal(t, "--audit-log", file)
	sc := p.sockets()
	l := listenTCP(t, sc)
	if _, err := sc.GetSocket(ctxT(t), &sockagentv1.GetSocketRequest{SocketId: l.GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: l.GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v %v, want 0600", fi.Mode().Perm(), err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line is not JSON: %q", line)
		}
		got = append(got, strings.Join([]string{m["msg"].(string), m["rpc"].(string), m["caller"].(string), m["socket"].(string), m["local"].(string), m["code"].(string)}, " "))
	}
	want := []string{
		"audit Listen anonymous " + l.GetSocketId() + " " + l.GetLocalAddress() + " OK",
		"audit Close anonymous " + l.GetSocketId() + " " + l.GetLocalAddress() + " OK",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
