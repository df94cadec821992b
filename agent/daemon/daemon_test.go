package daemon_test

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/daemon"
	"github.com/sockagent/sockagent/ctl/pki"
)

// TestValidate: each rule that needs no file, with a setting it accepts and one it refuses,
// and the refusal's whole message.
func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		set  func(*daemon.Config)
		want string // "" accepted
	}{
		{"defaults", func(*daemon.Config) {}, ""},
		{"idle timeout never", func(c *daemon.Config) { c.IdleTimeout = 0 }, ""},
		{"negative idle timeout", func(c *daemon.Config) { c.IdleTimeout = -time.Second }, "--idle-timeout -1s: give a duration such as 10m, or 0 for never"},
		{"default timeout", func(c *daemon.Config) { c.DefaultTimeout = time.Millisecond }, ""},
		{"zero default timeout", func(c *daemon.Config) { c.DefaultTimeout = 0 }, "--default-timeout 0s: give a positive duration such as 30s"},
		{"negative default timeout", func(c *daemon.Config) { c.DefaultTimeout = -time.Second }, "--default-timeout -1s: give a positive duration such as 30s"},
		{"max recv bytes 1", func(c *daemon.Config) { c.MaxRecvBytes = 1 }, ""},
		{"max recv bytes at the limit", func(c *daemon.Config) { c.MaxRecvBytes = daemon.MaxRecvLimit }, ""},
		{"zero max recv bytes", func(c *daemon.Config) { c.MaxRecvBytes = 0 }, fmt.Sprintf("--max-recv-bytes 0: give 1 to %d", daemon.MaxRecvLimit)},
		{"max recv bytes over the limit", func(c *daemon.Config) { c.MaxRecvBytes = daemon.MaxRecvLimit + 1 },
			fmt.Sprintf("--max-recv-bytes %d: give 1 to %d", daemon.MaxRecvLimit+1, daemon.MaxRecvLimit)},
		{"max message bytes 1024", func(c *daemon.Config) { c.MaxMessageBytes = 1024 }, ""},
		{"max message bytes 1023", func(c *daemon.Config) { c.MaxMessageBytes = 1023 }, "--max-message-bytes 1023: give at least 1024"},
		{"shutdown timeout", func(c *daemon.Config) { c.ShutdownTimeout = time.Millisecond }, ""},
		{"zero shutdown timeout", func(c *daemon.Config) { c.ShutdownTimeout = 0 }, "--shutdown-timeout 0s: give a positive duration such as 10s"},
		{"log level debug", func(c *daemon.Config) { c.LogLevel = "debug" }, ""},
		{"log level loud", func(c *daemon.Config) { c.LogLevel = "loud" }, `--log-level "loud": use debug, info, warn or error`},
		{"log format json", func(c *daemon.Config) { c.LogFormat = "json" }, ""},
		{"log format xml", func(c *daemon.Config) { c.LogFormat = "xml" }, `--log-format "xml": use text or json`},
		{"certificate and key", func(c *daemon.Config) { c.TLSCert, c.TLSKey = "a.crt", "a.key" }, ""},
		{"certificate without key", func(c *daemon.Config) { c.TLSCert = "a.crt" }, "give --tls-cert and --tls-key together"},
		{"key without certificate", func(c *daemon.Config) { c.TLSKey = "a.key" }, "give --tls-cert and --tls-key together"},
		{"client CA with TLS", func(c *daemon.Config) { c.TLSCert, c.TLSKey, c.ClientCA = "a.crt", "a.key", "ca.crt" }, ""},
		{"client CA without TLS", func(c *daemon.Config) { c.ClientCA = "ca.crt" }, "--client-ca needs TLS: give --tls-cert and --tls-key too"},
		{"socket dir", func(c *daemon.Config) { c.SocketDir = "/srv/sockets" }, ""},
		{"relative socket dir", func(c *daemon.Config) { c.SocketDir = "sockets" }, `--socket-dir "sockets": give an absolute path, such as ` + daemon.DefaultSocketDir()},
		{"empty socket dir", func(c *daemon.Config) { c.SocketDir = "" }, `--socket-dir "": give an absolute path, such as ` + daemon.DefaultSocketDir()},
		// The first rule broken is the one reported, in the order of the checks above.
		{"connection limits of 1", func(c *daemon.Config) {
			c.MaxConnections, c.MaxUnauthenticated, c.MaxConnectionsPerPeer, c.MaxStreams, c.MaxHealthWatches = 1, 1, 1, 1, 1
		}, ""},
		{"zero max connections", func(c *daemon.Config) { c.MaxConnections = 0 }, "--max-connections 0: give 1 to 1048576"},
		{"huge max connections", func(c *daemon.Config) { c.MaxConnections = 1<<20 + 1 }, "--max-connections 1048577: give 1 to 1048576"},
		{"negative max unauthenticated", func(c *daemon.Config) { c.MaxUnauthenticated = -1 }, "--max-unauthenticated -1: give 1 to --max-connections (1024)"},
		{"max unauthenticated over max connections", func(c *daemon.Config) { c.MaxConnections, c.MaxUnauthenticated = 10, 11 },
			"--max-unauthenticated 11: give 1 to --max-connections (10)"},
		{"max unauthenticated at max connections", func(c *daemon.Config) { c.MaxConnections, c.MaxUnauthenticated, c.MaxConnectionsPerPeer = 10, 10, 10 }, ""},
		{"zero per peer", func(c *daemon.Config) { c.MaxConnectionsPerPeer = 0 }, "--max-connections-per-peer 0: give 1 to --max-connections (1024)"},
		{"per peer over max connections", func(c *daemon.Config) { c.MaxConnections, c.MaxUnauthenticated, c.MaxConnectionsPerPeer = 10, 10, 11 },
			"--max-connections-per-peer 11: give 1 to --max-connections (10)"},
		{"auth timeout at the minimum", func(c *daemon.Config) { c.AuthTimeout = 100 * time.Millisecond }, ""},
		{"auth timeout at the maximum", func(c *daemon.Config) { c.AuthTimeout = 10 * time.Minute }, ""},
		{"zero auth timeout", func(c *daemon.Config) { c.AuthTimeout = 0 }, "--auth-timeout 0s: give 100ms to 10m0s, such as 10s"},
		{"auth timeout too short", func(c *daemon.Config) { c.AuthTimeout = 99 * time.Millisecond }, "--auth-timeout 99ms: give 100ms to 10m0s, such as 10s"},
		{"auth timeout too long", func(c *daemon.Config) { c.AuthTimeout = time.Hour }, "--auth-timeout 1h0m0s: give 100ms to 10m0s, such as 10s"},
		{"zero max streams", func(c *daemon.Config) { c.MaxStreams = 0 }, "--max-streams 0: give 1 to 1048576"},
		{"negative max health watches", func(c *daemon.Config) { c.MaxHealthWatches = -5 }, "--max-health-watches -5: give 1 to 1048576"},
		{"two rules broken", func(c *daemon.Config) { c.LogFormat, c.ShutdownTimeout = "xml", 0 }, "--shutdown-timeout 0s: give a positive duration such as 10s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := daemon.DefaultConfig()
			tt.set(&c)
			wantErr(t, c.Validate(), tt.want)
		})
	}
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("error %q, want none", err)
	case want != "" && err == nil:
		t.Errorf("no error, want %q", want)
	case want != "" && err.Error() != want:
		t.Errorf("error:\n%s\nwant:\n%s", err, want)
	}
}

