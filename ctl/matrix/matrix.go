// Package matrix is sockctl's connectivity matrix: a file of sources x targets x services with
// an expected table (package spec parses and expands it), run through the agents (listeners
// served by each target, one MeasureService.Sweep per source, all in the run's sessions,
// closed afterwards: package sweep) and rendered as a terminal grid, JSON, JUnit XML or a
// self-contained HTML heat map.
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
// It imports no gRPC server and no agent: it is a client of the agents, through ctl/client.
package matrix

import "github.com/sockagent/sockagent/ctl/matrix/spec"

// The file's model, shared with scenario steps: see package spec.
type (
	// Verdict is what a cell measured.
	Verdict = spec.Verdict
	// Agent is one agent a matrix may use.
	Agent = spec.Agent
	// Service is a port every target serves.
	Service = spec.Service
	// Selector picks agents.
	Selector = spec.Selector
	// Rule sets the expectation of the cells it covers; later rules win.
	Rule = spec.Rule
	// Probe are the settings of every source's Sweep.
	Probe = spec.Probe
	// File is a parsed matrix file.
	File = spec.File
	// Cell is one source x target x service and what it measured.
	Cell = spec.Cell
	// Plan is an expanded matrix.
	Plan = spec.Plan
)

// Verdicts of a cell (see spec.Open).
const (
	Open             = spec.Open
	Closed           = spec.Closed
	Filtered         = spec.Filtered
	Unreachable      = spec.Unreachable
	AgentUnavailable = spec.AgentUnavailable
	Error            = spec.Error
	Any              = spec.Any
)

// MaxCells bounds the cells of one matrix.
const MaxCells = spec.MaxCells

// Parse reads a matrix file (spec.Parse).
func Parse(path string, data []byte) (*File, error) { return spec.Parse(path, data) }

// Expand picks the sources and targets of f among agents and sets each cell's expectation
// (spec.Expand).
func Expand(f *File, agents []Agent) (*Plan, error) { return spec.Expand(f, agents) }

// IsMatrix reports whether data looks like a matrix file rather than a scenario.
func IsMatrix(data []byte) bool { return spec.IsMatrix(data) }

// CheckAddress says what is wrong with an agent's address, or "".
func CheckAddress(a string) string { return spec.CheckAddress(a) }

// Matches reports whether verdict v satisfies expectation e.
func Matches(e, v Verdict) bool { return spec.Matches(e, v) }

// NaturalCompare orders names with their digit runs compared as numbers: h2 before h10.
func NaturalCompare(a, b string) int { return spec.NaturalCompare(a, b) }
