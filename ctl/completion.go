package ctl

// completion: the shell completion scripts (cobra's), the dynamic completions they ask
// sockctl for (socket and session ids from the agent, agent names from the inventory), and
// --inventory, which lets --agent name an agent.

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// envInventory names the environment variable that sets --inventory when it is not given.
const envInventory = "SOCKCTL_INVENTORY"

// completeTimeout bounds the agent's answer to a completion: a shell waits for it.
const completeTimeout = 2 * time.Second

// inventoryPath is --inventory if given, else $SOCKCTL_INVENTORY.
func (a *app) inventoryPath() string {
	if a.inventory != "" {
		return a.inventory
	}
	return a.getenv(envInventory)
}

// resolveAgent settles the agent of this command: --agent (or $SOCKCTL_AGENT, or the
// default), and when an inventory is given and names that agent, the inventory's address and
// credentials (over the credential flags, key by key, as run does).
func (a *app) resolveAgent(cmd *cobra.Command) error {
	a.agentChanged = cmd.Flags().Changed("agent")
	return a.applyInventory()
}

// readInventory reads the inventory of --inventory or $SOCKCTL_INVENTORY, and says where it
// is; no agents and no path when neither is given.
func (a *app) readInventory() (inventoryFile, string, error) {
	path := a.inventoryPath()
	if path == "" {
		return inventoryFile{}, "", nil
	}
	inv, err := loadInventory(path)
	return inv, path, err
}

// applyInventory replaces the agent, when the inventory names it, by the inventory's address
// and credentials.
func (a *app) applyInventory() error {
	inv, path, err := a.readInventory()
	if err != nil {
		return err
	}
	e, ok := inv.Agents[a.agentAddr()]
	if !ok { // an address, or a name the inventory lacks: used as given
		return nil
	}
	a.agentFlag, a.agentChanged = e.Address, true
	a.dial = e.apply(a.dial, filepath.Dir(path))
	return nil
}

const completionLong = `Completion prints the shell completion script of sockctl for bash, zsh or fish. Load it
in the shell's start-up file. Besides commands and flags it completes, by asking the agent:
socket ids (close, recv, attach, ...) and session ids (sessions keepalive, close); from the
inventory (--inventory FILE or $SOCKCTL_INVENTORY): the agent names --agent takes; and
networks, shutdown directions and serve behaviours.`

func (a *app) completionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script",
		Long:  completionLong,
		Example: `  source <(sockctl completion bash)                                   # this bash
  sockctl completion bash > /etc/bash_completion.d/sockctl           # every bash
  sockctl completion zsh > "${fpath[1]}/_sockctl"
  sockctl completion fish > ~/.config/fish/completions/sockctl.fish`,
		Args:      args(1, "bash|zsh|fish"),
		ValidArgs: []cobra.Completion{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, w := cmd.Root(), a.out.stdout
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(w, true)
			case "zsh":
				return root.GenZshCompletion(w)
			case "fish":
				return root.GenFishCompletion(w, true)
			}
			return usagef("unknown shell %q: give bash, zsh or fish", args[0])
		},
	}
}

