package ctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Every command's help shows an example: the walk fails on one without.
func TestEveryCommandHasExample(t *testing.T) {
	t.Parallel()
	a := &app{getenv: func(string) string { return "" }, out: &writer{}}
	root := a.newRootCommand(nil)
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		n++
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if n < 30 { // the root, its commands, pki's and sessions' subcommands, help, completion
		t.Errorf("walked %d commands, want every one (at least 30)", n)
	}
	r := invocation{args: []string{"sessions", "open", "--help"}}.exec(t)
	r.want(t, ExitOK, []string{"Examples:\n  sockctl sessions open --ttl 10m"}, nil)
}

func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	for shell, marker := range map[string]string{
		"bash": "__start_sockctl()",
		"zsh":  "#compdef sockctl",
		"fish": "complete -c sockctl ",
	} {
		r := invocation{args: []string{"completion", shell}}.exec(t)
		r.want(t, ExitOK, []string{marker, "__complete"}, nil)
	}
	r := invocation{args: []string{"completion", "powershell"}}.exec(t)
	r.want(t, ExitUsage, nil, []string{`unknown shell "powershell": give bash, zsh or fish`})
}

// complete runs sockctl's hidden __complete command, as the shell scripts do, and returns
// the completions and the directive line.
func complete(t *testing.T, env map[string]string, args ...string) ([]string, string) {
	t.Helper()
	r := invocation{env: env, args: append([]string{"__complete"}, args...)}.exec(t)
	if r.code != ExitOK {
		t.Fatalf("__complete %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	l := lines(t, r.stdout)
	return l[:len(l)-1], l[len(l)-1]
}

func TestCompleteFromAgent(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	var l sockagentv1.ListenResponse
	okJSON(t, addr, &l, "listen", "tcp", "127.0.0.1:0")
	var b sockagentv1.BindResponse
	okJSON(t, addr, &b, "bind", "udp", "127.0.0.1:0")
	lis, udp := l.GetSocket(), b.GetSocket()
	sid := strings.TrimSpace(ok(t, addr, "-o", "id", "sessions", "open", "--name", "mine").stdout)
	inv := filepath.Join(t.TempDir(), "inv.yaml")
	if err := os.WriteFile(inv, []byte(fmt.Sprintf("agents:\n  lab1: %s\n  lab2: {address: 127.0.0.1:1}\n", addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	ids := []string{
		lis.GetSocketId() + "\ttcp listener " + lis.GetLocalAddress(),
		udp.GetSocketId() + "\tudp datagram " + udp.GetLocalAddress(),
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want []string
		dir  string
	}{
		{"socket ids", nil, []string{"--agent", addr, "close", ""}, ids, ":4"},
		{"socket ids by prefix", nil, []string{"--agent", addr, "recv", lis.GetSocketId()}, ids[:1], ":4"},
		{"after the id", nil, []string{"--agent", addr, "close", lis.GetSocketId(), ""}, nil, ":4"},
		{"shutdown direction", nil, []string{"--agent", addr, "shutdown", lis.GetSocketId(), "w"}, []string{"write"}, ":4"},
		{"serve behaviour", nil, []string{"--agent", addr, "serve", lis.GetSocketId(), ""}, []string{"echo", "discard", "source", "proxy"}, ":4"},
		{"networks", nil, []string{"--agent", addr, "bind", "udp"}, []string{"udp", "udp4", "udp6"}, ":4"},
		{"session ids", nil, []string{"--agent", addr, "sessions", "close", ""}, []string{sid + "\tmine, 0 sockets"}, ":4"},
		{"agent names", nil, []string{"--inventory", inv, "--agent", ""}, []string{"lab1\t" + addr, "lab2\t127.0.0.1:1"}, ":4"},
		{"agent names from $SOCKCTL_INVENTORY", map[string]string{envInventory: inv}, []string{"--agent", "lab"}, []string{"lab1\t" + addr, "lab2\t127.0.0.1:1"}, ":4"},
		{"ids of an agent by name", nil, []string{"--inventory", inv, "--agent", "lab1", "get", ""}, ids, ":4"},
		{"attach: names and ids", map[string]string{envInventory: inv, envAgent: addr}, []string{"attach", ""}, append([]string{"lab1\t" + addr, "lab2\t127.0.0.1:1"}, ids...), ":4"},
		{"attach: ids of the agent named", map[string]string{envInventory: inv}, []string{"attach", "lab1", ""}, ids, ":4"},
		{"agent down", nil, []string{"--agent", closedPort(t), "close", ""}, nil, ":5"},
	} {
		got, dir := complete(t, tc.env, tc.args...)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || dir != tc.dir {
			t.Errorf("%s: %q %s, want %q %s", tc.name, got, dir, tc.want, tc.dir)
		}
	}
	ok(t, addr, "sessions", "close", sid)
	ok(t, addr, "close", lis.GetSocketId())
	ok(t, addr, "close", udp.GetSocketId())
}

// --agent NAME with an inventory is the inventory's agent; a name it lacks is an address.
func TestInventoryAgentName(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	inv := filepath.Join(t.TempDir(), "inv.yaml")
	if err := os.WriteFile(inv, []byte("agents:\n  lab1: "+addr+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	invocation{args: []string{"--inventory", inv, "--agent", "lab1", "ls"}}.exec(t).want(t, ExitOK, []string{"ID  "}, nil)
	invocation{env: map[string]string{envInventory: inv, envAgent: "lab1"}, args: []string{"ls"}}.exec(t).want(t, ExitOK, []string{"ID  "}, nil)
	invocation{env: map[string]string{envInventory: inv}, args: []string{"--agent", addr, "ls"}}.exec(t).want(t, ExitOK, []string{"ID  "}, nil)
	invocation{args: []string{"--inventory", inv, "--agent", "lab9", "ls"}}.exec(t).want(t, ExitFailure, nil, []string{"cannot reach agent lab9"})
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("agents:\n  x: {adress: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	invocation{args: []string{"--inventory", bad, "ls"}}.exec(t).want(t, ExitUsage, nil, []string{bad + `:2:7: unknown key "adress"`})
}
