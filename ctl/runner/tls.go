package runner

import (
	"github.com/sockagent/sockagent/ctl/client"
	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// tlsFiles is the step's tls map as client.TLSFiles (nil without one).
func tlsFiles(args scenario.Resolved) (*client.TLSFiles, error) {
	t, err := args.TLS()
	if err != nil || t == nil {
		return nil, err
	}
	return &client.TLSFiles{ServerName: t.ServerName, CA: t.CA, Cert: t.Cert, Key: t.Key, ALPN: t.ALPN, MinVersion: t.MinVersion, Insecure: t.Insecure}, nil
}

// tlsClient reads a dial's or probe's tls files into the request's TlsClient.
func tlsClient(args scenario.Resolved) (*sockagentv1.TlsClient, error) {
	f, err := tlsFiles(args)
	if err != nil || f == nil {
		return nil, err
	}
	c, err := f.Client("")
	if err != nil {
		return nil, &scenarioError{err}
	}
	return c, nil
}

// tlsServer reads a listen's tls files into the request's TlsServer.
func tlsServer(args scenario.Resolved) (*sockagentv1.TlsServer, error) {
	f, err := tlsFiles(args)
	if err != nil || f == nil {
		return nil, err
	}
	s, err := f.Server("")
	if err != nil {
		return nil, &scenarioError{err}
	}
	return s, nil
}
