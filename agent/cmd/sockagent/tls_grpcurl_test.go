package main

// grpcurl and sockctl, with their usual TLS flags, against a sockagent serving mutual TLS
// with the certificates `sockctl pki init` makes.

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/internal/testpki"
	"github.com/sockagent/sockagent/ctl/pki"
)

// newPKI makes a lab PKI (CA, agent certificate for 127.0.0.1, ::1 and localhost, client
// certificate) in a directory of the test.
func newPKI(t *testing.T) *pki.Paths {
	t.Helper()
	p, err := pki.Init(pki.Options{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGrpcurlMTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	ag := startLocal(t, "--tls-cert", p.Agent, "--tls-key", p.AgentKey, "--client-ca", p.CA)
	addr := ag.addr
	mtls := []string{"-cacert", p.CA, "-cert", p.Client, "-key", p.ClientKey}

	out := grpcurlOK(t, append(mtls, addr, "list")...)
	if got := strings.Fields(out); !slices.Equal(got, services) {
		t.Errorf("grpcurl list over mTLS:\n%s\nwant:\n%s", out, strings.Join(services, "\n"))
	}
	out = grpcurlOK(t, append(mtls, addr, "grpc.health.v1.Health/Check")...)
	if strings.Join(strings.Fields(out), " ") != `{ "status": "SERVING" }` {
		t.Errorf("health check over mTLS: %q", out)
	}
	out = grpcurlOK(t, append(mtls, addr, "sockagent.v1.AgentService/GetInfo")...)
	if !strings.Contains(out, `"version": "`+binBuild(t, sockagentBin).Version+`"`) {
		t.Errorf("GetInfo over mTLS:\n%s", out)
	}

	// The agent refuses a missing or foreign client certificate with a TLS alert or, under
	// TLS 1.3, by closing the connection after the client's side of the handshake; grpcurl
	// reports either as a failed dial. A foreign agent certificate is refused by grpcurl.
	other := newPKI(t)
	for _, tc := range []struct {
		name string
		args []string
		want string // in grpcurl's stderr
	}{
		{"without a client certificate", []string{"-cacert", p.CA}, "Failed to dial target host"},
		{"client certificate of another CA", []string{"-cacert", p.CA, "-cert", other.Client, "-key", other.ClientKey}, "Failed to dial target host"},
		{"another CA", []string{"-cacert", other.CA, "-cert", p.Client, "-key", p.ClientKey}, "certificate signed by unknown authority"},
		{"plaintext", []string{"-plaintext"}, "Failed to dial target host"},
	} {
		t.Run(tc.name, func(t *testing.T) { // not parallel: the log is checked after them
			out, errOut, code := grpcurl(t, append(tc.args, addr, "grpc.health.v1.Health/Check")...)
			if code == 0 || !strings.Contains(errOut, tc.want) || strings.Contains(out, "SERVING") {
				t.Errorf("grpcurl %s: exit %d, stdout %q, stderr %q; want a failure saying %q", tc.name, code, out, errOut, tc.want)
			}
		})
	}
	// The agent logged each refused handshake.
	for _, re := range []string{`tls handshake failed.*client didn't provide a certificate`, `tls handshake failed.*first record does not look like a TLS handshake`} {
		if _, err := ag.log.waitFor(regexp.MustCompile(re), 10*time.Second); err != nil {
			t.Error(err)
		}
	}

	// sockctl, the binary, with the same files.
	sout, serr, code := runSockctl(t, "--agent", addr, "--ca", p.CA, "--cert", p.Client, "--key", p.ClientKey, "info", "-o", "json")
	if code != 0 || !strings.Contains(sout, `"version": "`+binBuild(t, sockagentBin).Version+`"`) {
		t.Errorf("sockctl info over mTLS: exit %d\n%s\n%s", code, sout, serr)
	}
	_, serr, code = runSockctl(t, "--agent", addr, "--ca", p.CA, "info")
	if code != 1 || !strings.Contains(serr, "cannot reach agent "+addr) || !strings.Contains(serr, "--cert FILE --key FILE") {
		t.Errorf("sockctl info without a client certificate: exit %d, stderr %q", code, serr)
	}
}

// TestGrpcurlTLSToken: a TLS agent (no client certificates) that requires a token; grpcurl
// sends it with -H, sockctl reads it from --token-file.
func TestGrpcurlTLSToken(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("# the agent's tokens\nci:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ag := startLocal(t, "--tls-cert", p.Agent, "--tls-key", p.AgentKey, "--token-file", tokens)
	addr := ag.addr

	out := grpcurlOK(t, "-cacert", p.CA, "-H", "authorization: Bearer s3cret", addr, "sockagent.v1.SocketService/ListSockets")
	if strings.TrimSpace(out) != "{}" {
		t.Errorf("ListSockets with the token: %q, want {}", out)
	}
	out, errOut, code := grpcurl(t, "-cacert", p.CA, "-H", "authorization: Bearer wrong", addr, "sockagent.v1.SocketService/ListSockets")
	if code == 0 || !strings.Contains(errOut, "code = Unauthenticated desc = ") || !strings.Contains(errOut, "missing or invalid credentials") {
		t.Errorf("ListSockets with a wrong token: exit %d\n%s\n%s", code, out, errOut)
	}
	// Without a token even reflection is refused: grpcurl cannot resolve the method.
	out, errOut, code = grpcurl(t, "-cacert", p.CA, addr, "list")
	if code == 0 || !strings.Contains(errOut, "code = Unauthenticated") {
		t.Errorf("list without a token: exit %d\n%s\n%s", code, out, errOut)
	}

	// sockctl reads the agent's own token file: the first token.
	sout, serr, code := runSockctl(t, "--agent", addr, "--ca", p.CA, "--token-file", tokens, "ls")
	if code != 0 || !strings.HasPrefix(sout, "ID ") {
		t.Errorf("sockctl ls with the token: exit %d\n%s\n%s", code, sout, serr)
	}
	_, serr, code = runSockctl(t, "--agent", addr, "--ca", p.CA, "ls")
	if code != 1 || !strings.Contains(serr, "UNAUTHENTICATED") || !strings.Contains(serr, "--token-file FILE") {
		t.Errorf("sockctl ls without the token: exit %d, stderr %q", code, serr)
	}
}

// TestSockctlRunInventoryTLS runs examples/hello-tcp.yaml across two sockagent processes,
// each serving mTLS with a CA of its own, reached with the credentials its inventory entry
// gives (paths relative to the inventory). The file's listener on 0.0.0.0 (there for runs
// across hosts) is moved to loopback: a test never listens on every interface of the host.
func TestSockctlRunInventoryTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var addrs []string
	for _, name := range []string{"pki1", "pki2"} {
		p, err := pki.Init(pki.Options{Dir: filepath.Join(dir, name)})
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, startLocal(t, "--tls-cert", p.Agent, "--tls-key", p.AgentKey, "--client-ca", p.CA).addr)
	}
	inv := filepath.Join(dir, "inventory.yaml")
	text := "agents:\n" +
		"  server: {address: " + addrs[0] + ", ca: pki1/ca.pem, cert: pki1/client.pem, key: pki1/client-key.pem}\n" +
		"  client: {address: " + addrs[1] + ", ca: pki2/ca.pem, cert: pki2/client.pem, key: pki2/client-key.pem}\n"
	if err := os.WriteFile(inv, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../../examples/hello-tcp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const wildcard = `address: "0.0.0.0:0"`
	if n := strings.Count(string(example), wildcard); n != 1 {
		t.Fatalf("examples/hello-tcp.yaml has %d listeners on 0.0.0.0:0, want 1", n)
	}
	scenario := filepath.Join(dir, "hello-tcp.yaml")
	testpki.WriteFile(t, scenario, []byte(strings.Replace(string(example), wildcard, `address: "127.0.0.1:0"`, 1)))
	out, errOut, code := runSockctl(t, "run", scenario, "--inventory", inv)
	if code != 0 || !strings.Contains(out, " passed, 0 failed\n") {
		t.Errorf("sockctl run over mTLS: exit %d\n%s\n%s", code, out, errOut)
	}
	// The same run with one CA for both fails before the first step, saying why.
	out, errOut, code = runSockctl(t, "run", scenario,
		"--agent", "server="+addrs[0], "--agent", "client="+addrs[1],
		"--ca", filepath.Join(dir, "pki1", "ca.pem"), "--cert", filepath.Join(dir, "pki1", "client.pem"), "--key", filepath.Join(dir, "pki1", "client-key.pem"))
	if code != 1 || !strings.Contains(errOut, "agent(s) unreachable: client; no step ran") || !strings.Contains(out, "certificate signed by unknown authority") {
		t.Errorf("sockctl run with the wrong CA for client: exit %d\n%s\n%s", code, out, errOut)
	}
}
