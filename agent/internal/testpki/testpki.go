// Package testpki makes throwaway certificate authorities and certificates for tests of
// TLS and mTLS: a CA, server certificates for 127.0.0.1/::1/localhost, client certificates,
// expired ones. It is a test-shaped layer over ctl/pki, the one certificate generator
// (ECDSA P-256 keys): failures end the test, and validity defaults to the test's day. Not
// for production use.
package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sockagent/sockagent/ctl/pki"
)

// org is the organization of every certificate made here; tests see it in callers' subjects.
const org = "sockagent tests"

// CA is a certificate authority.
type CA struct {
	Cert *x509.Certificate
	ca   *pki.CA
	// PEM is the CA certificate in PEM.
	PEM []byte
}

// Cert is an issued certificate with its key, in PEM.
type Cert struct {
	CertPEM, KeyPEM []byte
}

// NewCA makes a self-signed CA named cn, valid from an hour ago for a day.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	ca, err := pki.NewCA(pki.Spec{CommonName: cn, Organization: org, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: ca.Cert, ca: ca, PEM: ca.CertPEM}
}

// Pool is a pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Options of an issued certificate.
type Options struct {
	CN string
	// Subject, if set, is the whole subject instead of CN and the tests' organization.
	Subject   *pkix.Name
	DNS       []string
	IPs       []net.IP
	Emails    []string
	Server    bool      // server auth usage (else client auth)
	NotBefore time.Time // zero: an hour ago
	NotAfter  time.Time // zero: in a day
}

// Server issues a server certificate for 127.0.0.1, ::1 and localhost.
func (ca *CA) Server(t testing.TB) Cert {
	t.Helper()
	return ca.Issue(t, Options{CN: "sockagent", DNS: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, Server: true})
}

// Client issues a client certificate with common name cn.
func (ca *CA) Client(t testing.TB, cn string) Cert {
	t.Helper()
	return ca.Issue(t, Options{CN: cn})
}

// Issue issues a certificate signed by the CA.
func (ca *CA) Issue(t testing.TB, o Options) Cert {
	t.Helper()
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(24 * time.Hour)
	}
	kp, err := ca.ca.Issue(pki.Spec{CommonName: o.CN, Organization: org, Subject: o.Subject, DNSNames: o.DNS, IPAddresses: o.IPs,
		EmailAddresses: o.Emails, Server: o.Server, NotBefore: o.NotBefore, NotAfter: o.NotAfter})
	if err != nil {
		t.Fatal(err)
	}
	return Cert{CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM}
}

// TLS is the certificate as a tls.Certificate.
func (c Cert) TLS(t testing.TB) tls.Certificate {
	t.Helper()
	tc, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// Write writes the certificate and key as NAME.crt and NAME.key into dir.
func (c Cert) Write(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	WriteFile(t, certFile, c.CertPEM)
	WriteFile(t, keyFile, c.KeyPEM)
	return certFile, keyFile
}

// WriteFile writes b to path, readable by the owner only.
func WriteFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
