package ctl

import (
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sockagent/sockagent/ctl/pki"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// TestSocketTLSCommands: listen, dial, accept, get, connect and probe with the socket TLS
// flags, the PEM files read by sockctl and sent to the agent; and their usage errors.
func TestSocketTLSCommands(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	p := newPKI(t, pki.Options{ClientName: "tls-client"})
	var lis sockagentv1.ListenResponse
	okJSON(t, addr, &lis, "listen", "tcp", "127.0.0.1:0", "--tls-cert", p.Agent, "--tls-key", p.AgentKey, "--tls-ca", p.CA, "--alpn", "sock/1")
	lid, laddr := lis.GetSocket().GetSocketId(), lis.GetSocket().GetLocalAddress()
	defer ok(t, addr, "close", lid)
	if ti := lis.GetSocket().GetTls(); !ti.GetListener() {
		t.Fatalf("listener tls %v", ti)
	}
	var (
		wg       sync.WaitGroup
		accepted result
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		accepted = sockctl(t, addr, "accept", lid, "--wait", "10s", "-o", "json")
	}()
	var dial sockagentv1.DialResponse
	okJSON(t, addr, &dial, "dial", "tcp", laddr, "--tls-ca", p.CA, "--tls-server-name", "localhost", "--tls-cert", p.Client, "--tls-key", p.ClientKey, "--alpn", "sock/1", "--tls-min-version", "1.3")
	did := dial.GetSocket().GetSocketId()
	defer ok(t, addr, "close", did)
	wg.Wait()
	var acc sockagentv1.AcceptResponse
	if accepted.code != ExitOK || protojson.Unmarshal([]byte(accepted.stdout), &acc) != nil {
		t.Fatalf("accept: exit %d\n%s\n%s", accepted.code, accepted.stdout, accepted.stderr)
	}
	aid := acc.GetSocket().GetSocketId()
	defer ok(t, addr, "close", aid)
	ok(t, addr, "send", did, "over TLS")
	if r := ok(t, addr, "recv", aid, "--exact", "8"); r.stdout != "over TLS" {
		t.Errorf("recv %q", r.stdout)
	}
	got := ok(t, addr, "get", did).stdout
	for _, want := range []string{did + " tls: TLS 1.3 TLS_", ", alpn sock/1, server name localhost, peer CN=sockagent,O=sockagent lab", "(issuer CN=sockagent lab CA", ", expires 20"} {
		if !strings.Contains(got, want) {
			t.Errorf("get %s does not show %q:\n%s", did, want, got)
		}
	}
	if got := ok(t, addr, "get", aid).stdout; !strings.Contains(got, aid+" tls: TLS 1.3") || !strings.Contains(got, "peer CN=tls-client") {
		t.Errorf("get %s:\n%s", aid, got)
	}
	if got := ok(t, addr, "get", lid).stdout; !strings.Contains(got, lid+" tls: listener, minimum TLS 1.2") {
		t.Errorf("get %s:\n%s", lid, got)
	}

	// A served TLS echo: connect (netcat over TLS) and probe --mode tls.
	var echo sockagentv1.ListenResponse
	okJSON(t, addr, &echo, "listen", "tcp", "127.0.0.1:0", "--tls-cert", p.Agent, "--tls-key", p.AgentKey)
	eid, eaddr := echo.GetSocket().GetSocketId(), echo.GetSocket().GetLocalAddress()
	defer ok(t, addr, "close", eid)
	ok(t, addr, "serve", eid, "echo")
	r := invocation{stdin: "ping over TLS", args: []string{"--agent", addr, "connect", "tcp", eaddr, "--tls-ca", p.CA}}.exec(t)
	if r.code != ExitOK || r.stdout != "ping over TLS" {
		t.Errorf("connect: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	ok(t, addr, "probe", "tcp", eaddr, "--mode", "tls", "--tls-ca", p.CA, "--count", "5").want(t, ExitOK, []string{"sent:     5", "received: 5", "loss:     0"}, nil)
	sockctl(t, addr, "probe", "tcp", eaddr, "--mode", "tls", "--count", "2").want(t, ExitFailure, nil, []string{"CERTIFICATE_INVALID (2 of 2)", "x509: certificate signed by unknown authority"})
	sockctl(t, addr, "dial", "tcp", eaddr, "--tls-server-name", "db.example", "--tls-ca", p.CA).want(t, ExitFailure, nil, []string{"CERTIFICATE_INVALID", "x509: certificate is valid for"})

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"listen", "tcp", "127.0.0.1:0", "--tls-cert", p.Agent}, "a TLS listener needs its certificate and key files"},
		{[]string{"listen", "tcp", "127.0.0.1:0", "--tls-cert", p.Agent, "--tls-key", p.AgentKey, "--tls-min-version", "1.4"}, `tls min version "1.4"`},
		{[]string{"dial", "tcp", eaddr, "--tls-ca", "/nonexistent/ca.pem"}, "tls CA file: open /nonexistent/ca.pem"},
		{[]string{"dial", "tcp", eaddr, "--tls-cert", p.Client}, "needs both its certificate and its key file"},
		{[]string{"probe", "tcp", eaddr, "--tls-ca", p.CA}, "--tls-* and --alpn time a TLS handshake: give --mode tls"},
	} {
		sockctl(t, addr, tc.args...).want(t, ExitUsage, nil, []string{tc.msg})
	}
}

// examples/tls.yaml runs as written on two in-process agents.
func TestExampleTLS(t *testing.T) {
	t.Parallel()
	r := runArgs(t, "../examples/tls.yaml")
	r.want(t, ExitOK, []string{"close_notify", "wrong server name: failed as expected: ", "x509: certificate is valid for localhost, not db.example",
		"handshake time: min ", "(20/20)", "\n14 passed, 0 failed\n"}, nil)
}
