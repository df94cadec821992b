package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Options are the credentials sockctl presents to one agent: the global flags, or those flags
// overridden by the agent's inventory entry. The zero value is plaintext without a token.
// Only Dial turns them into gRPC credentials.
type Options struct {
	TLS        bool   // TLS, verifying the agent's certificate against the system roots unless CA is set
	Plaintext  bool   // plaintext whatever else is set (an inventory entry's "tls: false")
	CA         string // PEM file of the CA(s) that sign agent certificates; implies TLS
	Cert, Key  string // client certificate and key, PEM (mTLS); imply TLS
	ServerName string // the name the agent's certificate must carry; implies TLS
	TokenFile  string // file whose first token is sent as "authorization: Bearer TOKEN"
}

// UsesTLS reports whether the connection is TLS.
func (o Options) UsesTLS() bool {
	return !o.Plaintext && (o.TLS || o.CA != "" || o.Cert != "" || o.Key != "" || o.ServerName != "")
}

// Check rejects settings that cannot work together.
func (o Options) Check() error {
	if (o.Cert == "") != (o.Key == "") {
		return errors.New("a client certificate needs both --cert FILE and --key FILE")
	}
	return nil
}

// TLSConfig reads the CA and the client key pair. TLS 1.2 is the minimum, as on the agent.
func (o Options) TLSConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CA != "" {
		data, err := os.ReadFile(o.CA)
		if err != nil {
			return nil, fmt.Errorf("read CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("CA certificate %s: no PEM certificate in the file", o.CA)
		}
		cfg.RootCAs = pool
	}
	if o.Cert != "" {
		pair, err := tls.LoadX509KeyPair(o.Cert, o.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s and key %s: %w", o.Cert, o.Key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Args are the global flags that give these options to another sockctl invocation.
func (o Options) Args() []string {
	var a []string
	add := func(flag, v string) {
		if v != "" {
			a = append(a, flag, v)
		}
	}
	if o.UsesTLS() {
		if o.TLS {
			a = append(a, "--tls")
		}
		add("--ca", o.CA)
		add("--cert", o.Cert)
		add("--key", o.Key)
		add("--server-name", o.ServerName)
	}
	add("--token-file", o.TokenFile)
	return a
}

// ReadToken returns the secret of the first token in a token file, in the agent's format
// (agent.ParseTokens): the first line that is neither blank nor a '#' comment, "NAME:SECRET"
// or a bare "SECRET", white space around it trimmed. So an agent's token file with one line
// serves sockctl as is.
func ReadToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, secret, named := strings.Cut(line, ":"); named {
			line = strings.TrimSpace(secret)
		}
		switch {
		case line == "":
			return "", fmt.Errorf("token file %s: line %d: empty secret (write NAME:SECRET or the secret alone)", path, n+1)
		case strings.ContainsFunc(line, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
			return "", fmt.Errorf("token file %s: line %d: the secret contains white space, control or non-ASCII characters", path, n+1)
		}
		return line, nil
	}
	return "", fmt.Errorf("token file %s: no token in it (write NAME:SECRET or the secret alone on a line)", path)
}

// bearerToken sends "authorization: Bearer TOKEN" with every RPC. Unlike gRPC's oauth
// credentials it allows a plaintext connection when the agent is on this host (loopback or
// unix:), where nobody on the network can read the token; to any other agent it is sent only
// over TLS (Dial refuses the combination before gRPC does).
type bearerToken struct {
	token string
	local bool // the target is loopback or unix:
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return !b.local }

// IsLocalTarget reports whether a gRPC target is on this host: unix:PATH, localhost, or a
// loopback IP address (with or without a port or a scheme such as dns:///).
func IsLocalTarget(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	hostport := target
	if _, rest, ok := strings.Cut(target, "://"); ok { // scheme://[authority]/endpoint
		_, endpoint, ok := strings.Cut(rest, "/")
		if !ok {
			return false
		}
		hostport = endpoint
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// transportHint suggests a fix for an agent that could not be reached because of TLS, from
// the message gRPC gives (it carries the TLS error only as text).
func transportHint(msg string, o Options) string {
	has := func(s ...string) bool {
		for _, x := range s {
			if strings.Contains(msg, x) {
				return true
			}
		}
		return false
	}
	switch {
	case has("certificate signed by unknown authority"):
		if o.CA == "" {
			return " (no CA this host trusts signed the agent's certificate: give the agent's CA with --ca FILE)"
		}
		return " (" + o.CA + " did not sign the agent's certificate: give the CA that did with --ca FILE)"
	case has("certificate is valid for", "doesn't contain any IP SANs", "not valid for any names"):
		return " (the agent's certificate does not name the address dialled: dial a name it has, or set --server-name NAME)"
	case has("certificate has expired or is not yet valid"):
		return " (check the certificate's validity dates and the clocks of both hosts)"
	case has("first record does not look like a TLS handshake"):
		return " (the agent does not serve TLS: drop --tls, --ca, --cert and --server-name)"
	case has("certificate required"):
		return " (the agent requires a client certificate: give --cert FILE --key FILE)"
	case has("bad certificate", "unknown certificate authority", "unknown certificate"):
		if o.Cert == "" {
			return " (the agent requires a client certificate: give --cert FILE --key FILE)"
		}
		return " (the agent refused the client certificate " + o.Cert + ", is it signed by the agent's --client-ca, and still valid?)"
	case has("expired certificate", "certificate expired"):
		return " (the agent refused the client certificate " + o.Cert + " as expired)"
	case !o.UsesTLS() && has("server preface", "connection reset", "broken pipe", "EOF", "connection closed"):
		return " (if the agent serves TLS, add --ca FILE, or --tls for a certificate from a public CA)"
	case has("server preface", "connection reset", "broken pipe", "EOF", "connection closed"):
		// With TLS 1.3 the agent checks the client certificate after the client's side of
		// the handshake is done: the refusal may arrive as a closed connection, not an alert.
		if o.Cert == "" {
			return " (the agent closed the connection: if it requires a client certificate, give --cert FILE --key FILE)"
		}
		return " (the agent closed the connection: if it refused the client certificate " + o.Cert + ", is it signed by the agent's --client-ca, and still valid?)"
	}
	return ""
}

// authHint suggests a fix for an RPC the agent refused as UNAUTHENTICATED.
func authHint(st *status.Status, o Options) string {
	if st.Code() != codes.Unauthenticated {
		return ""
	}
	if o.TokenFile == "" {
		return " (the agent requires a token: --token-file FILE)"
	}
	return " (the agent did not accept the token in " + o.TokenFile + ")"
}