// files are the files the settings of a test name.
type files struct {
	pki                          *pki.Paths
	tokens, openTokens, badToken string
	policy, badPolicy            string
	dir                          string
}

func newFiles(t *testing.T) files {
	t.Helper()
	dir := t.TempDir()
	p, err := pki.Init(pki.Options{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	f := files{pki: p, dir: dir,
		tokens: write(t, dir, "tokens", 0o600, "ci:ci-secret-0123456789\n"), openTokens: write(t, dir, "open-tokens", 0o644, "ci:ci-secret-0123456789\n"),
		badToken: write(t, dir, "bad-tokens", 0o600, "alice:\n"),
		policy:   write(t, dir, "policy.yaml", 0o600, "default:\n  networks: [tcp]\n"), badPolicy: write(t, dir, "bad-policy.yaml", 0o600, "default:\n  networks: [sctp]\n"),
	}
	return f
}

func write(t *testing.T, dir, name string, perm os.FileMode, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// refusal is the whole message of a refused --listen addr.
func refusal(addr string, tls bool) string {
	s := "refusing to serve on " + addr + " without authentication: anyone who can reach it\n" +
		"could open sockets on this host and reach every network it can.\n"
	if tls {
		s += "TLS without --client-ca encrypts but does not say who calls.\n"
	}
	return s + "Fix: --tls-cert F --tls-key F --client-ca F (mTLS), or --token-file F (better with TLS too),\n" +
		"or --listen on loopback (127.0.0.1:7700), or --insecure to accept the risk."
}

// TestBuild: the rules that load files, and the loopback rule, each with settings it accepts
// and settings it refuses (the whole message, or the parts that are the OS's).
func TestBuild(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	mtls := func(c *daemon.Config) { c.TLSCert, c.TLSKey, c.ClientCA = f.pki.Agent, f.pki.AgentKey, f.pki.CA }
	tests := []struct {
		name string
		set  func(*daemon.Config)
		want []string // "" accepted; else the whole message, or parts of it when it quotes the OS
	}{
		{"TLS", func(c *daemon.Config) { c.TLSCert, c.TLSKey = f.pki.Agent, f.pki.AgentKey }, nil},
		{"mTLS", mtls, nil},
		{"missing certificate", func(c *daemon.Config) { c.TLSCert, c.TLSKey = filepath.Join(f.dir, "nope.crt"), f.pki.AgentKey },
			[]string{"load server certificate", "nope.crt", "no such file"}},
		{"missing client CA", func(c *daemon.Config) { mtls(c); c.ClientCA = filepath.Join(f.dir, "nope-ca.pem") }, []string{"nope-ca.pem", "no such file"}},
		{"tokens", func(c *daemon.Config) { c.TokenFile = f.tokens }, nil},
		{"missing token file", func(c *daemon.Config) { c.TokenFile = filepath.Join(f.dir, "nope") },
			[]string{"--token-file: token file: open " + filepath.Join(f.dir, "nope") + ": no such file or directory"}},
		{"bad token file", func(c *daemon.Config) { c.TokenFile = f.badToken }, []string{"--token-file: ", `line 1: empty secret after ':'`}},
		{"policy", func(c *daemon.Config) { c.PolicyFile = f.policy }, nil},
		{"bad policy", func(c *daemon.Config) { c.PolicyFile = f.badPolicy }, []string{"--policy: ", `unknown network "sctp"`}},
		{"missing policy", func(c *daemon.Config) { c.PolicyFile = filepath.Join(f.dir, "nope.yaml") }, []string{"--policy: ", "no such file"}},
		{"audit log", func(c *daemon.Config) { c.AuditLog = filepath.Join(f.dir, "audit.jsonl") }, nil},
		{"audit log to the log's writer", func(c *daemon.Config) { c.AuditLog = "-" }, nil},
		{"audit log in no directory", func(c *daemon.Config) { c.AuditLog = filepath.Join(f.dir, "nope", "audit.jsonl") },
			[]string{"--audit-log: open " + filepath.Join(f.dir, "nope", "audit.jsonl") + ": no such file or directory"}},
		{"a file error before the loopback rule", func(c *daemon.Config) { c.Listen, c.PolicyFile = "0.0.0.0:0", f.badPolicy }, []string{"--policy: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := daemon.DefaultConfig()
			tt.set(&c)
			s, err := c.Build(&bytes.Buffer{})
			if s != nil {
				defer s.Close()
			}
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Build succeeded, want an error with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestLoopbackRule: without authentication or --insecure, an address is refused unless it is
// loopback or a UNIX socket (a host name is judged once bound: TestCheckBound); mTLS, tokens
// or --insecure allow any.
func TestLoopbackRule(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	none := func(*daemon.Config) {}
	tls := func(c *daemon.Config) { c.TLSCert, c.TLSKey = f.pki.Agent, f.pki.AgentKey }
	tests := []struct {
		listen string
		auth   string
		set    func(*daemon.Config)
		want   string
	}{
		{"127.0.0.1:7700", "none", none, ""},
		{"127.1.2.3:0", "none", none, ""},
		{"[::1]:0", "none", none, ""},
		{"[::ffff:127.0.0.1]:0", "none", none, ""},
		{"localhost:0", "none", none, ""},
		{"unix:/run/sockagent.sock", "none", none, ""},
		{"not an address", "none", none, ""}, // Listen fails and says so
		{"0.0.0.0:0", "none", none, refusal("0.0.0.0:0", false)},
		{"[::]:0", "none", none, refusal("[::]:0", false)},
		{":0", "none", none, refusal(":0", false)},
		{"192.0.2.1:7700", "none", none, refusal("192.0.2.1:7700", false)},
		{"0.0.0.0:0", "TLS without client CA", tls, refusal("0.0.0.0:0", true)},
		{"0.0.0.0:0", "insecure", func(c *daemon.Config) { c.Insecure = true }, ""},
		{"0.0.0.0:0", "tokens", func(c *daemon.Config) { c.TokenFile = f.tokens }, ""},
		{"0.0.0.0:0", "mTLS", func(c *daemon.Config) { tls(c); c.ClientCA = f.pki.CA }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.listen+" "+tt.auth, func(t *testing.T) {
			t.Parallel()
			c := daemon.DefaultConfig()
			c.Listen = tt.listen
			tt.set(&c)
			s, err := c.Build(&bytes.Buffer{})
			if s != nil {
				s.Close()
			}
			wantErr(t, err, tt.want)
		})
	}
}

// TestBuildResult: what Build hands the agent, and the token file's permission warning.
func TestBuildResult(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	c := daemon.DefaultConfig()
	c.TLSCert, c.TLSKey, c.ClientCA, c.TokenFile, c.PolicyFile = f.pki.Agent, f.pki.AgentKey, f.pki.CA, f.openTokens, f.policy
	c.IdleTimeout, c.DefaultTimeout, c.MaxRecvBytes, c.MaxMessageBytes = 5*time.Minute, 7*time.Second, 1000, 2000
	audit := filepath.Join(f.dir, "audit.jsonl")
	c.AuditLog = audit
	var log bytes.Buffer
	s, err := c.Build(&log)
	if err != nil {
		t.Fatal(err)
	}
	a := s.Agent
	if a.Logger != s.Logger || a.TLS == nil || a.TLS.ClientCAs == nil || a.Tokens.Len() != 1 || a.Policy == nil || a.AuditLogger == nil {
		t.Errorf("agent config lacks what the files give: %+v", a)
	}
	if a.IdleTimeout != 5*time.Minute || a.DefaultTimeout != 7*time.Second || a.MaxRecvBytes != 1000 || a.MaxMessageBytes != 2000 {
		t.Errorf("agent limits: idle %s, default timeout %s, recv %d, message %d", a.IdleTimeout, a.DefaultTimeout, a.MaxRecvBytes, a.MaxMessageBytes)
	}
	if !strings.Contains(log.String(), `level=WARN msg="the token file is readable by others; chmod 600 it" file=`+f.openTokens+" mode=-rw-r--r--") {
		t.Errorf("no warning of the token file's mode in the log:\n%s", log.String())
	}
	a.AuditLogger.Info("audit", "rpc", "Listen")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(audit); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Errorf("audit log: %v %v, want a non-empty file of mode 0600", fi, err)
	}

	// 0 means never to the daemon, and "the default" to the agent; a private token file
	// draws no warning.
	c = daemon.DefaultConfig()
	c.IdleTimeout, c.TokenFile, c.AuditLog = 0, f.tokens, "-"
	log.Reset()
	s, err = c.Build(&log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Agent.IdleTimeout >= 0 {
		t.Errorf("--idle-timeout 0 gives the agent IdleTimeout %s, want a negative one (never)", s.Agent.IdleTimeout)
	}
	if log.Len() != 0 {
		t.Errorf("log %q, want nothing for a token file of mode 0600", log.String())
	}
	s.Agent.AuditLogger.Info("audit")
	if !strings.Contains(log.String(), `"msg":"audit"`) {
		t.Errorf("--audit-log - does not write JSON lines to the log's writer: %q", log.String())
	}
}

// TestConnectionFlags: the connection flags reach the agent's Config as given.
func TestConnectionFlags(t *testing.T) {
	t.Parallel()
	c := daemon.DefaultConfig()
	fs := flag.NewFlagSet("sockagent", flag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse([]string{"--max-connections", "10", "--max-unauthenticated", "4", "--max-connections-per-peer", "3",
		"--auth-timeout", "2s", "--max-streams", "7", "--max-health-watches", "5"}); err != nil {
		t.Fatal(err)
	}
	s, err := c.Build(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := s.Agent
	got := []any{a.MaxConnections, a.MaxUnauthenticated, a.MaxConnectionsPerPeer, a.AuthTimeout, a.MaxStreams, a.MaxHealthWatches}
	want := []any{10, 4, 3, 2 * time.Second, 7, 5}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("agent config %v, want %v", got, want)
	}
	d := daemon.DefaultConfig()
	if d.MaxConnections != agent.DefaultMaxConnections || d.MaxUnauthenticated != agent.DefaultMaxUnauthenticated ||
		d.MaxConnectionsPerPeer != agent.DefaultMaxConnectionsPerPeer || d.AuthTimeout != agent.DefaultAuthTimeout ||
		d.MaxStreams != agent.DefaultMaxStreams || d.MaxHealthWatches != agent.DefaultMaxHealthWatches {
		t.Errorf("the flags' defaults %+v are not the agent's", d)
	}
}
