// Package spec is the file side of sockctl's connectivity matrix: a file of sources x
// targets x services with an expected table, parsed with positions (FILE:LINE:COL problems,
// "did you mean") and expanded over the agents (names, wildcards, label selectors) into cells
// with their expectations. The same matrix may be a scenario step (ParseStep), whose agents
// are the scenario's.
//
// A file:
//
//	name: web tier
//	agents: {h1: 10.77.0.2:7700, h2: {address: 10.77.0.3:7700, labels: {role: db}}}
//	services:
//	  web: {network: tcp, port: 8080}
//	  syslog: {network: udp, port: 5514}
//	sources: [all]
//	targets: [all]
//	expect:
//	  default: open
//	  rules:                    # later rules win
//	    - {from: all, to: {role: db}, service: web, expect: filtered}
//
// It makes no RPC and imports neither gRPC nor the scenario package (which imports it):
// ctl/matrix runs a matrix file, ctl/runner a matrix step.
package spec

import (
	"time"

	"github.com/sockagent/sockagent/ctl/diag"
	"github.com/sockagent/sockagent/ctl/selector"
)

// Verdict is what a cell measured.
type Verdict string

// Verdicts of a cell. The first four are the network's answer; the last two say the cell could
// not be measured, and never pass.
const (
	Open             Verdict = "open"
	Closed           Verdict = "closed"   // refused: a TCP reset, or ICMP port unreachable
	Filtered         Verdict = "filtered" // silence on every attempt
	Unreachable      Verdict = "unreachable"
	AgentUnavailable Verdict = "agent-unavailable"
	Error            Verdict = "error"
	// Any, as an expectation, accepts any of the network's answers.
	Any Verdict = "any"
)

// expectable are the values of expect: default and a rule's expect.
var expectable = []string{string(Open), string(Closed), string(Filtered), string(Unreachable), string(Any)}

// Matches reports whether verdict v satisfies expectation e. An agent that could not be
// reached and an error satisfy nothing: the cell was not measured.
func Matches(e, v Verdict) bool {
	switch v {
	case AgentUnavailable, Error:
		return false
	}
	return e == Any || e == v
}

// Agent is one agent a matrix may use.
type Agent struct {
	Name    string
	Address string // HOST:PORT, unix:PATH or local
	Labels  map[string]string
}

// Service is a port every target serves.
type Service struct {
	Name    string
	Network string // tcp, tcp4, tcp6, udp, udp4, udp6
	Port    int
	Pos     diag.Pos
}

// Selector picks agents: all of them, a name pattern, or labels (see package selector, which
// scenario steps fan out with too).
type Selector = selector.Selector

// Rule sets the expectation of the cells it covers; later rules win.
type Rule struct {
	From, To []Selector
	Services []string // nil: every service
	Expect   Verdict
	Pos      diag.Pos
}

// Probe are the settings of every source's Sweep.
type Probe struct {
	Concurrency int           // targets tried at once per source; 0: the agent's default
	Timeout     time.Duration // one attempt; 0: the agent's default (1s)
	Attempts    int           // before silence is filtered; 0: the agent's default (2)
	Spacing     time.Duration // pause after a failed attempt; 0: the agent's default (100ms)
	Pace        int           // new destinations per second; 0: the agent's cap
}

// File is a parsed matrix file.
type File struct {
	Path, Name       string
	Agents           []Agent // as the file declares them, in its order
	Services         []Service
	Sources, Targets []Selector
	Default          Verdict
	Rules            []Rule
	Probe            Probe
}

// Cell is one source x target x service of an expanded matrix, and, once run, what it
// measured.
type Cell struct {
	Source, Target, Service string
	Expected                Verdict
	Verdict                 Verdict
	Reason, Message         string
	RTT                     time.Duration
	Attempts                int
	Address                 string // the target's address as the source probed it
}

// OK reports whether the cell measured what was expected.
func (c Cell) OK() bool { return Matches(c.Expected, c.Verdict) }
