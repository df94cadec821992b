package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/ctl/pki"
	"github.com/sockagent/sockagent/ctl/runner"
)

// newPKI makes a lab PKI in a new directory of the test.
func newPKI(t *testing.T, opts pki.Options) *pki.Paths {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "pki")
	}
	p, err := pki.Init(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startTLSAgent starts an in-process agent serving TLS with p's agent certificate; with
// mtls it requires a client certificate from p's CA.
func startTLSAgent(t *testing.T, p *pki.Paths, mtls bool, cfg agent.Config) string {
	t.Helper()
	clientCA := ""
	if mtls {
		clientCA = p.CA
	}
	tc, err := agent.ServerTLS(p.Agent, p.AgentKey, clientCA)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLS = tc
	return startAgentConfig(t, cfg)
}

// mtlsFlags are the global flags that present p's client certificate.
func mtlsFlags(p *pki.Paths) []string {
	return []string{"--ca", p.CA, "--cert", p.Client, "--key", p.ClientKey}
}

func sockctlWith(t *testing.T, addr string, flags []string, args ...string) result {
	t.Helper()
	return invocation{args: append(append([]string{"--agent", addr}, flags...), args...)}.exec(t)
}

func TestMTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t, pki.Options{ClientName: "alice"})
	addr := startTLSAgent(t, p, true, agent.Config{})
	other := newPKI(t, pki.Options{})

	r := sockctlWith(t, addr, mtlsFlags(p), "listen", "tcp", "127.0.0.1:0")
	r.want(t, ExitOK, []string{" listener  open   127.0.0.1:"}, nil)
	id := strings.Fields(strings.Split(r.stdout, "\n")[1])[0]
	sockctlWith(t, addr, mtlsFlags(p), "close", id).want(t, ExitOK, nil, nil)

	for _, tc := range []struct {
		name  string
		flags []string
		code  int
		want  []string
	}{
		// The agent's refusal of a client certificate arrives as a TLS alert or, with TLS 1.3,
		// as a closed connection; the hint names the flags either way.
		{"no client certificate", []string{"--ca", p.CA}, ExitFailure,
			[]string{"cannot reach agent " + addr + ": ", "client certificate", "give --cert FILE --key FILE)"}},
		{"client certificate of another CA", []string{"--ca", p.CA, "--cert", other.Client, "--key", other.ClientKey}, ExitFailure,
			[]string{"cannot reach agent " + addr + ": ", "the client certificate " + other.Client + ", is it signed by the agent's --client-ca, and still valid?)"}},
		{"wrong CA", []string{"--ca", other.CA, "--cert", p.Client, "--key", p.ClientKey}, ExitFailure,
			[]string{"cannot reach agent " + addr + ": ", "certificate signed by unknown authority", "(" + other.CA + " did not sign the agent's certificate: give the CA that did with --ca FILE)"}},
		{"system roots", []string{"--tls", "--cert", p.Client, "--key", p.ClientKey}, ExitFailure,
			[]string{"certificate signed by unknown authority", "give the agent's CA with --ca FILE"}},
		{"plaintext", nil, ExitFailure,
			[]string{"cannot reach agent " + addr + ": ", "(if the agent serves TLS, add --ca FILE"}},
		{"cert without key", []string{"--ca", p.CA, "--cert", p.Client}, ExitUsage,
			[]string{"a client certificate needs both --cert FILE and --key FILE"}},
		{"missing CA file", []string{"--ca", p.CA + ".missing"}, ExitFailure,
			[]string{"read CA certificate: open " + p.CA + ".missing: no such file or directory"}},
		{"CA file without a certificate", []string{"--ca", p.CAKey}, ExitFailure,
			[]string{"CA certificate " + p.CAKey + ": no PEM certificate in the file"}},
		{"key of another certificate", []string{"--ca", p.CA, "--cert", p.Client, "--key", p.AgentKey}, ExitFailure,
			[]string{"client certificate " + p.Client + " and key " + p.AgentKey + ": tls: private key does not match public key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := sockctlWith(t, addr, tc.flags, "ls")
			r.want(t, tc.code, nil, tc.want)
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

func TestTLSServerName(t *testing.T) {
	t.Parallel()
	p := newPKI(t, pki.Options{AgentSANs: []string{"agent.lab"}})
	addr := startTLSAgent(t, p, false, agent.Config{})
	sockctlWith(t, addr, []string{"--ca", p.CA}, "ls").want(t, ExitFailure, nil,
		[]string{"cannot reach agent", "(the agent's certificate does not name the address dialled: dial a name it has, or set --server-name NAME)"})
	sockctlWith(t, addr, []string{"--ca", p.CA, "--server-name", "agent.lab"}, "ls").want(t, ExitOK, []string{"ID"}, nil)
	sockctlWith(t, addr, []string{"--ca", p.CA, "--server-name", "other.lab"}, "ls").want(t, ExitFailure, nil, []string{"--server-name NAME"})
}

func TestTLSExpiredAgentCertificate(t *testing.T) {
	t.Parallel()
	p := newPKI(t, pki.Options{Days: 1, Now: time.Now().Add(-72 * time.Hour)})
	addr := startTLSAgent(t, p, false, agent.Config{})
	sockctlWith(t, addr, []string{"--ca", p.CA}, "ls").want(t, ExitFailure, nil,
		[]string{"certificate has expired or is not yet valid", "(check the certificate's validity dates and the clocks of both hosts)"})
}

func TestTLSToPlaintextAgent(t *testing.T) {
	t.Parallel()
	p := newPKI(t, pki.Options{})
	addr := startAgent(t)
	sockctlWith(t, addr, []string{"--ca", p.CA}, "ls").want(t, ExitFailure, nil,
		[]string{"cannot reach agent", "(the agent does not serve TLS: drop --tls, --ca, --cert and --server-name)"})
}

// authRecorder is a server interceptor that records the authorization headers it sees.
type authRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (a *authRecorder) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	a.mu.Lock()
	a.seen = append(a.seen, strings.Join(md.Get("authorization"), "|"))
	a.mu.Unlock()
	return h(ctx, req)
}

func (a *authRecorder) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		return "(no RPC)"
	}
	return a.seen[len(a.seen)-1]
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestToken(t *testing.T) {
	t.Parallel()
	toks, err := agent.ParseTokens(strings.NewReader("ci:s3cret\nbob:0ther\n"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &authRecorder{}
	addr := startAgentConfig(t, agent.Config{Tokens: toks, ServerOptions: []grpc.ServerOption{grpc.ChainUnaryInterceptor(rec.unary)}})
	dir := t.TempDir()
	good := writeFile(t, dir, "good", "# sockctl's token\n\n  ci:s3cret  \nbob:0ther\n")
	bare := writeFile(t, dir, "bare", "0ther\n")
	wrong := writeFile(t, dir, "wrong", "ci:nope\n")

	sockctlWith(t, addr, []string{"--token-file", good}, "ls").want(t, ExitOK, []string{"ID"}, nil)
	if got := rec.last(); got != "Bearer s3cret" {
		t.Errorf("authorization %q, want %q", got, "Bearer s3cret")
	}
	sockctlWith(t, addr, []string{"--token-file", bare}, "ls").want(t, ExitOK, nil, nil)
	if got := rec.last(); got != "Bearer 0ther" {
		t.Errorf("authorization %q, want %q", got, "Bearer 0ther")
	}
	r := invocation{env: map[string]string{envTokenFile: good}, args: []string{"--agent", addr, "ls"}}.exec(t)
	r.want(t, ExitOK, nil, nil)
	// The flag wins over the environment.
	r = invocation{env: map[string]string{envTokenFile: good}, args: []string{"--agent", addr, "--token-file", wrong, "ls"}}.exec(t)
	r.want(t, ExitFailure, nil, []string{"(the agent did not accept the token in " + wrong + ")"})

	sockctl(t, addr, "ls").want(t, ExitFailure, nil,
		[]string{"sockctl: list sockets: UNAUTHENTICATED (Unauthenticated): missing or invalid credentials (the agent requires a token: --token-file FILE)\n"})
	sockctlWith(t, addr, []string{"--token-file", wrong}, "ls").want(t, ExitFailure, nil,
		[]string{"UNAUTHENTICATED", "(the agent did not accept the token in " + wrong + ")"})

	for _, tc := range []struct{ text, want string }{
		{"# nothing\n\n", "no token in it"},
		{"ci:\n", "line 1: empty secret"},
		{"\nci:two words\n", "line 2: the secret contains white space"},
	} {
		f := writeFile(t, dir, "bad", tc.text)
		sockctlWith(t, addr, []string{"--token-file", f}, "ls").want(t, ExitFailure, nil, []string{"token file " + f + ": " + tc.want})
	}
	sockctlWith(t, addr, []string{"--token-file", filepath.Join(dir, "missing")}, "ls").want(t, ExitFailure, nil,
		[]string{"read token file: open " + filepath.Join(dir, "missing")})

	// Not in clear text to another host: refused before any connection.
	sockctlWith(t, "192.0.2.1:7700", []string{"--token-file", good}, "ls").want(t, ExitUsage, nil,
		[]string{"token file " + good + ": refusing to send a bearer token in clear text to 192.0.2.1:7700; use TLS"})
}

func TestTokenOverMTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t, pki.Options{})
	toks, err := agent.ParseTokens(strings.NewReader("ci:s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	addr := startTLSAgent(t, p, true, agent.Config{Tokens: toks})
	tok := writeFile(t, t.TempDir(), "token", "ci:s3cret\n")
	flags := append(mtlsFlags(p), "--token-file", tok)
	sockctlWith(t, addr, flags, "info").want(t, ExitOK, nil, nil)
	sockctlWith(t, addr, mtlsFlags(p), "info").want(t, ExitFailure, nil, []string{"UNAUTHENTICATED", "--token-file FILE"})
	// The demo passes the credentials on to each of its commands.
	r := sockctlWith(t, addr, flags, "demo")
	r.want(t, ExitOK, []string{"# demo passed: 21 sockctl commands"}, nil)
	// A TLS agent is not on loopback as far as the token is concerned: TLS carries it.
	tlsTarget := strings.Replace(addr, "127.0.0.1", "localhost", 1)
	sockctlWith(t, tlsTarget, flags, "ls").want(t, ExitOK, nil, nil)
}

// TestRunInventoryTLS runs a scenario across two mTLS agents of two different CAs, each
// reached with the credentials of its inventory entry (paths relative to the inventory).
func TestRunInventoryTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p1 := newPKI(t, pki.Options{Dir: filepath.Join(dir, "pki1")})
	p2 := newPKI(t, pki.Options{Dir: filepath.Join(dir, "pki2"), AgentSANs: []string{"agent2.lab"}})
	toks, err := agent.ParseTokens(strings.NewReader("ci:s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	a1 := startTLSAgent(t, p1, true, agent.Config{})
	a2 := startTLSAgent(t, p2, true, agent.Config{Tokens: toks})
	writeFile(t, dir, "token", "ci:s3cret\n")
	inv := writeFile(t, dir, "inv.yaml", fmt.Sprintf(`agents:
  server: {address: %q, ca: pki1/ca.pem, cert: pki1/client.pem, key: pki1/client-key.pem}
  client:
    address: %q
    ca: pki2/ca.pem
    cert: pki2/client.pem
    key: %s
    server_name: agent2.lab
    token_file: token
  other: 127.0.0.1:1
`, a1, a2, filepath.Join(dir, "pki2", "client-key.pem")))
	scen := writeScenario(t, "hello.yaml", helloTCP)
	r := runArgs(t, scen, "--inventory", inv, "-o", "json")
	var rep runner.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != ExitOK {
		t.Fatalf("exit %d, %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	if rep.Passed != 10 || len(rep.Agents) != 2 || rep.Agents[0].Address != a1 || rep.Agents[1].Address != a2 {
		t.Errorf("passed %d, agents %+v; want 10 steps on %s and %s", rep.Passed, rep.Agents, a1, a2)
	}

	// Without the inventory's credentials the agents do not answer; the report says why.
	r = runArgs(t, scen, "--agent", "server="+a1, "--agent", "client="+a1, "--ca", p2.CA)
	r.want(t, ExitFailure, []string{"certificate signed by unknown authority"}, []string{"agent(s) unreachable: server, client; no step ran"})

	// The global flags apply to every agent; --agent changes an address, not its credentials.
	r = runArgs(t, scen, "--agent", "server="+a1, "--agent", "client="+a1, "--ca", p1.CA, "--cert", p1.Client, "--key", p1.ClientKey)
	r.want(t, ExitOK, []string{"10 passed, 0 failed"}, nil)
	// tls: false makes one agent plaintext whatever the flags say.
	plain := startAgent(t)
	inv2 := writeFile(t, dir, "inv2.yaml", fmt.Sprintf("agents:\n  server: %s\n  client: {address: %q, tls: false}\n", a1, plain))
	r = runArgs(t, scen, "--inventory", inv2, "--ca", p1.CA, "--cert", p1.Client, "--key", p1.ClientKey)
	r.want(t, ExitOK, []string{"10 passed, 0 failed"}, nil)
	inv1 := writeFile(t, dir, "inv1.yaml", "agents:\n  server: {address: 127.0.0.1:1, ca: pki1/ca.pem, cert: pki1/client.pem, key: pki1/client-key.pem}\n")
	r = runArgs(t, scen, "--inventory", inv1, "--agent", "server="+a1)
	r.want(t, ExitOK, []string{"10 passed, 0 failed"}, nil)
}

func TestRunInventoryBad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	scen := writeScenario(t, "hello.yaml", helloTCP)
	for _, tc := range []struct {
		name, inv string
		code      int
		want      string
	}{
		{"unknown key", "agents:\n  server: {address: 127.0.0.1:1, cafile: ca.pem}\n", ExitUsage,
			`:2:34: unknown key "cafile" in an agent entry (known: address, labels, tls, ca, cert, key, server_name, token_file)`},
		{"no address", "agents:\n  server:\n    ca: ca.pem\n", ExitUsage, ":3:5: an agent entry needs an address"},
		{"cert without key", "agents:\n  server: {address: 127.0.0.1:1, cert: c.pem}\n", ExitUsage, ":2:11: a client certificate needs both cert and key"},
		{"plaintext with ca", "agents:\n  server: {address: 127.0.0.1:1, tls: false, ca: c.pem}\n", ExitUsage, ":2:11: tls: false (plaintext) with ca"},
		{"a list", "agents:\n  server: [127.0.0.1:1]\n", ExitUsage, ":2:11: an agent is an address (HOST:PORT) or a map"},
		{"bad tls", "agents:\n  server: {address: 127.0.0.1:1, tls: maybe}\n", ExitUsage, "cannot unmarshal"},
		{"unknown top-level key", "agent:\n  server: 127.0.0.1:1\n", ExitUsage, "field agent not found"},
		{"missing CA", "agents:\n  server: {address: 127.0.0.1:1, ca: nope.pem}\n", ExitFailure,
			"sockctl: agent server: read CA certificate: open " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{"token in clear text", "agents:\n  server: {address: 192.0.2.1:7700, token_file: t}\n", ExitUsage,
			"agent server: token file " + filepath.Join(dir, "t") + ": refusing to send a bearer token in clear text to 192.0.2.1:7700"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inv := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.inv)
			r := runArgs(t, scen, "--inventory", inv)
			want := tc.want
			if strings.HasPrefix(want, ":") { // FILE:LINE:COL: message
				want = inv + want
			}
			r.want(t, tc.code, nil, []string{want})
			if r.stdout != "" {
				t.Errorf("stdout %q: a step ran", r.stdout)
			}
			if strings.HasPrefix(tc.want, ":") && strings.Count(r.stderr, "server_name") > 1 {
				t.Errorf("stderr lists the keys twice: %s", r.stderr)
			}
		})
	}
}

func TestPKICommand(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "lab")
	r := invocation{args: []string{"pki", "init", "--dir", dir, "--agent-san", "127.0.0.1,localhost", "--agent-san", "10.77.0.2", "--client-name", "ci", "--days", "30"}}.exec(t)
	r.want(t, ExitOK, []string{
		"wrote " + filepath.Join(dir, "agent.pem") + ", " + filepath.Join(dir, "agent-key.pem") + " (the agent, for 127.0.0.1, localhost, 10.77.0.2)\n",
		"sockagent --listen 10.77.0.2:7700 --tls-cert " + filepath.Join(dir, "agent.pem") + " --tls-key " + filepath.Join(dir, "agent-key.pem") + " --client-ca " + filepath.Join(dir, "ca.pem") + "\n",
		"sockctl --agent 10.77.0.2:7700 --ca " + filepath.Join(dir, "ca.pem") + " --cert " + filepath.Join(dir, "client.pem") + " --key " + filepath.Join(dir, "client-key.pem") + " info\n",
		"grpcurl -cacert " + filepath.Join(dir, "ca.pem") + " -cert " + filepath.Join(dir, "client.pem") + " -key " + filepath.Join(dir, "client-key.pem") + " 10.77.0.2:7700 list\n",
	}, nil)
	p := &pki.Paths{CA: filepath.Join(dir, "ca.pem"), Agent: filepath.Join(dir, "agent.pem"), AgentKey: filepath.Join(dir, "agent-key.pem"),
		Client: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem")}
	// The files it wrote serve mTLS as printed.
	addr := startTLSAgent(t, p, true, agent.Config{})
	sockctlWith(t, addr, mtlsFlags(p), "ls").want(t, ExitOK, nil, nil)

	r = invocation{args: []string{"pki", "init", "--dir", dir}}.exec(t)
	r.want(t, ExitUsage, nil, []string{"pki init: refusing to overwrite existing files (--force overwrites): " + filepath.Join(dir, "ca.pem") + ", "})
	r = invocation{args: []string{"pki", "client", "--dir", dir, "--name", "alice"}}.exec(t)
	r.want(t, ExitOK, []string{"wrote " + filepath.Join(dir, "alice.pem") + ", " + filepath.Join(dir, "alice-key.pem")}, nil)
	alice := []string{"--ca", p.CA, "--cert", filepath.Join(dir, "alice.pem"), "--key", filepath.Join(dir, "alice-key.pem")}
	sockctlWith(t, addr, alice, "ls").want(t, ExitOK, nil, nil)
	invocation{args: []string{"pki", "client", "--dir", dir, "--name", "alice"}}.exec(t).want(t, ExitUsage, nil, []string{"refusing to overwrite"})
	invocation{args: []string{"pki", "client", "--dir", dir, "--name", "alice", "--force"}}.exec(t).want(t, ExitOK, nil, nil)

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"pki"}, ExitUsage, "pki needs a command: init or client"},
		{[]string{"pki", "init"}, ExitUsage, `required flag(s) "dir" not set`},
		{[]string{"pki", "init", "--dir", t.TempDir(), "--agent-san", "not a name"}, ExitUsage, `agent SAN "not a name": neither an IP address nor a DNS name`},
		{[]string{"pki", "init", "--dir", t.TempDir(), "--days", "0"}, ExitUsage, "--days must be positive"},
		{[]string{"pki", "client", "--dir", dir, "--name", "../x"}, ExitUsage, `client name "../x"`},
		{[]string{"pki", "client", "--dir", t.TempDir(), "--name", "bob"}, ExitFailure, "pki client: load the CA"},
	} {
		invocation{args: tc.args}.exec(t).want(t, tc.code, nil, []string{tc.want})
	}
}
