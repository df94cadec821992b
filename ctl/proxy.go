package ctl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sockagent/sockagent/ctl/client"
	"github.com/sockagent/sockagent/ctl/runner"
	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// toxicHelp says what --toxic takes.
const toxicHelp = "toxic `SPEC` (repeatable), KIND[=VALUE][,KEY=VALUE...][@upstream|@downstream], such as " +
	"latency=50ms,jitter=5ms or bandwidth=100Mbit@upstream; kinds: latency, bandwidth, slicer, reset_peer, timeout, " +
	"limit_data (streams), loss, duplicate, reorder (UDP); default direction downstream; see docs/sockctl.md#the-impairment-proxy"

// toxicFlags is --toxic of serve and toxics.
type toxicFlags struct{ specs []string }

func (t *toxicFlags) register(f *pflag.FlagSet) { f.StringArrayVar(&t.specs, "toxic", nil, toxicHelp) }

// toxics parses the --toxic specs; a wrong one is a usage error (exit 2) naming it.
func (t *toxicFlags) toxics() ([]*sockagentv1.Toxic, error) {
	out := make([]*sockagentv1.Toxic, 0, len(t.specs))
	for _, spec := range t.specs {
		tx, err := scenario.ParseToxic(spec)
		if err != nil {
			return nil, usagef("--toxic %q: %v", spec, err)
		}
		out = append(out, runner.ToxicProto(tx))
	}
	return out, nil
}

// proxyFlags are serve's flags for behaviour proxy.
type proxyFlags struct {
	upstream string
	timeout  time.Duration
	toxics   toxicFlags
}

func (p *proxyFlags) register(f *pflag.FlagSet) {
	f.StringVar(&p.upstream, "upstream", "", "proxy: the `ADDRESS` each connection (or UDP peer) is forwarded to, host:port (a path for unix)")
	f.DurationVar(&p.timeout, "upstream-timeout", 0, "proxy: bound of each upstream connect (0 = 5s)")
	p.toxics.register(f)
}

// apply fills req's proxy fields; they are a usage error on any behaviour but proxy, and a
// proxy needs --upstream.
func (p *proxyFlags) apply(f *pflag.FlagSet, req *sockagentv1.ServeRequest) error {
	if req.GetBehaviour() != sockagentv1.Behaviour_BEHAVIOUR_PROXY {
		for _, name := range []string{"upstream", "upstream-timeout", "toxic"} {
			if f.Changed(name) {
				return usagef("--%s is for behaviour proxy: sockctl serve ID proxy --upstream ADDR [--toxic SPEC]", name)
			}
		}
		return nil
	}
	if p.upstream == "" {
		return usagef("proxy needs --upstream ADDR, the address it forwards to, such as --upstream 127.0.0.1:8080")
	}
	ut, err := protoDuration("upstream-timeout", p.timeout)
	if err != nil {
		return err
	}
	ts, err := p.toxics.toxics()
	if err != nil {
		return err
	}
	req.Upstream, req.UpstreamTimeout, req.Toxics = p.upstream, ut, ts
	return nil
}

