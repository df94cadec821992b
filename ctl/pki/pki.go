// Package pki makes the certificates of a lab: a CA, an agent (server) certificate with the
// names and addresses clients use to reach the agent, and client certificates for mutual TLS.
// Keys are ECDSA P-256, written as PKCS #8 PEM with mode 0600; certificates are PEM, 0644.
// Nothing is overwritten unless asked.
//
// Init and AddClient serve `sockctl pki`; NewCA and CA.Issue make the same kinds of
// certificates in memory, for tests that need real ones (agent/internal/testpki wraps them).
package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// File names Init writes into the directory.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	AgentFile     = "agent.pem"
	AgentKeyFile  = "agent-key.pem"
	ClientFile    = "client.pem"
	ClientKeyFile = "client-key.pem"
)

// Defaults of Options.
const (
	DefaultDays       = 365
	DefaultClientName = "sockctl"
)

// DefaultAgentSANs are the agent certificate's names when none are given: the loopback
// addresses and localhost (the name gRPC uses for unix: targets).
var DefaultAgentSANs = []string{"127.0.0.1", "::1", "localhost"}

// backdate is subtracted from NotBefore so that hosts with slightly slow clocks accept a
// certificate made just now.
const backdate = time.Hour

// Options configures Init and AddClient.
type Options struct {
	// Dir receives the files; it is created (0700) if missing.
	Dir string
	// AgentSANs are the agent certificate's IP addresses and DNS names; empty means
	// DefaultAgentSANs.
	AgentSANs []string
	// ClientName is the client certificate's common name; empty means DefaultClientName.
	ClientName string
	// Days is how long the certificates are valid; 0 means DefaultDays.
	Days int
	// Force overwrites existing files; without it, an existing file is an error and nothing
	// is written.
	Force bool
	// Now is the issuing time; zero means time.Now().
	Now time.Time
}

// ErrInvalid is returned (wrapped) for options that cannot be used: no directory, a bad
// SAN, a client name that cannot name files, a negative number of days.
var ErrInvalid = errors.New("invalid option")

// ErrExist is returned (wrapped) when a file to be written exists and Options.Force is off.
var ErrExist = errors.New("refusing to overwrite existing files (--force overwrites)")

// Paths are the files Init or AddClient wrote, as absolute paths.
type Paths struct {
	CA, CAKey       string
	Agent, AgentKey string // Init only
	Client          string
	ClientKey       string
}

