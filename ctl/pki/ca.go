package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// labOrg is the organization of the certificates Init and AddClient make.
const labOrg = "sockagent lab"

// Spec describes a certificate to make: a CA's with NewCA, a leaf's with CA.Issue.
type Spec struct {
	CommonName   string
	Organization string
	// Subject, if set, is the whole subject; CommonName and Organization are then ignored.
	Subject *pkix.Name
	// DNSNames, IPAddresses and EmailAddresses are a leaf's subject alternative names.
	DNSNames       []string
	IPAddresses    []net.IP
	EmailAddresses []string
	// Server makes a leaf for server authentication; otherwise it is for client
	// authentication. A certificate for one is refused for the other.
	Server bool
	// NotBefore and NotAfter bound the validity; both must be set.
	NotBefore, NotAfter time.Time
}

// CA is a certificate authority in memory: its certificate and the key that signs with it.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertPEM and KeyPEM are Cert and Key as PEM (KeyPEM is PKCS #8); KeyPEM is empty for a
	// CA whose key was not made here.
	CertPEM, KeyPEM []byte
}

// KeyPair is an issued certificate with its new private key.
type KeyPair struct {
	Cert *x509.Certificate
	// CertPEM is the certificate as PEM; KeyPEM its ECDSA P-256 key as PKCS #8 PEM.
	CertPEM, KeyPEM []byte
}

// NewCA makes a self-signed CA from spec (its names and validity), with a new ECDSA P-256
// key. It signs leaves only: no intermediate CA chains to it.
func NewCA(spec Spec) (*CA, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               spec.subject(),
		NotBefore:             spec.NotBefore,
		NotAfter:              spec.NotAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, cert, err := sign(tmpl, tmpl, key, key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM(der), KeyPEM: keyPEM(key)}, nil
}

// Issue makes a leaf certificate from spec, with a new ECDSA P-256 key, signed by the CA.
func (ca *CA) Issue(spec Spec) (*KeyPair, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	usage := x509.ExtKeyUsageClientAuth
	if spec.Server {
		usage = x509.ExtKeyUsageServerAuth
	}
	tmpl := &x509.Certificate{
		Subject:        spec.subject(),
		NotBefore:      spec.NotBefore,
		NotAfter:       spec.NotAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{usage},
		DNSNames:       spec.DNSNames,
		IPAddresses:    spec.IPAddresses,
		EmailAddresses: spec.EmailAddresses,
	}
	der, cert, err := sign(tmpl, ca.Cert, key, ca.Key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, CertPEM: certPEM(der), KeyPEM: keyPEM(key)}, nil
}

func (s Spec) subject() pkix.Name {
	if s.Subject != nil {
		return *s.Subject
	}
	n := pkix.Name{CommonName: s.CommonName}
	if s.Organization != "" {
		n.Organization = []string{s.Organization}
	}
	return n
}

func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate a key: %w", err)
	}
	return k, nil
}

// sign issues tmpl, with a random serial number, signed by parent's key.
func sign(tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, parentKey crypto.Signer) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return der, cert, nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil { // an ECDSA P-256 key always marshals
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
