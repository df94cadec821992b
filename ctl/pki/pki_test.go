package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("%s: want exactly one CERTIFICATE block", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %o, want %o", path, got, want)
	}
}

func TestInit(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Now()
	p, err := Init(Options{Dir: dir, AgentSANs: []string{"127.0.0.1", "::1", "localhost", "10.77.0.2", "agent.lab"}, ClientName: "alice", Days: 30, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if p.CA != filepath.Join(dir, "ca.pem") || p.ClientKey != filepath.Join(dir, "client-key.pem") {
		t.Errorf("paths %+v", p)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir: %v, mode %v; want a new 0700 directory", err, fi.Mode())
	}
	for _, f := range []string{p.CAKey, p.AgentKey, p.ClientKey} {
		wantMode(t, f, 0o600)
	}
	for _, f := range []string{p.CA, p.Agent, p.Client} {
		wantMode(t, f, 0o644)
	}

	ca := readCert(t, p.CA)
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: IsCA %v, key usage %v", ca.IsCA, ca.KeyUsage)
	}
	if pub, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", ca.PublicKey)
	}
	if d := ca.NotAfter.Sub(now); d < 30*24*time.Hour-time.Minute || d > 30*24*time.Hour+time.Minute {
		t.Errorf("CA valid for %s after now, want 30 days", d)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	agent := readCert(t, p.Agent)
	for _, name := range []string{"localhost", "agent.lab"} {
		if _, err := agent.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("agent certificate for %s: %v", name, err)
		}
	}
	var ips []string
	for _, ip := range agent.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"127.0.0.1", "::1", "10.77.0.2"}; !slices.Equal(ips, want) {
		t.Errorf("agent IP SANs %v, want %v", ips, want)
	}
	if !slices.Equal(agent.DNSNames, []string{"localhost", "agent.lab"}) {
		t.Errorf("agent DNS SANs %v", agent.DNSNames)
	}
	if _, err := agent.Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.77.0.3"}); err == nil {
		t.Error("agent certificate verifies for 10.77.0.3, which it does not name")
	}
	if _, err := agent.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("agent certificate is good for client auth; want server auth only")
	}

	client := readCert(t, p.Client)
	if client.Subject.CommonName != "alice" {
		t.Errorf("client CN %q, want alice", client.Subject.CommonName)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client certificate is good for server auth; want client auth only")
	}
	// The keys match their certificates.
	for _, pair := range [][2]string{{p.CA, p.CAKey}, {p.Agent, p.AgentKey}, {p.Client, p.ClientKey}} {
		if _, err := tls.LoadX509KeyPair(pair[0], pair[1]); err != nil {
			t.Errorf("key pair %s: %v", pair[0], err)
		}
	}
}

func TestInitRefusesOverwrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Init(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Init(Options{Dir: dir})
	if !errors.Is(err, ErrExist) || !strings.Contains(err.Error(), filepath.Join(dir, CAKeyFile)) {
		t.Fatalf("second Init: %v, want ErrExist naming the files", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if string(before) != string(after) {
		t.Error("a refused Init changed ca.pem")
	}
	// One existing file is enough to refuse, and nothing else is written.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, ClientKeyFile), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(Options{Dir: dir2}); !errors.Is(err, ErrExist) {
		t.Fatalf("Init over client-key.pem: %v, want ErrExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, CAFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ca.pem written although Init refused: %v", err)
	}
	// --force replaces, with the right modes even over a wider one.
	if _, err := Init(Options{Dir: dir2, Force: true}); err != nil {
		t.Fatal(err)
	}
	wantMode(t, filepath.Join(dir2, ClientKeyFile), 0o600)
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir2, ClientFile), filepath.Join(dir2, ClientKeyFile)); err != nil {
		t.Error(err)
	}
}

