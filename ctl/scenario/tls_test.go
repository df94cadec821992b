package scenario

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTLSArgs: a tls map on dial, listen and probe is kept as tls.KEY arguments, and
// Resolved.TLS resolves its files against the scenario file's directory.
func TestTLSArgs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, f := range []string{"ca.pem", "c.pem", "k.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("pem"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "s.yaml")
	src := `name: t
agents: {a: local}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0", tls: {cert: c.pem, key: k.pem, ca: ca.pem, alpn: h2, min_version: "1.3"}}, as: l}
  - {on: a, dial: {network: tcp, address: "127.0.0.1:1", tls: {ca: ca.pem, server_name: db, alpn: [h2, http/1.1], insecure_skip_verify: true, cert: /` + strings.TrimPrefix(filepath.Join(dir, "c.pem"), "/") + `, key: k.pem}}}
  - {on: a, probe: {network: tcp, address: "127.0.0.1:1", mode: tls, tls: {}}}
  - {on: a, dial: {network: tcp, address: "127.0.0.1:1"}}
`
	f, err := Parse(path, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	resolved := func(i int) *TLS {
		t.Helper()
		r, err := Resolve(path, f.Steps[i].Args, func(string) (string, error) { return "", nil })
		if err != nil {
			t.Fatal(err)
		}
		tl, err := r.TLS()
		if err != nil {
			t.Fatal(err)
		}
		return tl
	}
	l := resolved(0)
	if l == nil || l.Cert != filepath.Join(dir, "c.pem") || l.Key != filepath.Join(dir, "k.pem") || l.CA != filepath.Join(dir, "ca.pem") ||
		strings.Join(l.ALPN, "|") != "h2" || l.MinVersion != "1.3" || l.Insecure || l.ServerName != "" {
		t.Errorf("listen tls %+v", l)
	}
	d := resolved(1)
	if d == nil || d.ServerName != "db" || strings.Join(d.ALPN, "|") != "h2|http/1.1" || !d.Insecure || d.Cert != filepath.Join(dir, "c.pem") || d.CA != filepath.Join(dir, "ca.pem") {
		t.Errorf("dial tls %+v", d)
	}
	if p := resolved(2); p == nil || p.CA != "" || p.ALPN != nil {
		t.Errorf("probe tls {} %+v", p)
	}
	if p := resolved(3); p != nil {
		t.Errorf("dial without tls: %+v", p)
	}
}

// TestTLSValidation: mistakes in a tls map are FILE:LINE:COL errors before any RPC.
func TestTLSValidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c.pem"), []byte("pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big.pem"), make([]byte, 64<<10+1), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.yaml")
	for _, tc := range []struct{ name, step, at, want string }{
		{"unknown key", `dial: {network: tcp, address: "h:1", tls: {server_nam: c.pem}}`, "server_nam", `unknown key "server_nam" in dial.tls; did you mean "server_name"?`},
		{"server key on listen", `listen: {network: tcp, address: "h:1", tls: {cert: c.pem, key: c.pem, server_name: x}}`, "server_name", `unknown key "server_name" in listen.tls`},
		{"listen without key", `listen: {network: tcp, address: "h:1", tls: {cert: c.pem}}`, "tls", `listen.tls needs cert and key`},
		{"cert without key", `dial: {network: tcp, address: "h:1", tls: {cert: c.pem}}`, "tls", `dial.tls: a client certificate needs both cert and key`},
		{"missing file", `dial: {network: tcp, address: "h:1", tls: {ca: nothere.pem}}`, "nothere", `dial.tls.ca: stat ` + filepath.Join(dir, "nothere.pem") + `: no such file or directory`},
		{"big file", `dial: {network: tcp, address: "h:1", tls: {ca: big.pem}}`, "big.pem", `dial.tls.ca: ` + filepath.Join(dir, "big.pem") + ` has 65537 bytes, more than the agent accepts (65536)`},
		{"version", `dial: {network: tcp, address: "h:1", tls: {min_version: 1.4}}`, "1.4", `dial.tls.min_version: want one of 1.0, 1.1, 1.2, 1.3, got "1.4"`},
		{"insecure", `dial: {network: tcp, address: "h:1", tls: {insecure_skip_verify: yes}}`, "yes", `dial.tls.insecure_skip_verify: want true or false, got "yes"`},
		{"tls not a map", `dial: {network: tcp, address: "h:1", tls: true}`, "true", `dial.tls must be a map such as {ca: ca.pem}`},
		{"alpn empty", `dial: {network: tcp, address: "h:1", tls: {alpn: [h2, ""]}}`, `""`, `dial.tls.alpn: "" is not a protocol name`},
		{"tls on bind", `bind: {network: udp, address: "h:1", tls: {}}`, "tls", `unknown key "tls" in bind`},
		{"probe mode", `probe: {network: tcp, address: "h:1", mode: tsl}`, "tsl", `mode: probe takes mode connect, echo or tls; got "tsl"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := "name: t\nagents: {a: local}\nsteps:\n  - {on: a, " + tc.step + "}\n"
			p := at(t, src, 4, tc.at)
			want := fmt.Sprintf("%s:%d:%d: %s", path, p.Line, p.Col, tc.want)
			_, err := Parse(path, []byte(src))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v\nwant %s", err, want)
			}
		})
	}
}