// Init creates a CA, an agent certificate for opts.AgentSANs and a client certificate for
// opts.ClientName in opts.Dir.
func Init(opts Options) (*Paths, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	sans, err := parseSANs(opts.AgentSANs)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	p := &Paths{
		CA: filepath.Join(dir, CAFile), CAKey: filepath.Join(dir, CAKeyFile),
		Agent: filepath.Join(dir, AgentFile), AgentKey: filepath.Join(dir, AgentKeyFile),
		Client: filepath.Join(dir, ClientFile), ClientKey: filepath.Join(dir, ClientKeyFile),
	}
	if err := checkFree(opts.Force, p.CA, p.CAKey, p.Agent, p.AgentKey, p.Client, p.ClientKey); err != nil {
		return nil, err
	}
	notAfter := opts.Now.Add(time.Duration(opts.Days) * 24 * time.Hour)
	ca, err := NewCA(Spec{CommonName: "sockagent lab CA", Organization: labOrg, NotBefore: opts.Now.Add(-backdate), NotAfter: notAfter})
	if err != nil {
		return nil, fmt.Errorf("make the CA: %w", err)
	}
	agent, err := ca.Issue(Spec{CommonName: "sockagent", Organization: labOrg, NotBefore: opts.Now.Add(-backdate), NotAfter: notAfter,
		Server: true, DNSNames: sans.dns, IPAddresses: sans.ips})
	if err != nil {
		return nil, fmt.Errorf("make the agent certificate: %w", err)
	}
	client, err := newClient(ca, opts.ClientName, opts.Now, notAfter)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	files := []struct {
		path string
		pem  []byte
		perm fs.FileMode
	}{
		{p.CAKey, ca.KeyPEM, 0o600},
		{p.CA, ca.CertPEM, 0o644},
		{p.AgentKey, agent.KeyPEM, 0o600},
		{p.Agent, agent.CertPEM, 0o644},
		{p.ClientKey, client.KeyPEM, 0o600},
		{p.Client, client.CertPEM, 0o644},
	}
	for _, f := range files {
		if err := writeFile(f.path, f.pem, f.perm, opts.Force); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// AddClient signs one more client certificate, for opts.ClientName, with the CA that Init
// wrote to opts.Dir. The files are NAME.pem and NAME-key.pem. The certificate does not
// outlive the CA.
func AddClient(opts Options) (*Paths, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if !fileNameRE().MatchString(opts.ClientName) {
		return nil, fmt.Errorf("%w: client name %q: use letters, digits, '.', '_' and '-' (it names the files)", ErrInvalid, opts.ClientName)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	p := &Paths{
		CA: filepath.Join(dir, CAFile), CAKey: filepath.Join(dir, CAKeyFile),
		Client: filepath.Join(dir, opts.ClientName+".pem"), ClientKey: filepath.Join(dir, opts.ClientName+"-key.pem"),
	}
	for _, reserved := range []string{p.CA, p.CAKey, filepath.Join(dir, AgentFile), filepath.Join(dir, AgentKeyFile)} {
		if p.Client == reserved || p.ClientKey == reserved {
			return nil, fmt.Errorf("%w: client name %q: its files would replace %s", ErrInvalid, opts.ClientName, reserved)
		}
	}
	if err := checkFree(opts.Force, p.Client, p.ClientKey); err != nil {
		return nil, err
	}
	caCert, caKey, err := LoadCA(p.CA, p.CAKey)
	if err != nil {
		return nil, err
	}
	notAfter := opts.Now.Add(time.Duration(opts.Days) * 24 * time.Hour)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	client, err := newClient(&CA{Cert: caCert, Key: caKey}, opts.ClientName, opts.Now, notAfter)
	if err != nil {
		return nil, err
	}
	if err := writeFile(p.ClientKey, client.KeyPEM, 0o600, opts.Force); err != nil {
		return nil, err
	}
	if err := writeFile(p.Client, client.CertPEM, 0o644, opts.Force); err != nil {
		return nil, err
	}
	return p, nil
}

// fileNameRE is what a client name must look like when it names files.
var fileNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`) })

// LoadCA reads a CA certificate and its private key (PEM, as Init writes them).
func LoadCA(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("load the CA %s, %s: %w", certFile, keyFile, err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("load the CA %s: %w", certFile, err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("load the CA %s: not a CA certificate", certFile)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("load the CA %s: its key cannot sign", keyFile)
	}
	return ca, signer, nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, fmt.Errorf("%w: no directory given", ErrInvalid)
	}
	if o.Days < 0 {
		return o, fmt.Errorf("%w: days %d: must be positive", ErrInvalid, o.Days)
	}
	if o.Days == 0 {
		o.Days = DefaultDays
	}
	if len(o.AgentSANs) == 0 {
		o.AgentSANs = DefaultAgentSANs
	}
	if o.ClientName == "" {
		o.ClientName = DefaultClientName
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	return o, nil
}

type sanList struct {
	dns []string
	ips []net.IP
}

// dnsNameRE is a DNS name, a wildcard allowed as the first label.
var dnsNameRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$`)
})

// parseSANs splits names into IP addresses and DNS names and rejects anything else.
func parseSANs(names []string) (sanList, error) {
	var s sanList
	for _, n := range names {
		n = strings.TrimSpace(n)
		if ip := net.ParseIP(strings.Trim(n, "[]")); ip != nil {
			s.ips = append(s.ips, ip)
			continue
		}
		if !dnsNameRE().MatchString(n) {
			return s, fmt.Errorf("%w: agent SAN %q: neither an IP address nor a DNS name", ErrInvalid, n)
		}
		s.dns = append(s.dns, n)
	}
	return s, nil
}

// newClient issues a client-auth certificate with common name name.
func newClient(ca *CA, name string, now, notAfter time.Time) (*KeyPair, error) {
	kp, err := ca.Issue(Spec{CommonName: name, Organization: labOrg, NotBefore: now.Add(-backdate), NotAfter: notAfter})
	if err != nil {
		return nil, fmt.Errorf("make the client certificate %q: %w", name, err)
	}
	return kp, nil
}

// checkFree fails if any of paths exists and force is off, before anything is written.
func checkFree(force bool, paths ...string) error {
	if force {
		return nil
	}
	var exist []string
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			exist = append(exist, p)
		}
	}
	if len(exist) > 0 {
		return fmt.Errorf("%w: %s", ErrExist, strings.Join(exist, ", "))
	}
	return nil
}

// writeFile creates path with perm. An existing file is an error unless force, in which case
// it is replaced (and gets perm, whatever mode it had).
func writeFile(path string, data []byte, perm fs.FileMode, force bool) error {
	if force {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s", ErrExist, path)
	}
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil { // the umask may have narrowed or the mode be wider
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