// fixed completes the argument at position pos with values.
func fixed(pos int, values ...string) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) != pos {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return matching(values, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// networks completes the first argument with the networks of op.
func networks(op contract.Op) cobra.CompletionFunc { return fixed(0, contract.Networks(op)...) }

// matching keeps the completions that start with prefix (their value, before a tab).
func matching(values []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, v := range values {
		if strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	return out
}

// fromAgent completes with what list returns from the command's agent, within
// completeTimeout; nothing when the agent does not answer.
// The agent is resolved already (resolveAgent, setAgent).
func (a *app) fromAgent(cmd *cobra.Command, toComplete string, list func(ctx context.Context, c client.Clients) ([]string, error)) ([]cobra.Completion, cobra.ShellCompDirective) {
	ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
	defer cancel()
	var values []string
	err := a.withAgent(ctx, func(ag *agentConn) error {
		var err error
		values, err = list(ctx, ag.c)
		return err
	})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError | cobra.ShellCompDirectiveNoFileComp
	}
	return matching(values, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// socketIDs completes the argument at position pos with the ids of the caller's open
// sockets, each described by network, kind and addresses.
func (a *app) socketIDs(pos int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) != pos || a.resolveAgent(cmd) != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return a.fromAgent(cmd, toComplete, listSocketIDs)
	}
}

func listSocketIDs(ctx context.Context, c client.Clients) ([]string, error) {
	resp, err := c.Sockets.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
	var ids []string
	for _, s := range resp.GetSockets() {
		desc := fmt.Sprintf("%s %s %s", s.GetNetwork(), kindName(s.GetKind()), dash(s.GetLocalAddress()))
		if s.GetRemoteAddress() != "" {
			desc += " -> " + clean(s.GetRemoteAddress())
		}
		ids = append(ids, clean(s.GetSocketId())+"\t"+desc)
	}
	return ids, err
}

// sessionIDs completes the first argument with the ids of the caller's open sessions.
func (a *app) sessionIDs(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) != 0 || a.resolveAgent(cmd) != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.fromAgent(cmd, toComplete, func(ctx context.Context, c client.Clients) ([]string, error) {
		resp, err := c.Sessions.ListSessions(ctx, &sockagentv1.ListSessionsRequest{})
		var ids []string
		for _, s := range resp.GetSessions() {
			ids = append(ids, fmt.Sprintf("%s\t%s, %d sockets", clean(s.GetSessionId()), dash(s.GetName()), s.GetSockets()))
		}
		return ids, err
	})
}

// agentNames completes --agent with the names of the inventory's agents, each described by
// its address.
func (a *app) agentNames(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return matching(a.inventoryNames(), toComplete), cobra.ShellCompDirectiveNoFileComp
}

// inventoryNames lists the inventory's agents as "NAME\tADDRESS", sorted; none without an
// inventory or with one that cannot be read.
func (a *app) inventoryNames() []string {
	inv, _, err := a.readInventory()
	if err != nil {
		return nil
	}
	var names []string
	for name, e := range inv.Agents {
		names = append(names, name+"\t"+clean(e.Address))
	}
	slices.Sort(names)
	return names
}

// attachArgs completes attach's [AGENT] ID: agent names and socket ids first, then the ids
// of the agent named.
func (a *app) attachArgs(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if a.resolveAgent(cmd) != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	switch len(args) {
	case 0:
		ids, dir := a.fromAgent(cmd, toComplete, listSocketIDs)
		return append(matching(a.inventoryNames(), toComplete), ids...), dir &^ cobra.ShellCompDirectiveError
	case 1:
		if a.setAgent(args[0]) == nil {
			return a.fromAgent(cmd, toComplete, listSocketIDs)
		}
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// registerCompletions gives the commands of root their dynamic completions.
func (a *app) registerCompletions(root *cobra.Command) {
	_ = root.RegisterFlagCompletionFunc("agent", a.agentNames)
	for _, c := range root.Commands() {
		switch c.Name() {
		case "accept", "send", "recv", "sendto", "recvfrom", "close", "get", "toxics":
			c.ValidArgsFunction = a.socketIDs(0)
		case "shutdown":
			c.ValidArgsFunction = a.idThen("read", "write", "both")
		case "serve":
			c.ValidArgsFunction = a.idThen("echo", "discard", "source", "proxy")
		case "attach":
			c.ValidArgsFunction = a.attachArgs
		case "listen":
			c.ValidArgsFunction = networks(contract.OpListen)
		case "bind":
			c.ValidArgsFunction = networks(contract.OpBind)
		case "dial", "connect":
			c.ValidArgsFunction = networks(contract.OpDial)
		case "sessions":
			for _, sc := range c.Commands() {
				if sc.Name() == "keepalive" || sc.Name() == "close" {
					sc.ValidArgsFunction = a.sessionIDs
				}
			}
		}
	}
}

// idThen completes a socket id, then one of values.
func (a *app) idThen(values ...string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 1 {
			return fixed(1, values...)(cmd, args, toComplete)
		}
		return a.socketIDs(0)(cmd, args, toComplete)
	}
}
