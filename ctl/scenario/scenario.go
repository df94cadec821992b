// Package scenario is the model of a sockctl scenario file: parsing YAML with positions,
// validation before any RPC, ${...} substitution and expectation checks. It makes no RPCs;
// package ctl/runner does. Each action is defined once here (see ActionSpec), and once in
// the runner's table of how it runs and reports.
//
// A file:
//
//	name: hello across two hosts
//	agents: {server: local, client: 10.0.0.1:7700}
//	vars: {greeting: "Hello, World!"}
//	steps:
//	  - {on: server, listen: {network: tcp, address: "0.0.0.0:0"}, as: lis}
//	  - parallel:
//	      - {on: server, accept: {socket: lis, timeout: 5s}, as: conn}
//	      - {on: client, dial: {network: tcp, address: "${server.host}:${lis.local_port}"}, as: cli}
//	  - {on: client, send: {socket: cli, data: "${vars.greeting}"}}
//	  - {on: server, recv: {socket: conn, timeout: 2s}, expect: {data: "${vars.greeting}"}}
//	  - repeat: {count: 3, steps: [{on: client, dial: {network: tcp, address: "..."}, as: "c${i}"}]}
//
// What Parse checks, all before any RPC:
//
//   - Keys: unknown keys are errors at every level (with a "did you mean"); duplicate keys
//     too. `name` is optional: without it File.Name is the file's base name without its
//     extension. `agents` and `steps` are required and not empty; `vars` is optional.
//   - Agents: names are identifiers (a letter or _, then letters, digits, _ or -) other than
//     vars, env and i; an address is HOST:PORT (IPv6 in brackets), unix:PATH or local, taken
//     as written (no ${...}: --agent and --inventory override addresses at run time).
//   - Vars: values are taken as written; ${...} inside a var is an error, $$ is a literal $.
//   - Agents may be written {address: ADDR, labels: {KEY: VALUE}}; a step's `on` may be a
//     label selector ({role: web}, values with * and ? wildcards) instead of a name: the step
//     then fans out to every agent the selector picks (at least one of the file's), takes
//     no `as`, and names no `socket` alias.
//   - Steps: an action step has `on` (a declared agent; optional for sleep), exactly one
//     action, and optionally `as` (for listen, bind, dial and accept, which create a
//     socket; and for probe and throughput, whose results later steps read as
//     ${ALIAS.rtt_p50} or ${ALIAS.bits_per_second}), `name` and `expect`. A block step is `parallel: [steps]` or
//     `repeat: {count: N, steps: [steps]}` (N from 1 to MaxRepeat, or ${vars.NAME}), each
//     with an optional `name`.
//   - Values are scalars kept as written: `max_bytes: 13` is "13", `on` is "on" (YAML 1.1
//     booleans stay text). Values without ${...} are checked: durations (timeout, duration,
//     within: 250ms, 5s, 1m30s; not negative), whole numbers (max_bytes, exact_bytes, bytes,
//     data_size up to MaxDataSize), eof (true or false), data_hex (white space ignored),
//     data_base64 (standard encoding, white space ignored), network (listen: tcp, tcp4,
//     tcp6, unix; bind: udp, udp4, udp6, unixgram; dial: any of these), direction (read,
//     write, both) and expect error (a reason of package contract, such as CONNECTION_REFUSED).
//     Values with ${...} are checked when Resolve expands them at run time.
//   - Required arguments: network and address (listen, bind, dial), socket (the others but
//     sleep), address (sendto), direction (shutdown), duration (sleep). send and sendto take
//     exactly one of data, data_hex, data_base64 and data_size (GeneratedData bytes).
//   - Expectations fit the action: data, data_hex, data_base64 and contains apply to recv
//     and recvfrom, eof to recv, from to recvfrom, bytes to send, sendto, recv and recvfrom;
//     error and within to any action. error goes with within only.
//   - Measurement steps: serve {socket, behaviour: echo|discard|source, chunk_size,
//     max_connections} runs a behaviour on a listener or datagram socket; probe {network,
//     address, mode: connect|echo|tls, count, size, interval, timeout, warmup, local_address}
//     and throughput {network, address, direction: send|receive, duration, bytes, streams,
//     rate, size, interval, local_address} measure from the step's agent. Sizes take binary
//     suffixes (64K, 1G), rates SI ones in bits/s (500M). Their expectations compare measured
//     figures: probe rtt_min, rtt_p50, rtt_p90, rtt_p99, rtt_max, rtt_mean, loss, received,
//     errors; throughput bits_per_second, bytes, loss, retransmits, rtt, errors; written
//     "<= 2ms", ">= 1G", "< 1%" or a bare value (==), quoted when it starts with > (see
//     measure.go).
//   - TLS: dial, probe and listen take a `tls:` map (see tls.go): its files are read by
//     sockctl relative to the scenario file, and checked to exist before any RPC.
//   - References: ${vars.NAME} (a declared var), ${env.NAME} (read at run time),
//     ${AGENT.host} and ${AGENT.address} (see AgentFields), ${ALIAS.FIELD} (see
//     AliasFields) and ${i}, the index of the innermost repeat (from 0), only inside one.
//     References nest: ${c${i}.local_port}. "$$" is a literal "$".
//   - Aliases: `as` may use ${i} and ${vars.NAME} only, and must expand to an identifier
//     that is not an agent's name, vars, env or i. A step sees the aliases of the steps
//     before it; the steps of one parallel block do not see each other's (all of them are
//     visible after the block). In a repeat of count 3, as: "c${i}" makes c0, c1 and c2, and
//     a later repeat may use "c${i}" if it counts no further; an alias without ${i} in a
//     repeat is bound again in each iteration. An alias is defined by one step only.
//     `socket` names an alias created on the same agent, or is a ${...} reference (such as
//     ${lis.socket_id}) checked at run time.
//   - Problems are reported all at once (at most 50), sorted, as PATH:LINE:COL: message.
//     YAML syntax errors have the line the YAML library gives and column 1. YAML aliases
//     (*name) are followed; merge keys (<<) are not supported; a file holds one document.
package scenario

