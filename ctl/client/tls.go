package client

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// TLSVersions maps the names of a minimum TLS version (--tls-min-version, a scenario's
// min_version) to the API's ("" is the agent's default, TLS 1.2).
var TLSVersions = map[string]sockagentv1.TlsVersion{
	"":    sockagentv1.TlsVersion_TLS_VERSION_UNSPECIFIED,
	"1.0": sockagentv1.TlsVersion_TLS_VERSION_1_0,
	"1.1": sockagentv1.TlsVersion_TLS_VERSION_1_1,
	"1.2": sockagentv1.TlsVersion_TLS_VERSION_1_2,
	"1.3": sockagentv1.TlsVersion_TLS_VERSION_1_3,
}

// TLSFiles is a socket's TLS as a user writes it: PEM files on the client's host, read here
// and sent as PEM. For a client (Dial, Probe) CA verifies the server, Cert and Key are the
// client certificate; for a listener Cert and Key are the server's, and CA, when given,
// requires client certificates it vouches for.
type TLSFiles struct {
	ServerName string
	CA         string
	Cert, Key  string
	ALPN       []string
	MinVersion string
	Insecure   bool // insecure_skip_verify; the agent's policy must allow it
}

// Client reads the files (relative ones against dir; "" is the working directory) into a
// TlsClient.
func (f TLSFiles) Client(dir string) (*sockagentv1.TlsClient, error) {
	v, ok := TLSVersions[f.MinVersion]
	if !ok {
		return nil, fmt.Errorf("tls min version %q: use 1.2 or 1.3 (1.0 and 1.1 for old peers)", f.MinVersion)
	}
	c := &sockagentv1.TlsClient{ServerName: f.ServerName, Alpn: f.ALPN, MinVersion: v, InsecureSkipVerify: f.Insecure}
	var err error
	if c.RootCasPem, err = readPEM("CA", dir, f.CA); err != nil {
		return nil, err
	}
	if c.CertPem, err = readPEM("certificate", dir, f.Cert); err != nil {
		return nil, err
	}
	if c.KeyPem, err = readPEM("key", dir, f.Key); err != nil {
		return nil, err
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, fmt.Errorf("tls: a client certificate needs both its certificate and its key file")
	}
	return c, nil
}

// Server reads the files into a TlsServer; the certificate and the key are required.
func (f TLSFiles) Server(dir string) (*sockagentv1.TlsServer, error) {
	v, ok := TLSVersions[f.MinVersion]
	if !ok {
		return nil, fmt.Errorf("tls min version %q: use 1.2 or 1.3 (1.0 and 1.1 for old peers)", f.MinVersion)
	}
	switch {
	case f.Cert == "" || f.Key == "":
		return nil, fmt.Errorf("tls: a TLS listener needs its certificate and key files")
	case f.ServerName != "" || f.Insecure:
		return nil, fmt.Errorf("tls: server name and insecure are for clients (dial, connect, probe), not a listener")
	}
	s := &sockagentv1.TlsServer{Alpn: f.ALPN, MinVersion: v}
	var err error
	if s.CertPem, err = readPEM("certificate", dir, f.Cert); err != nil {
		return nil, err
	}
	if s.KeyPem, err = readPEM("key", dir, f.Key); err != nil {
		return nil, err
	}
	if s.ClientCaPem, err = readPEM("client CA", dir, f.CA); err != nil {
		return nil, err
	}
	return s, nil
}

// readPEM reads one PEM file, at most contract.MaxPEMBytes (what the agent accepts).
func readPEM(what, dir, name string) ([]byte, error) {
	if name == "" {
		return nil, nil
	}
	if !filepath.IsAbs(name) && dir != "" {
		name = filepath.Join(dir, name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("tls %s file: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, contract.MaxPEMBytes+1))
	if err != nil {
		return nil, fmt.Errorf("tls %s file %s: %w", what, name, err)
	}
	if len(b) > contract.MaxPEMBytes {
		return nil, fmt.Errorf("tls %s file %s: larger than %d bytes, the agent's limit; give only the certificates needed", what, name, contract.MaxPEMBytes)
	}
	return b, nil
}
