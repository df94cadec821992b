package scenario

import (
	"slices"

	"github.com/sockagent/sockagent/agent/contract"
)

// ActionSpec is what a scenario file may say about one action: the arguments it takes, which
// of them it needs, and what `as` may name. The runner keeps its own table, keyed by the same
// names, of how each action runs and reports; a test checks that the two name the same
// actions.
type ActionSpec struct {
	// Name is the action's key in a step: listen, dial, ...
	Name string
	// Args are the argument keys it accepts, named as the API's fields.
	Args []string
	// Required are the arguments it must have.
	Required []string
	// Network is the operation whose networks its `network` argument takes; "" when it takes
	// no network.
	Network contract.Op
	// Creates says the action opens a socket, which `as` may name.
	Creates bool
	// Results says `as` names the figures the action measured (${ALIAS.rtt_p50}).
	Results bool
	// Measure says the action is a measurement (serve, probe, throughput), whose arguments
	// take sizes, rates and names of their own (see measureLiteral).
	Measure bool
	// NoAgent says the step needs no `on`: the action makes no call.
	NoAgent bool
}

// specs are the actions, in the order messages list them.
var specs = []ActionSpec{
	{Name: "listen", Args: []string{"network", "address", "options", "tls"}, Required: []string{"network", "address"}, Network: contract.OpListen, Creates: true},
	{Name: "bind", Args: []string{"network", "address", "options", "multicast"}, Required: []string{"network", "address"}, Network: contract.OpBind, Creates: true},
	{Name: "dial", Args: []string{"network", "address", "local_address", "timeout", "options", "tls"}, Required: []string{"network", "address"}, Network: contract.OpDial, Creates: true},
	{Name: "accept", Args: []string{"socket", "timeout"}, Required: []string{"socket"}, Creates: true},
	{Name: "send", Args: []string{"socket", "data", "data_hex", "data_base64", "data_size", "timeout"}, Required: []string{"socket"}},
	{Name: "recv", Args: []string{"socket", "max_bytes", "exact_bytes", "timeout"}, Required: []string{"socket"}},
	{Name: "sendto", Args: []string{"socket", "address", "data", "data_hex", "data_base64", "data_size", "timeout"}, Required: []string{"socket", "address"}},
	{Name: "recvfrom", Args: []string{"socket", "max_bytes", "timeout"}, Required: []string{"socket"}},
	{Name: "shutdown", Args: []string{"socket", "direction"}, Required: []string{"socket", "direction"}},
	{Name: "close", Args: []string{"socket"}, Required: []string{"socket"}},
	{Name: "setopt", Args: []string{"socket", "options", "join", "leave"}, Required: []string{"socket"}},
	{Name: "sleep", Args: []string{"duration"}, Required: []string{"duration"}, NoAgent: true},

	{Name: "serve", Args: []string{"socket", "behaviour", "chunk_size", "max_connections", "upstream", "upstream_timeout", "toxics"},
		Required: []string{"socket", "behaviour"}, Measure: true},
	{Name: "toxics", Args: []string{"socket", "toxics"}, Required: []string{"socket", "toxics"}},
	{Name: "probe", Args: []string{"network", "address", "mode", "count", "size", "interval", "timeout", "warmup", "local_address", "tls"},
		Required: []string{"network", "address"}, Network: contract.OpProbe, Measure: true, Results: true},
	{Name: "throughput", Args: []string{"network", "address", "direction", "duration", "bytes", "streams", "rate", "size", "interval", "local_address"},
		Required: []string{"network", "address"}, Network: contract.OpThroughput, Measure: true, Results: true},
	// matrix is a connectivity matrix (package spec) over the scenario's agents; its value
	// is not arguments but a matrix, which Step.Matrix holds.
	{Name: "matrix", NoAgent: true},
}

// Actions are the step actions, named as the RPCs they make (sleep makes none).
var Actions = func() []string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return names
}()

// ActionArgs lists the argument keys each action accepts. Keys use the API's field names;
// `socket` names an alias (or a literal socket id); data may be given as `data`, `data_hex`,
// `data_base64` or `data_size` (exactly one); sleep takes `duration`.
var ActionArgs = func() map[string][]string {
	m := make(map[string][]string, len(specs))
	for _, s := range specs {
		m[s.Name] = s.Args
	}
	return m
}()

// Action returns the spec of the action called name.
func Action(name string) (ActionSpec, bool) {
	i := slices.IndexFunc(specs, func(s ActionSpec) bool { return s.Name == name })
	if i < 0 {
		return ActionSpec{}, false
	}
	return specs[i], true
}

// actionsWhere lists, in table order, the actions for which pred holds.
func actionsWhere(pred func(ActionSpec) bool) []string {
	var out []string
	for _, s := range specs {
		if pred(s) {
			out = append(out, s.Name)
		}
	}
	return out
}