import (
	"time"

	"github.com/sockagent/sockagent/ctl/diag"
	"github.com/sockagent/sockagent/ctl/matrix/spec"
)

// Pos is a place in a scenario file, 1-based.
type Pos = diag.Pos

// ExpectKeys are the keys of `expect`.
// The measured figures of probe and throughput (see measure.go) take comparisons such as
// "<= 2ms".
var ExpectKeys = []string{"data", "data_hex", "data_base64", "contains", "bytes", "eof", "from", "error", "within",
	"rtt_min", "rtt_p50", "rtt_p90", "rtt_p99", "rtt_max", "rtt_mean", "rtt", "loss", "received", "errors",
	"bits_per_second", "retransmits"}

// Scalar is one scalar value of the file as written (it may hold ${...} references) and where.
type Scalar struct {
	Raw string
	Pos Pos
}

// Args are an action's (or expect's) arguments by key.
type Args map[string]Scalar

// File is a parsed scenario.
type File struct {
	Path   string
	Name   string
	Agents []Agent // in file order
	Vars   map[string]string
	Steps  []*Step
}

// Agent is one entry of `agents`.
type Agent struct {
	Name    string
	Address string // host:port, unix:PATH, or "local"
	// Labels are what steps fanned out with on: {KEY: VALUE} select the agent by.
	Labels map[string]string
	Pos    Pos
}

// Local reports whether the agent is an in-process one.
func (a Agent) Local() bool { return a.Address == "local" }

// Step is one step: an action on an agent, a parallel block or a repeat block.
type Step struct {
	Pos  Pos
	Name string // the optional label
	On   string // agent name (action steps); "" when OnAll is set
	// OnAll, when on: is a label selector ({role: web}), a list of agents ([a, b]) or all,
	// fans the step out: it runs once on every agent the selector picks, concurrently.
	OnAll  *Selector
	Action string // one of Actions; "" for parallel and repeat blocks
	Args   Args
	As     string // optional alias for the socket the action creates; may hold ${i}
	Expect Args   // optional; nil when absent
	// Matrix is the matrix of a matrix step (Action "matrix"), whose agents are the
	// scenario's; nil for the other actions.
	Matrix *spec.File

	Parallel []*Step // a parallel block: its steps run concurrently
	Repeat   *Repeat // a repeat block
}

