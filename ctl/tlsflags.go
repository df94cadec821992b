package ctl

import (
	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"github.com/spf13/pflag"
)

// tlsFlags are the TLS flags of a socket command (dial, connect, probe as clients; listen as
// a server). They are not the global --tls --ca --cert --key --server-name, which secure the
// connection to the agent: these make the agent's own socket speak TLS.
type tlsFlags struct {
	files client.TLSFiles
	fs    *pflag.FlagSet
}

var tlsClientFlagNames = []string{"tls-server-name", "tls-ca", "tls-cert", "tls-key", "alpn", "tls-min-version", "tls-insecure"}

// register adds the flags; a listener has no server name and no insecure.
func (t *tlsFlags) register(f *pflag.FlagSet, listener bool) {
	t.fs = f
	if listener {
		f.StringVar(&t.files.Cert, "tls-cert", "", "serve TLS with the certificate chain in PEM `FILE` (read here, sent to the agent; with --tls-key)")
		f.StringVar(&t.files.Key, "tls-key", "", "the private key of --tls-cert, PEM `FILE` (never logged or shown by the agent)")
		f.StringVar(&t.files.CA, "tls-ca", "", "require client certificates signed by the CAs in PEM `FILE`")
	} else {
		f.StringVar(&t.files.ServerName, "tls-server-name", "", "speak TLS and check the server's certificate for `NAME` (default: the host of ADDRESS)")
		f.StringVar(&t.files.CA, "tls-ca", "", "speak TLS, verifying the server with the CAs in PEM `FILE` (read here; default: the agent host's system roots)")
		f.StringVar(&t.files.Cert, "tls-cert", "", "speak TLS with the client certificate in PEM `FILE` (with --tls-key)")
		f.StringVar(&t.files.Key, "tls-key", "", "the private key of --tls-cert, PEM `FILE` (never logged or shown by the agent)")
		f.BoolVar(&t.files.Insecure, "tls-insecure", false, "speak TLS and accept any server certificate (only if the agent's policy allows tls.insecure_skip_verify)")
	}
	f.StringSliceVar(&t.files.ALPN, "alpn", nil, "TLS application protocols `P1,P2` offered (client) or accepted (listener), in order of preference")
	f.StringVar(&t.files.MinVersion, "tls-min-version", "", "lowest TLS `VERSION` accepted: 1.2 (default) or 1.3")
}

// given reports whether any TLS flag was given.
func (t *tlsFlags) given() bool {
	for _, name := range tlsClientFlagNames {
		if fl := t.fs.Lookup(name); fl != nil && fl.Changed {
			return true
		}
	}
	return false
}

// client returns the TlsClient the flags ask for, or nil when none was given (force: probe
// --mode tls, which needs one, gets the defaults).
func (t *tlsFlags) client(force bool) (*sockagentv1.TlsClient, error) {
	if !t.given() && !force {
		return nil, nil
	}
	c, err := t.files.Client("")
	if err != nil {
		return nil, usagef("%v", err)
	}
	return c, nil
}

// server returns the TlsServer the flags ask for, or nil when none was given.
func (t *tlsFlags) server() (*sockagentv1.TlsServer, error) {
	if !t.given() {
		return nil, nil
	}
	s, err := t.files.Server("")
	if err != nil {
		return nil, usagef("%v", err)
	}
	return s, nil
}
