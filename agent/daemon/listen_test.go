package daemon_test

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/agent/daemon"
)

func setup(t *testing.T, set func(*daemon.Config)) (*daemon.Setup, *bytes.Buffer) {
	t.Helper()
	c := daemon.DefaultConfig()
	set(&c)
	var log bytes.Buffer
	s, err := c.Build(&log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, &log
}

// shortTempDir is a directory with a short path: UNIX socket paths are limited to ~107 bytes.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestListen: TCP and UNIX listeners; a crashed agent's socket file is replaced, a live
// agent's is left alone.
func TestListen(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the file stays, as after a crash
	live := filepath.Join(dir, "live.sock")
	liveLn, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer liveLn.Close()
	notSocket := filepath.Join(dir, "file")
	if err := os.WriteFile(notSocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		listen, network, want string // want: "" listens
	}{
		{"127.0.0.1:0", "tcp", ""},
		{"unix:" + stale, "unix", ""},
		{"unix://" + filepath.Join(dir, "new.sock"), "unix", ""},
		{"unix:" + live, "", live + ": another process serves on this socket"},
		{"unix:" + notSocket, "", "bind: address already in use"},
		{"127.0.0.1:99999", "", "invalid port"},
	} {
		s, _ := setup(t, func(c *daemon.Config) { c.Listen = tt.listen })
		l, err := s.Listen()
		if tt.want != "" {
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Listen %s: %v, want an error with %q", tt.listen, err, tt.want)
			}
			if l != nil {
				l.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("Listen %s: %v", tt.listen, err)
			continue
		}
		if l.Addr().Network() != tt.network {
			t.Errorf("Listen %s: network %s, want %s", tt.listen, l.Addr().Network(), tt.network)
		}
		l.Close()
	}
	if _, err := os.Lstat(live); err != nil {
		t.Errorf("the live agent's socket file: %v, want it kept", err)
	}
	if c, err := net.Dial("unix", live); err != nil {
		t.Errorf("the live agent's socket no longer answers: %v", err)
	} else {
		c.Close()
	}
}

// TestCheckBound: a listen address that is a name is judged by what it bound to.
func TestCheckBound(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	lan := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7700}
	loop := &net.TCPAddr{IP: net.IPv6loopback, Port: 7700}
	unix := &net.UnixAddr{Name: "/run/a.sock", Net: "unix"}
	for _, tt := range []struct {
		name  string
		set   func(*daemon.Config)
		bound net.Addr
		want  string
	}{
		{"name on loopback", func(c *daemon.Config) { c.Listen = "lab-host:7700" }, loop, ""},
		{"UNIX socket", func(c *daemon.Config) { c.Listen = "unix:/run/a.sock" }, unix, ""},
		{"name on a LAN address", func(c *daemon.Config) { c.Listen = "lab-host:7700" }, lan, refusal("lab-host:7700 (192.0.2.1:7700)", false)},
		{"name on a LAN address, TLS", func(c *daemon.Config) { c.Listen, c.TLSCert, c.TLSKey = "lab-host:7700", f.pki.Agent, f.pki.AgentKey }, lan,
			refusal("lab-host:7700 (192.0.2.1:7700)", true)},
		{"name on a LAN address, insecure", func(c *daemon.Config) { c.Listen, c.Insecure = "lab-host:7700", true }, lan, ""},
		{"name on a LAN address, tokens", func(c *daemon.Config) { c.Listen, c.TokenFile = "lab-host:7700", f.tokens }, lan, ""},
		{"name on a LAN address, mTLS", func(c *daemon.Config) {
			c.Listen, c.TLSCert, c.TLSKey, c.ClientCA = "lab-host:7700", f.pki.Agent, f.pki.AgentKey, f.pki.CA
		}, lan, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := setup(t, tt.set)
			wantErr(t, s.CheckBound(tt.bound), tt.want)
		})
	}
}

// TestWarn: what the operator accepted is logged once bound, and nothing else is.
func TestWarn(t *testing.T) {
	t.Parallel()
	f := newFiles(t)
	const (
		insecure  = `level=WARN msg="--insecure: serving without authentication; anyone who can reach this address can open and drive sockets on this host" addr=`
		plaintext = `level=WARN msg="tokens travel in plaintext over the network; add --tls-cert and --tls-key" addr=`
	)
	lan := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7700}
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7700}
	for _, tt := range []struct {
		name  string
		set   func(*daemon.Config)
		bound net.Addr
		want  string // "" nothing logged
	}{
		{"insecure", func(c *daemon.Config) { c.Listen, c.Insecure = "0.0.0.0:7700", true }, lan, insecure + "192.0.2.1:7700"},
		{"insecure on loopback", func(c *daemon.Config) { c.Insecure = true }, loop, insecure + "127.0.0.1:7700"},
		{"loopback", func(*daemon.Config) {}, loop, ""},
		{"tokens in plaintext", func(c *daemon.Config) { c.Listen, c.TokenFile = "0.0.0.0:7700", f.tokens }, lan, plaintext + "192.0.2.1:7700"},
		{"tokens on loopback", func(c *daemon.Config) { c.TokenFile = f.tokens }, loop, ""},
		{"tokens over TLS", func(c *daemon.Config) {
			c.Listen, c.TokenFile, c.TLSCert, c.TLSKey = "0.0.0.0:7700", f.tokens, f.pki.Agent, f.pki.AgentKey
		}, lan, ""},
		{"mTLS, insecure too", func(c *daemon.Config) {
			c.Listen, c.TLSCert, c.TLSKey, c.ClientCA, c.Insecure = "0.0.0.0:7700", f.pki.Agent, f.pki.AgentKey, f.pki.CA, true
		}, lan, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, log := setup(t, tt.set)
			s.Warn(tt.bound)
			got := strings.TrimSpace(log.String())
			if tt.want == "" && got != "" || tt.want != "" && (!strings.Contains(got, tt.want) || strings.Count(got, "\n") != 0) {
				t.Errorf("log:\n%s\nwant one line with:\n%s", got, tt.want)
			}
		})
	}
}