// Repeat repeats its steps Count times; ${i} is the index (0-based) inside.
type Repeat struct {
	Count int
	Steps []*Step
}

// Label is the step's name, or a short description made from its action and arguments.
func (s *Step) Label() string { return label(s) }

// Parse reads a scenario from data (path is used in messages) and validates it: unknown
// keys, unknown agents, aliases used before they exist (or created by a sibling in the same
// parallel block), bad durations and numbers in literal values, two actions in one step, a
// missing action, a bad `data_*` combination. Every problem is reported as
// "PATH:LINE:COL: message"; the error is a *Errors holding all of them (at most 50).
func Parse(path string, data []byte) (*File, error) { return parse(path, data) }

// Errors are validation problems, each with its position.
type Errors = diag.Errors

// Error is one validation problem.
type Error = diag.Error

// Lookup resolves one reference inside ${...}: "server.host", "lis.local_port",
// "vars.greeting", "env.HOME", "i". It returns an error saying what is unknown.
type Lookup func(ref string) (string, error)

// Expand replaces every ${ref} in raw by lookup(ref). "$$" stands for a literal "$".
func Expand(raw string, lookup Lookup) (string, error) { return expand(raw, lookup) }

// Resolved is an action's arguments after expansion, with typed getters that report bad
// values with the position of the value in the file.
type Resolved struct {
	Path string
	Args Args // Raw already expanded
}

// String returns the value of key, or "" when absent.
func (r Resolved) String(key string) string { return r.Args[key].Raw }

// Has reports whether key was given.
func (r Resolved) Has(key string) bool { _, ok := r.Args[key]; return ok }

// Uint returns the value of key as a non-negative integer (0 when absent).
func (r Resolved) Uint(key string) (uint64, error) { return resolvedUint(r, key) }

// Duration returns the value of key as a duration such as "5s" or "250ms" (0 when absent).
func (r Resolved) Duration(key string) (time.Duration, error) { return resolvedDuration(r, key) }

// Data returns the payload of data, data_hex, data_base64 or data_size (generated bytes,
// a repeating printable pattern), and whether any was given.
func (r Resolved) Data() ([]byte, bool, error) { return resolvedData(r) }

// Resolve expands every value of args with lookup.
func Resolve(path string, args Args, lookup Lookup) (Resolved, error) {
	return resolve(path, args, lookup)
}

// Outcome is what a step's action produced, as the expectations see it.
type Outcome struct {
	Reason   string        // the ErrorInfo reason of a failure ("" on success)
	Err      string        // the failure's message ("" on success)
	Data     []byte        // bytes received (recv, recvfrom)
	EOF      bool          // recv saw end of stream
	From     string        // recvfrom's sender
	Bytes    uint64        // bytes received, or sent for send/sendto
	Duration time.Duration // how long the step took

	// Figures are what a probe or throughput step measured, by expect key (ProbeFigures,
	// ThroughputFigures): durations in nanoseconds, loss from 0 to 1, bits per second,
	// counts. nil for the other actions.
	Figures map[string]float64
	// Text is what a passing step did, as reports show it, when the runner says it here
	// (serve, probe, throughput).
	Text string
	// Mismatches are the cells of a matrix step that did not measure what was expected.
	Mismatches []spec.Cell
}

// Check compares an outcome with the resolved expectations (nil expect: the step must
// succeed). It returns one message per mismatch, each naming the key, what was expected and
// what came ("data: want \"Hello\", got \"Hel\""); none means the step passed. With `error`
// the step passes only if the action failed with that reason.
func Check(expect *Resolved, o Outcome) []string { return check(expect, o) }
