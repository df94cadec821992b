package ctl

import (
	"context"
	"fmt"

	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"github.com/spf13/cobra"
	"golang.org/x/mod/semver"
)

// versionCommand prints sockctl's own version and, when an agent is named, the agent's.
func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print sockctl's version, and an agent's with --agent",
		Long: `Version prints sockctl's version from its build information: the module version (a
release tag, or a pseudo-version naming the commit), the VCS revision and commit time, whether
the tree was modified, the Go version and the platform.

With --agent (or $` + envAgent + `) it also asks that agent (GetInfo) and prints its version,
host and platform. When both versions are release or pseudo-versions whose major versions
differ (v1 and v2), it warns on stderr: the API may have changed between them. The exit
status is 0 all the same; an unreachable agent is 1.`,
		Example: `  sockctl version
  sockctl --agent 10.0.0.2:7700 --token-file t version`,
		Args: args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			own := a.build
			a.out.printf("sockctl %s\n", own)
			if !a.agentChanged && a.getenv(envAgent) == "" {
				return nil
			}
			return a.call(cmd.Context(), "get info", 0, func(ctx context.Context, c client.Clients) error {
				info, err := c.Agent.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
				if err != nil {
					return err
				}
				a.out.printf("agent %s (%s, host %s, %s/%s)\n", info.GetVersion(), a.agentAddr(), info.GetHostname(), info.GetOs(), info.GetArch())
				if w := majorMismatch(own.Version, info.GetVersion()); w != "" {
					a.out.errorf("sockctl: warning: %s\n", w)
				}
				return nil
			})
		},
	}
}

// majorMismatch says why sockctl at version ctl and an agent at version agent may not
// understand each other, or "" when their major versions agree or either has none (a
// development build).
func majorMismatch(ctl, agent string) string {
	mc, ma := semver.Major(ctl), semver.Major(agent)
	if mc == "" || ma == "" || mc == ma {
		return ""
	}
	return fmt.Sprintf("sockctl is %s and the agent %s: their major versions differ, so calls may fail or mean something else; use a sockctl of the agent's major version (%s)", ctl, agent, ma)
}