func (a *app) toxicsCommand() *cobra.Command {
	var tf toxicFlags
	var clear bool
	cmd := &cobra.Command{
		Use:   "toxics ID (--toxic SPEC... | --clear)",
		Short: "Replace the toxics of a proxy (serve ID proxy) live",
		Long: `Toxics replaces the toxics of socket ID, served with 'sockctl serve ID proxy', by the
--toxic ones (--clear: by none) without dropping its connections: connections in flight take
the new set from their next chunk or datagram. Prints the socket; its proxy state (upstream,
toxics, counters) shows under the table, and in 'get' and 'ls'. Does not block.

SPEC is KIND[=VALUE][,KEY=VALUE...][@upstream|@downstream]; the direction is downstream
(from the upstream back to the proxy's clients) unless given. Every toxic takes
toxicity=P (the probability it applies: per connection for streams, per datagram for UDP;
default 1) and name=NAME (default KIND_DIRECTION).

  latency=50ms,jitter=5ms          delay each chunk by 50ms +- 5ms (at most 1m)
  bandwidth=100Mbit                a rate: 100Mbit, 100M (no unit: bit/s), 12.5MB (bytes/s)
  slicer=64,variation=16,delay=1ms split writes into 64+-16-byte pieces 1ms apart
  reset_peer=after:2s              reset both connections 2s after accept
  reset_peer=bytes:1000            ... after 1000 bytes in this direction (none: at once)
  timeout / timeout=5s             stop forwarding (and close both after 5s)
  limit_data=1000                  close both connections after 1000 bytes
  loss=0.1 / duplicate=0.05        drop / duplicate 10% / 5% of datagrams (UDP)
  reorder=depth:3,delay=100ms      let 3 later datagrams overtake a held one (UDP)

A bad SPEC exits 2 naming it; a toxic the socket's kind does not take (loss on TCP) exits
1 with the agent's INVALID_ARGUMENT; a socket not served as a proxy, with WRONG_SOCKET_KIND.`,
		Example: `  sockctl toxics s3fa9c1-1 --toxic latency=300ms
  sockctl toxics s3fa9c1-1 --toxic latency=50ms,jitter=5ms@upstream --toxic bandwidth=10M
  sockctl toxics s3fa9c1-2 --toxic loss=0.1 --toxic reorder=depth:3
  sockctl toxics s3fa9c1-1 --clear`,
		Args: args(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if clear == (len(tf.specs) > 0) {
				return usagef("give the new toxics with --toxic SPEC (repeatable), or --clear to remove every toxic")
			}
			ts, err := tf.toxics()
			if err != nil {
				return err
			}
			req := &sockagentv1.UpdateToxicsRequest{SocketId: args[0], Toxics: ts}
			return a.socketCall(cmd.Context(), "toxics "+args[0], 0, func(ctx context.Context, c client.Clients) (socketResponse, error) {
				return c.Sockets.UpdateToxics(ctx, req)
			})
		},
	}
	tf.register(cmd.Flags())
	cmd.Flags().BoolVar(&clear, "clear", false, "remove every toxic")
	return idsOnly(cmd)
}

// proxyLines shows a proxy's state under the socket table: where it forwards, its counters,
// and its toxics as --toxic writes them.
//
//	s1 proxy to 127.0.0.1:8080: connections 3 (1 active), upstream 1.20 KiB, downstream 3.00 KiB
//	s1 toxics: latency=50ms,jitter=5ms@downstream bandwidth=100Mbit@upstream
func proxyLines(s *sockagentv1.Socket) string {
	px := s.GetProxy()
	id := clean(s.GetSocketId())
	parts := []string{
		fmt.Sprintf("connections %d (%d active)", px.GetConnections(), px.GetActiveConnections()),
		"upstream " + scenario.FormatBytes(px.GetBytesUpstream()),
		"downstream " + scenario.FormatBytes(px.GetBytesDownstream()),
	}
	if s.GetKind() == sockagentv1.SocketKind_SOCKET_KIND_DATAGRAM || px.GetDatagramsUpstream() > 0 || px.GetDatagramsDownstream() > 0 {
		parts = append(parts, fmt.Sprintf("datagrams upstream %d, downstream %d, dropped %d, duplicated %d, reordered %d",
			px.GetDatagramsUpstream(), px.GetDatagramsDownstream(), px.GetDatagramsDropped(), px.GetDatagramsDuplicated(), px.GetDatagramsReordered()))
	}
	if px.GetResets() > 0 {
		parts = append(parts, fmt.Sprintf("resets %d", px.GetResets()))
	}
	if px.GetUpstreamFailures() > 0 {
		parts = append(parts, fmt.Sprintf("upstream failures %d (last: %s)", px.GetUpstreamFailures(), clean(px.GetLastUpstreamError())))
	}
	return fmt.Sprintf("%s proxy to %s: %s\n%s toxics: %s\n", id, dash(px.GetUpstream()), strings.Join(parts, ", "),
		id, clean(runner.ToxicsText(px.GetToxics())))
}
