// Package client is sockctl's side of the gRPC connection to an agent: dialling with the
// right credentials (TLS, mutual TLS, bearer tokens), the hints that say why an agent could
// not be reached, the extraction of the agent's reason from an error (in contract.Domain),
// retries of calls that are safe to repeat, and the run sessions a scenario keeps alive on
// each agent.
//
// It imports neither the agent (the server) nor the command line: the CLI (package ctl) and
// the scenario runner (package ctl/runner) are both built on it.
package client

import (
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sockagent/sockagent/agent/tracing"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// ConfigError is a target or a combination of settings that cannot work, found before any
// connection is made: a caller reports it as a usage error, not as a failure of the agent.
type ConfigError struct {
	Err error
}

// Error is the problem, as the caller reports it.
func (e *ConfigError) Error() string { return e.Err.Error() }

// Unwrap returns the problem.
func (e *ConfigError) Unwrap() error { return e.Err }

func configErrorf(format string, args ...any) error {
	return &ConfigError{Err: fmt.Errorf(format, args...)}
}

// flowWindow is the HTTP/2 flow-control window of sockctl's streams and connections, in bytes.
const flowWindow = 256 << 10

// Dial opens a client connection to the agent at target, presenting the credentials of o. It
// is the one place that chooses transport and per-RPC credentials: TLS when o asks for it
// (o.UsesTLS), else plaintext; a bearer token when o has a token file, refused over plaintext
// unless the target is on this host (loopback or unix:). grpc.NewClient does not connect; the
// first RPC does. A unary call naming a socket id sends the instance the id carries
// (ForSocket).
//
// A target or settings that cannot work are a *ConfigError; a file that cannot be read or
// parsed is another error.
func Dial(target string, o Options) (*grpc.ClientConn, error) {
	if err := o.Check(); err != nil {
		return nil, &ConfigError{Err: err}
	}
	opts := append([]grpc.DialOption{grpc.WithChainUnaryInterceptor(instanceOfSocket),
		// What the agent reads ahead of sockctl (attach, connect): a static window, as the
		// agent's own (agent.FlowWindow), so a stream of 64 KiB messages does not wait for a
		// window update after each one.
		grpc.WithInitialWindowSize(flowWindow), grpc.WithInitialConnWindowSize(flowWindow)},
		tracing.DialOptions()...)
	if o.UsesTLS() {
		cfg, err := o.TLSConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if o.TokenFile != "" {
		local := IsLocalTarget(target)
		if !o.UsesTLS() && !local {
			return nil, configErrorf("token file %s: refusing to send a bearer token in clear text to %s; use TLS (--ca FILE or --tls), or an agent on this host (loopback or unix:)", o.TokenFile, target)
		}
		token, err := ReadToken(o.TokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: token, local: local}))
	}
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, configErrorf("invalid agent address %q: %v", target, err)
	}
	return cc, nil
}

// IsConfigError reports whether err is (or wraps) a *ConfigError.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

// Clients are the agent's services on one connection.
type Clients struct {
	Sockets  sockagentv1.SocketServiceClient
	Agent    sockagentv1.AgentServiceClient
	Measure  sockagentv1.MeasureServiceClient
	Sessions sockagentv1.SessionServiceClient
}

// NewClients returns the clients of every service of the agent on cc.
func NewClients(cc grpc.ClientConnInterface) Clients {
	return Clients{
		Sockets:  sockagentv1.NewSocketServiceClient(cc),
		Agent:    sockagentv1.NewAgentServiceClient(cc),
		Measure:  sockagentv1.NewMeasureServiceClient(cc),
		Sessions: sockagentv1.NewSessionServiceClient(cc),
	}
}
