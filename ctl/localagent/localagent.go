// Package localagent runs a sockagent inside the calling process, serving plaintext gRPC on a
// loopback port: the "local" agents of a scenario, `sockctl demo` without --agent, the
// benchmarks and the tests all start theirs here, so that starting, serving and stopping an
// in-process agent is written once.
//
// It is the one package under ctl that imports the agent (the server); the runner reaches it
// only through a hook (runner.Config.StartLocal), so that the scenario runner itself stays a
// client.
package localagent

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/tracing"
)

// Agent is an agent serving in this process.
type Agent struct {
	*agent.Agent
	addr   string
	served chan struct{}
}

// Start starts an agent configured by cfg on a new listener on 127.0.0.1:0. A nil cfg.Logger
// discards the agent's log.
func Start(cfg agent.Config) (*Agent, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start an in-process agent: listen on 127.0.0.1:0: %w", err)
	}
	a, err := Serve(lis, cfg)
	if err != nil {
		lis.Close()
		return nil, err
	}
	return a, nil
}

// Serve starts an agent configured by cfg on lis, which it owns from then on. A nil
// cfg.Logger discards the agent's log.
func Serve(lis net.Listener, cfg agent.Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// In-process agents trace their RPCs as separate agents do, when traces are on.
	cfg.ServerOptions = append(cfg.ServerOptions, tracing.ServerOptions()...)
	ag, err := agent.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("start an in-process agent: %w", err)
	}
	a := &Agent{Agent: ag, addr: lis.Addr().String(), served: make(chan struct{})}
	go func() {
		defer close(a.served)
		_ = ag.Serve(lis)
	}()
	return a, nil
}

// Addr is the address the agent serves on: 127.0.0.1:PORT, or the listener's for Serve.
func (a *Agent) Addr() string { return a.addr }

// Close stops the agent at once (its sockets closed, its RPCs cut off) and returns when it has
// stopped serving.
func (a *Agent) Close() error {
	err := a.Agent.Close()
	<-a.served
	return err
}

// StartHook starts an agent with the default configuration, its log discarded, for a caller
// that takes a starter (runner.Config.StartLocal): it returns the agent's address and the
// function that stops it.
func StartHook(context.Context) (addr string, stop func(), err error) {
	a, err := Start(agent.Config{})
	if err != nil {
		return "", nil, err
	}
	return a.Addr(), func() { _ = a.Close() }, nil
}
