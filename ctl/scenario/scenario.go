// Package scenario is the model of a sockctl scenario file: parsing YAML with positions,
// validation before any RPC, ${...} substitution and expectation checks. It makes no RPCs;
// the runner in package ctl does.
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
package scenario

import "time"

// Pos is a place in a scenario file, 1-based.
type Pos struct {
	Line, Col int
}

// Actions are the step actions, named as the RPCs they make (sleep makes none).
var Actions = []string{"listen", "bind", "dial", "accept", "send", "recv", "sendto", "recvfrom", "shutdown", "close", "sleep"}

// ActionArgs lists the argument keys each action accepts. Keys use the API's field names;
// `socket` names an alias (or a literal socket id); data may be given as `data`, `data_hex`,
// `data_base64` or `data_size` (exactly one); sleep takes `duration`.
var ActionArgs = map[string][]string{
	"listen":   {"network", "address"},
	"bind":     {"network", "address"},
	"dial":     {"network", "address", "local_address", "timeout"},
	"accept":   {"socket", "timeout"},
	"send":     {"socket", "data", "data_hex", "data_base64", "data_size", "timeout"},
	"recv":     {"socket", "max_bytes", "exact_bytes", "timeout"},
	"sendto":   {"socket", "address", "data", "data_hex", "data_base64", "data_size", "timeout"},
	"recvfrom": {"socket", "max_bytes", "timeout"},
	"shutdown": {"socket", "direction"},
	"close":    {"socket"},
	"sleep":    {"duration"},
}

// ExpectKeys are the keys of `expect`.
var ExpectKeys = []string{"data", "data_hex", "data_base64", "contains", "bytes", "eof", "from", "error", "within"}

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
	Pos     Pos
}

// Local reports whether the agent is an in-process one.
func (a Agent) Local() bool { return a.Address == "local" }

// Step is one step: an action on an agent, a parallel block or a repeat block.
type Step struct {
	Pos    Pos
	Name   string // the optional label
	On     string // agent name (action steps)
	Action string // one of Actions; "" for parallel and repeat blocks
	Args   Args
	As     string // optional alias for the socket the action creates; may hold ${i}
	Expect Args   // optional; nil when absent

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
type Errors struct {
	List []Error
}

// Error is one validation problem.
type Error struct {
	Path string
	Pos  Pos
	Msg  string
}

func (e Error) Error() string { return errorString(e) }

func (e *Errors) Error() string { return errorsString(e) }

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
}

// Check compares an outcome with the resolved expectations (nil expect: the step must
// succeed). It returns one message per mismatch, each naming the key, what was expected and
// what came ("data: want \"Hello\", got \"Hel\""); none means the step passed. With `error`
// the step passes only if the action failed with that reason.
func Check(expect *Resolved, o Outcome) []string { return check(expect, o) }
