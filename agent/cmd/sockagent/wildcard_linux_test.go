package main

// Listeners on every interface (0.0.0.0, [::]) happen only inside a network namespace the test
// creates: an agent without authentication, or a socket it opens, bound to a wildcard address
// of the host would be reachable from the host's networks while the test runs.

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/internal/testpki"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// TestNonLoopbackAllowed: --insecure, a token file or mTLS let the agent serve on all
// interfaces, with the warnings that apply; "localhost" resolves to loopback and needs
// nothing. The agents run in a namespace of the test's own, where all interfaces are its lo.
func TestNonLoopbackAllowed(t *testing.T) {
	t.Parallel()
	ns := newNetns(t)
	k := newAgentPKI(t)
	tokens := filepath.Join(k.dir, "tokens")
	testpki.WriteFile(t, tokens, []byte("ci:ci-secret-0123456789\n"))
	if err := os.Chmod(tokens, 0o644); err != nil {
		t.Fatal(err)
	}
	insecureWarn := `msg="--insecure: serving without authentication`
	plainWarn := `msg="tokens travel in plaintext over the network; add --tls-cert and --tls-key"`
	permWarn := `msg="the token file is readable by others; chmod 600 it"`
	tests := []struct {
		name          string
		args          []string
		wildcard      bool // whether it serves on every interface (Go's listener: [::] for 0.0.0.0)
		warn, notWarn []string
	}{
		{"insecure", []string{"--listen", "0.0.0.0:0", "--insecure"}, true, []string{insecureWarn}, []string{plainWarn}},
		{"insecure IPv6", []string{"--listen", "[::]:0", "--insecure"}, true, []string{insecureWarn}, nil},
		{"token file", []string{"--listen", "0.0.0.0:0", "--token-file", tokens}, true, []string{plainWarn, permWarn}, []string{insecureWarn}},
		{"mTLS", append([]string{"--listen", "0.0.0.0:0"}, k.mtlsFlags()...), true, nil, []string{insecureWarn, plainWarn}},
		{"localhost", []string{"--listen", "localhost:0"}, false, nil, []string{insecureWarn}},
		{"loopback with insecure", []string{"--listen", "127.0.0.1:0", "--insecure"}, false, []string{insecureWarn}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := start(t, append([]string{"ip", "netns", "exec", ns, sockagentBin}, tt.args...)...)
			served, err := netip.ParseAddrPort(p.addr)
			if err != nil || served.Addr().IsUnspecified() != tt.wildcard || served.Addr().IsLoopback() == tt.wildcard || served.Port() == 0 {
				t.Errorf("serving on %q (%v), want every interface %v (loopback otherwise) and the port the kernel chose", p.addr, err, tt.wildcard)
			}
			if code := p.stop(t); code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
			lines, err := p.log.all(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			log := strings.Join(lines, "\n")
			for _, w := range tt.warn {
				if !strings.Contains(log, w) {
					t.Errorf("no %s in the log:\n%s", w, log)
				}
			}
			for _, w := range tt.notWarn {
				if strings.Contains(log, w) {
					t.Errorf("%s in the log:\n%s", w, log)
				}
			}
		})
	}
}

// TestIPv4Wildcard: a tcp or udp socket bound to 0.0.0.0 is an IPv4 socket, as in the textbook
// programs: its local address stays 0.0.0.0:PORT (Go alone would open a dual-stack [::] socket)
// and its network stays what the caller asked for; a peer reaches it on 127.0.0.1.
func TestIPv4Wildcard(t *testing.T) {
	t.Parallel()
	ns := newNetns(t)
	p := start(t, "ip", "netns", "exec", ns, sockagentBin, "--listen", "unix:"+filepath.Join(shortTempDir(t), "a.sock"))
	sc := p.sockets()
	lis, err := sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "0.0.0.0:0"})
	if err != nil {
		t.Fatal(err)
	}
	udp, err := sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: "udp", Address: "0.0.0.0:0"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s       *sockagentv1.Socket
		network string
	}{{lis.GetSocket(), "tcp"}, {udp.GetSocket(), "udp"}} {
		local := tc.s.GetLocalAddress()
		if !strings.HasPrefix(local, "0.0.0.0:") || strings.HasSuffix(local, ":0") || tc.s.GetNetwork() != tc.network {
			t.Errorf("%s socket on 0.0.0.0: local %q network %q, want 0.0.0.0:PORT and %s", tc.network, local, tc.s.GetNetwork(), tc.network)
		}
	}
	_, port, _ := net.SplitHostPort(lis.GetSocket().GetLocalAddress())
	d, err := sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: "127.0.0.1:" + port})
	if err != nil {
		t.Fatalf("dial the wildcard listener on 127.0.0.1:%s: %v", port, err)
	}
	if got := d.GetSocket().GetRemoteAddress(); got != "127.0.0.1:"+port {
		t.Errorf("dialled %s, want 127.0.0.1:%s", got, port)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}
