package ctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// --opt sets options on dial, listen and bind; setopt changes them and joins and leaves
// groups; get shows the effective values; wrong input is a usage error (exit 2), a refused
// option exit 1 with its reason.
func TestOptionsCommands(t *testing.T) {
	pol, err := policy.Parse("p.yaml", []byte("default:\n  destinations: {allow: [{name: any}, {name: g, cidrs: [239.1.2.3/32]}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	addr := startAgentConfig(t, agent.Config{Policy: pol})
	var l sockagentv1.ListenResponse
	okJSON(t, addr, &l, "listen", "tcp", "127.0.0.1:0", "--opt", "max_segment=1000")
	lid := l.GetSocket().GetSocketId()
	defer ok(t, addr, "close", lid)
	var d sockagentv1.DialResponse
	okJSON(t, addr, &d, "dial", "tcp", l.GetSocket().GetLocalAddress(), "--opt", "ttl=7", "--opt", "no_delay=false", "--opt", "linger=3s")
	did := d.GetSocket().GetSocketId()
	defer ok(t, addr, "close", did)
	ok(t, addr, "get", did).want(t, ExitOK, []string{did + " options: no_delay=false", " linger=3s ttl=7 "}, nil)
	ok(t, addr, "setopt", did, "ttl=9", "keepalive=false").want(t, ExitOK, []string{"keepalive=false", " ttl=9 "}, nil)
	var g sockagentv1.GetSocketResponse
	okJSON(t, addr, &g, "get", lid)
	if g.GetSocket().GetOptions().GetMaxSegment() != 1000 {
		t.Errorf("listener's max_segment %d, want 1000", g.GetSocket().GetOptions().GetMaxSegment())
	}

	var b sockagentv1.BindResponse
	okJSON(t, addr, &b, "bind", "udp4", "127.0.0.1:0", "--join", "239.1.2.3%lo", "--opt", "multicast_loop=false")
	bid := b.GetSocket().GetSocketId()
	defer ok(t, addr, "close", bid)
	if got := b.GetSocket().GetMulticastGroups(); len(got) != 1 || got[0] != "239.1.2.3%lo" {
		t.Errorf("bind --join: groups %v, want [239.1.2.3%%lo]", got)
	}
	ok(t, addr, "get", bid).want(t, ExitOK, []string{bid + " multicast groups: 239.1.2.3%lo", "multicast_loop=false"}, nil)
	r := ok(t, addr, "setopt", bid, "leave=239.1.2.3%lo")
	if strings.Contains(r.stdout, "multicast groups") {
		t.Errorf("after leave, still shows groups:\n%s", r.stdout)
	}

	sockctl(t, addr, "setopt", did, "no_dealy=true").want(t, ExitUsage, nil, []string{`unknown option "no_dealy"`, "no_delay, keepalive"})
	sockctl(t, addr, "setopt", did, "ttl=five").want(t, ExitUsage, nil, []string{"option ttl=five: want a whole number"})
	sockctl(t, addr, "dial", "tcp", "127.0.0.1:1", "--opt", "ttl").want(t, ExitUsage, nil, []string{`option "ttl": want KEY=VALUE`})
	sockctl(t, addr, "setopt", bid, "no_delay=true").want(t, ExitFailure, nil, []string{"UNSUPPORTED_OPTION", "no_delay"})
	sockctl(t, addr, "setopt", bid, "tos=4").want(t, ExitFailure, nil, []string{"POLICY_DENIED", "socket option tos"})
}

// A scenario's options, multicast and setopt reach the agent: the run passes, and a
// refused option fails its step with the agent's reason.
func TestOptionsScenario(t *testing.T) {
	pol, err := policy.Parse("p.yaml", []byte("default:\n  destinations: {allow: [{name: any}, {name: g, cidrs: [239.1.2.3/32]}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	addr := startAgentConfig(t, agent.Config{Policy: pol})
	f := filepath.Join(t.TempDir(), "opts.yaml")
	if err := os.WriteFile(f, []byte(`name: options
agents: {a: `+addr+`}
vars: {ttl: "9"}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0", options: {reuse_address: true}}, as: lis}
  - {on: a, dial: {network: tcp, address: "127.0.0.1:${lis.local_port}", options: {ttl: 5, keepalive_idle: 10s}}, as: cli}
  - {on: a, setopt: {socket: cli, options: {ttl: "${vars.ttl}", no_delay: false}}}
  - {on: a, bind: {network: udp4, address: "127.0.0.1:0", multicast: {groups: [239.1.2.3], interface: lo}}, as: u}
  - {on: a, setopt: {socket: u, leave: ["239.1.2.3%lo"], join: ["239.1.2.3%lo"]}, expect: {error: INVALID_ARGUMENT}}
  - {on: a, setopt: {socket: u, options: {no_delay: true}}, expect: {error: UNSUPPORTED_OPTION}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := invocation{args: []string{"run", f}}.exec(t)
	r.want(t, ExitOK, []string{"6 passed, 0 failed"}, nil)
}
