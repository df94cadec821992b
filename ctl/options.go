package ctl

import (
	"context"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// optHelp says what --opt takes, for the commands that have it.
var optHelp = "set socket option `KEY=VALUE` (repeatable): " + strings.Join(contract.SocketOptions(), ", ") +
	"; see docs/options.md"

// optFlags is --opt of listen, bind, dial and connect.
type optFlags struct{ pairs []string }

func (o *optFlags) register(f *pflag.FlagSet) { f.StringArrayVar(&o.pairs, "opt", nil, optHelp) }

// options parses the --opt pairs; none gives nil, a wrong one a usage error (exit 2).
func (o *optFlags) options() (*sockagentv1.SocketOptions, error) {
	opts, err := client.ParseOptions(o.pairs)
	if err != nil {
		return nil, usagef("--opt: %v", err)
	}
	return opts, nil
}

func (a *app) setoptCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "setopt ID KEY=VALUE...",
		Short: "Change socket options, join and leave multicast groups (setsockopt)",
		Long: `Setopt sets socket options on socket ID and prints it; 'get ID -o json' shows every
effective option as the kernel reports it. KEY is one of ` + strings.Join(contract.SocketOptions(), ", ") + `,
or join / leave with a multicast group (GROUP or GROUP%IFACE) on a bound UDP socket.
An option the socket's kind or the platform lacks exits 1 with UNSUPPORTED_OPTION; the
options bind_to_device, broadcast, reuse_port and tos need the agent's policy to list them.
Does not block.`,
		Example: `  sockctl setopt s3fa9c1-2 ttl=5 tos=0xb8 no_delay=true
  sockctl setopt s3fa9c1-2 linger=0s                 # Close then resets the connection
  sockctl setopt s3fa9c1-2 keepalive=true keepalive_idle=10s keepalive_interval=2s keepalive_count=3
  sockctl setopt s3fa9c1-4 join=239.1.2.3%eth0
  sockctl setopt s3fa9c1-4 leave=239.1.2.3%eth0`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &sockagentv1.SetOptionsRequest{SocketId: args[0]}
			var pairs []string
			for _, kv := range args[1:] {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "join":
					req.Join = append(req.Join, v)
				case "leave":
					req.Leave = append(req.Leave, v)
				default:
					pairs = append(pairs, kv)
				}
			}
			var err error
			if req.Options, err = (&optFlags{pairs}).options(); err != nil {
				return err
			}
			return a.socketCall(cmd.Context(), "setopt "+args[0], 0, func(ctx context.Context, c client.Clients) (socketResponse, error) {
				return c.Sockets.SetOptions(ctx, req)
			})
		},
	}
}