func TestAddClient(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Init(Options{Dir: dir, Days: 10}); err != nil {
		t.Fatal(err)
	}
	p, err := AddClient(Options{Dir: dir, ClientName: "bob", Days: 400})
	if err != nil {
		t.Fatal(err)
	}
	if p.Client != filepath.Join(dir, "bob.pem") || p.ClientKey != filepath.Join(dir, "bob-key.pem") {
		t.Errorf("paths %+v", p)
	}
	wantMode(t, p.ClientKey, 0o600)
	ca, bob := readCert(t, p.CA), readCert(t, p.Client)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := bob.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Error(err)
	}
	if bob.Subject.CommonName != "bob" || bob.NotAfter.After(ca.NotAfter) {
		t.Errorf("CN %q, not after %s (CA %s); want bob, not outliving the CA", bob.Subject.CommonName, bob.NotAfter, ca.NotAfter)
	}
	if _, err := AddClient(Options{Dir: dir, ClientName: "bob"}); !errors.Is(err, ErrExist) {
		t.Errorf("second bob: %v, want ErrExist", err)
	}
	for _, name := range []string{"ca", "agent", "../x", "a b"} {
		if _, err := AddClient(Options{Dir: dir, ClientName: name}); !errors.Is(err, ErrInvalid) {
			t.Errorf("client %q: %v, want a refusal of the name", name, err)
		}
	}
	if _, err := AddClient(Options{Dir: t.TempDir(), ClientName: "carol"}); err == nil || !strings.Contains(err.Error(), "load the CA") {
		t.Errorf("AddClient without a CA: %v", err)
	}
}

func TestBadOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{
		{},
		{Dir: t.TempDir(), Days: -1},
		{Dir: t.TempDir(), AgentSANs: []string{"not a name"}},
		{Dir: t.TempDir(), AgentSANs: []string{"10.0.0.1", ""}},
	} {
		if _, err := Init(o); !errors.Is(err, ErrInvalid) {
			t.Errorf("Init(%+v) succeeded", o)
		}
	}
	s, err := parseSANs([]string{"[::1]", "*.lab.example", "h1"})
	if err != nil || len(s.ips) != 1 || !slices.Equal(s.dns, []string{"*.lab.example", "h1"}) {
		t.Errorf("parseSANs: %+v, %v", s, err)
	}
}

// TestNewCAIssue: the in-memory generator makes a CA that signs leaves only, and leaves with
// the names, usage and validity asked for, whose keys match.
func TestNewCAIssue(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ca, err := NewCA(Spec{CommonName: "test CA", Organization: "tests", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || !ca.Cert.MaxPathLenZero || ca.Cert.Subject.String() != "CN=test CA,O=tests" {
		t.Errorf("CA: IsCA %v, MaxPathLenZero %v, subject %q", ca.Cert.IsCA, ca.Cert.MaxPathLenZero, ca.Cert.Subject)
	}
	if _, err := tls.X509KeyPair(ca.CertPEM, ca.KeyPEM); err != nil {
		t.Errorf("CA key pair: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	srv, err := ca.Issue(Spec{CommonName: "srv", DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		EmailAddresses: []string{"srv@lab"}, Server: true, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM); err != nil {
		t.Errorf("server key pair: %v", err)
	}
	if srv.Cert.Subject.String() != "CN=srv" || !slices.Equal(srv.Cert.EmailAddresses, []string{"srv@lab"}) {
		t.Errorf("server subject %q, emails %v; want CN=srv (no organization) and srv@lab", srv.Cert.Subject, srv.Cert.EmailAddresses)
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		if _, err := srv.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
	cli, err := ca.Issue(Spec{CommonName: "cli", NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client certificate is good for server auth; want client auth only")
	}
	if _, err := cli.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	// A leaf is no CA: what it signs does not verify.
	sub, err := (&CA{Cert: cli.Cert, Key: mustKey(t, cli.KeyPEM)}).Issue(Spec{CommonName: "sub", NotBefore: now, NotAfter: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	inter.AddCert(cli.Cert)
	if _, err := sub.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("a certificate signed by a leaf verifies")
	}
}

func mustKey(t *testing.T, keyPEM []byte) crypto.Signer {
	t.Helper()
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		t.Fatal("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}
