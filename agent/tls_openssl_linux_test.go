package agent_test

// TLS against another implementation: Debian's openssl s_server and s_client, both
// directions, bytes asserted both ways. The children die with the test (Pdeathsig).

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/internal/testpki"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// opensslProc is a running openssl command: its stdin, and its stdout and stderr so far.
type opensslProc struct {
	cmd            *exec.Cmd
	stdin          io.WriteCloser
	stdout, stderr *lockedBuffer
	done           chan struct{} // closed when the process has exited
}

// needOpenSSL finds openssl; without it the test skips, or fails when CI is set (.ci/run
// installs it).
func needOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("openssl not found (%v); .ci/run installs Debian's openssl", err)
		}
		t.Skip("openssl not found; install Debian's openssl to run this test")
	}
	return p
}

func startOpenSSL(t *testing.T, args ...string) *opensslProc {
	t.Helper()
	cmd := exec.Command(needOpenSSL(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &opensslProc{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// waitOutput polls the process's stdout until re matches (10s at most) and returns the match.
func (p *opensslProc) waitOutput(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := re.FindStringSubmatch(p.stdout.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			if m := re.FindStringSubmatch(p.stdout.String()); m != nil {
				return m
			}
			t.Fatalf("openssl exited before printing %s:\nstdout:\n%s\nstderr:\n%s", re, p.stdout.String(), p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("openssl printed no %s within 10s:\nstdout:\n%s\nstderr:\n%s", re, p.stdout.String(), p.stderr.String())
		}
		time.Sleep(5 * time.Millisecond) // polling interval; the output decides
	}
}

// TestTLSOpenSSLServer: the agent dials openssl s_server (which requires a client
// certificate), with ALPN; bytes go both ways; the agent's Shutdown write reaches s_server as
// close_notify.
func TestTLSOpenSSLServer(t *testing.T) {
	t.Parallel()
	needOpenSSL(t)
	e := newEnv(t)
	dir := t.TempDir()
	ca, clientCA := testpki.NewCA(t, "test CA"), testpki.NewCA(t, "client CA")
	certFile, keyFile := ca.Server(t).Write(t, dir, "server")
	caFile := filepath.Join(dir, "client-ca.pem")
	testpki.WriteFile(t, caFile, clientCA.PEM)
	srv := startOpenSSL(t, "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-cert", certFile, "-key", keyFile,
		"-Verify", "1", "-CAfile", caFile, "-verify_return_error", "-alpn", "sock/1")
	port := srv.waitOutput(t, regexp.MustCompile(`ACCEPT 127\.0\.0\.1:(\d+)`))[1]
	cli := clientCA.Client(t, "agent-client")
	s := e.dialTLS(t, "127.0.0.1:"+port, &sockagentv1.TlsClient{RootCasPem: ca.PEM, ServerName: "localhost", CertPem: cli.CertPEM, KeyPem: cli.KeyPEM, Alpn: []string{"sock/1"}})
	if ti := s.GetTls(); ti.GetAlpn() != "sock/1" || ti.GetPeerSubject() != "CN=sockagent,O=sockagent tests" || ti.GetServerName() != "localhost" || ti.GetVersion() != sockagentv1.TlsVersion_TLS_VERSION_1_3 {
		t.Errorf("tls %v", ti)
	}
	e.send(t, s.GetSocketId(), "hello from the agent\n")
	srv.waitOutput(t, regexp.MustCompile(`(?m)^hello from the agent$`))
	if _, err := io.WriteString(srv.stdin, "hello from s_server\n"); err != nil {
		t.Fatal(err)
	}
	if got := e.recvExact(t, s.GetSocketId(), 20); got != "hello from s_server\n" {
		t.Errorf("recv %q", got)
	}
	if _, err := e.sc.Shutdown(ctxT(t), &sockagentv1.ShutdownRequest{SocketId: s.GetSocketId(), Direction: sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_WRITE}); err != nil {
		t.Fatal(err)
	}
	// s_server answers the agent's close_notify by closing: the agent reads EOF, and s_server
	// (-naccept 1) exits.
	r, err := e.sc.Recv(ctxT(t), &sockagentv1.RecvRequest{SocketId: s.GetSocketId(), Timeout: dur(10 * time.Second)})
	if err != nil || !r.GetEof() {
		t.Errorf("recv after shutdown: %v %v; want eof\nstdout:\n%s\nstderr:\n%s", r, err, srv.stdout.String(), srv.stderr.String())
	}
	select {
	case <-srv.done:
	case <-time.After(10 * time.Second):
		t.Errorf("s_server still running after the agent's close_notify\nstdout:\n%s", srv.stdout.String())
	}
	if out := srv.stdout.String(); !strings.Contains(out, "CN = agent-client") && !strings.Contains(out, "CN=agent-client") {
		t.Errorf("s_server did not report the agent's client certificate:\n%s", out)
	}
}

// TestTLSOpenSSLClient: openssl s_client connects to an agent TLS listener that requires a
// client certificate; Accept returns the TLS socket; bytes go both ways; the agent's close
// reaches s_client, which exits.
func TestTLSOpenSSLClient(t *testing.T) {
	t.Parallel()
	needOpenSSL(t)
	e := newEnv(t)
	dir := t.TempDir()
	ca, clientCA := testpki.NewCA(t, "test CA"), testpki.NewCA(t, "client CA")
	srvCert := ca.Server(t)
	l := e.listenTLS(t, &sockagentv1.TlsServer{CertPem: srvCert.CertPEM, KeyPem: srvCert.KeyPEM, ClientCaPem: clientCA.PEM, Alpn: []string{"sock/1"}})
	caFile := filepath.Join(dir, "ca.pem")
	testpki.WriteFile(t, caFile, ca.PEM)
	certFile, keyFile := clientCA.Client(t, "openssl-client").Write(t, dir, "client")
	cli := startOpenSSL(t, "s_client", "-connect", l.GetLocalAddress(), "-servername", "localhost", "-CAfile", caFile,
		"-verify_return_error", "-cert", certFile, "-key", keyFile, "-alpn", "sock/1", "-quiet")
	a := e.accept(t, l.GetSocketId())
	if ti := a.GetTls(); ti.GetPeerSubject() != "CN=openssl-client,O=sockagent tests" || ti.GetAlpn() != "sock/1" || ti.GetServerName() != "localhost" {
		t.Errorf("accepted tls %v", ti)
	}
	if _, err := io.WriteString(cli.stdin, "hello from s_client\n"); err != nil {
		t.Fatal(err)
	}
	if got := e.recvExact(t, a.GetSocketId(), 20); got != "hello from s_client\n" {
		t.Errorf("recv %q", got)
	}
	e.send(t, a.GetSocketId(), "hello from the agent\n")
	cli.waitOutput(t, regexp.MustCompile(`(?m)^hello from the agent$`))
	if _, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: a.GetSocketId()}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cli.done:
	case <-time.After(10 * time.Second):
		t.Errorf("s_client still running after the agent closed\nstdout:\n%s\nstderr:\n%s", cli.stdout.String(), cli.stderr.String())
	}
	if out := cli.stderr.String(); !strings.Contains(out, "verify return:1") {
		t.Errorf("s_client did not verify the agent's certificate:\n%s", out)
	}
}
