package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sockagent/sockagent/ctl/diag"
	"github.com/sockagent/sockagent/ctl/internal/yamlwalk"
)

var (
	topKeys     = []string{"name", "agents", "services", "sources", "targets", "expect", "probe"}
	stepKeys    = []string{"services", "sources", "targets", "expect", "probe"}
	agentKeys   = []string{"address", "labels"}
	serviceKeys = []string{"network", "port"}
	expectKeys  = []string{"default", "rules"}
	ruleKeys    = []string{"from", "to", "service", "expect"}
	probeKeys   = []string{"concurrency", "timeout", "attempts", "spacing", "pace"}
	networks    = []string{"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"}
	identRE     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`) })
)

// Bounds of a file, so that a mistake (or a hostile file) cannot ask for millions of cells.
const (
	maxAgents   = 10_000
	maxServices = 64
	// MaxCells bounds the cells of one matrix.
	MaxCells = 1_000_000
	// maxConcurrency, maxAttempts, maxWait: the agent's own bounds of a sweep.
	maxConcurrency = 1024
	maxAttempts    = 10
	maxTimeout     = time.Minute
	maxSpacing     = 10 * time.Second
	maxPace        = 1 << 20
)

// IsMatrix reports whether data looks like a matrix file (it has a top-level services key)
// rather than a scenario, so that `sockctl validate` can check either.
func IsMatrix(data []byte) bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return false
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "services" {
			return true
		}
	}
	return false
}

// parser walks the YAML of one file, collecting problems.
type parser struct {
	yamlwalk.Walker
	file *File
}

func (p *parser) add(at diag.Pos, format string, args ...any) { p.Add(at, format, args...) }

func (p *parser) err() error { return p.Err() }

type entry = yamlwalk.Entry

// mapping returns the entries of a map (yamlwalk's Mapping), reporting keys that are not in
// known (with a "did you mean"); nil when there are none.
func (p *parser) mapping(n *yaml.Node, what, example string, known []string) []entry {
	entries, _ := p.Mapping(n, what, example)
	var out []entry
	for _, e := range entries {
		if known != nil && !slices.Contains(known, e.Key) {
			msg := fmt.Sprintf("unknown key %q in %s", e.Key, what)
			if s := diag.Suggest(e.Key, known); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			p.add(yamlwalk.Pos(e.KeyNode), "%s (keys: %s)", msg, strings.Join(known, ", "))
			continue
		}
		out = append(out, e)
	}
	return out
}

// scalar returns a single value, reporting lists, maps and empty values.
func (p *parser) scalar(what string, n *yaml.Node) (string, *yaml.Node, bool) {
	n = p.Node(n)
	if n == nil {
		return "", nil, false
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.add(yamlwalk.Pos(n), "%s must be a single value, not %s", what, yamlwalk.Kind(n))
		return "", nil, false
	}
	return n.Value, n, true
}

// Parse reads a matrix file. Problems are a *diag.Errors: one FILE:LINE:COL line each.
// Selectors naming agents the file does not declare are checked by Expand, which knows the
// inventory's agents too.
func Parse(path string, data []byte) (*File, error) {
	p := &parser{Walker: yamlwalk.Walker{Problems: yamlwalk.Problems{Path: path}, Limit: yamlwalk.MaxNodes}, file: &File{Path: path}}
	root, ok := p.document(data)
	if ok {
		p.top(root)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return p.file, nil
}

func (p *parser) document(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(diag.Pos{Line: 1, Col: 1}, "the file is empty; a matrix has services, sources, targets and expect")
			return nil, false
		}
		p.add(diag.Pos{Line: 1, Col: 1}, "invalid YAML: %v", err)
		return nil, false
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		p.add(diag.Pos{Line: max(next.Line, 1), Col: max(next.Column, 1)}, "a second YAML document (after ---) or invalid YAML; a file holds one matrix")
		return nil, false
	}
	if len(doc.Content) != 1 {
		p.add(diag.Pos{Line: 1, Col: 1}, "the file is empty; a matrix has services, sources, targets and expect")
		return nil, false
	}
	return doc.Content[0], true
}

// ParseStep reads the matrix of a scenario step: n is the value of the step's matrix key, in
// the scenario file at path. It takes what a matrix file does but name and agents: the
// scenario's agents are the matrix's, and the step has a name of its own. budget is the YAML
// nodes the scenario's parser has left to walk (aliases followed); ParseStep returns the
// problems it found, at their places in the scenario file, and the nodes it walked. Selectors
// are checked against the agents by Expand.
func ParseStep(path string, n *yaml.Node, budget int) (*File, []diag.Error, int) {
	p := &parser{Walker: yamlwalk.Walker{Problems: yamlwalk.Problems{Path: path}, Limit: budget}, file: &File{Path: path}}
	p.body(n, "a matrix step", "{services: {web: {network: tcp, port: 8080}}, sources: [all], targets: [all], expect: {default: open}}", stepKeys)
	return p.file, p.List, p.Nodes
}

func (p *parser) top(root *yaml.Node) {
	p.file.Name = strings.TrimSuffix(filepath.Base(p.Path), filepath.Ext(p.Path))
	p.body(root, "a matrix", "{name: ..., services: {...}, sources: [all], targets: [all], expect: {default: open}}", topKeys)
}

// body reads the keys of a matrix (those of known) from the map root.
func (p *parser) body(root *yaml.Node, what, example string, known []string) {
	entries := p.mapping(root, what, example, known)
	if root.Kind == yaml.AliasNode {
		root = root.Alias
	}
	if entries == nil && (root.Kind != yaml.MappingNode || len(root.Content) > 0) {
		return // not a map, or nothing in it was usable: reported already
	}
	has := map[string]bool{}
	for _, e := range entries {
		has[e.Key] = true
		switch e.Key {
		case "name":
			if s, _, ok := p.scalar("name", e.Value); ok {
				p.file.Name = s
			}
		case "agents":
			p.agents(e.Value)
		case "services":
			p.services(e.Value)
		case "sources":
			p.file.Sources = p.selectors("sources", e.Value)
		case "targets":
			p.file.Targets = p.selectors("targets", e.Value)
		case "expect":
			p.expect(e.Value)
		case "probe":
			p.probe(e.Value)
		}
	}
	for _, k := range []string{"services", "sources", "targets", "expect"} {
		if !has[k] {
			p.add(yamlwalk.Pos(root), "missing key %q: a matrix needs services, sources, targets and expect (e.g. sources: [all])", k)
		}
	}
}

func (p *parser) agents(n *yaml.Node) {
	entries := p.mapping(n, "agents", "{h1: 10.77.0.2:7700, h2: {address: 10.77.0.3:7700, labels: {role: db}}}", nil)
	if len(entries) > maxAgents {
		p.add(yamlwalk.Pos(n), "%d agents; at most %d", len(entries), maxAgents)
		return
	}
	for _, e := range entries {
		if !identRE().MatchString(e.Key) {
			p.add(yamlwalk.Pos(e.KeyNode), "an agent name must be a letter or _ followed by letters, digits, _, . or -; got %q", e.Key)
			continue
		}
		a := Agent{Name: e.Key}
		v := p.Node(e.Value)
		if v == nil {
			continue
		}
		if v.Kind == yaml.MappingNode {
			for _, f := range p.mapping(v, "agent "+e.Key, "{address: 10.77.0.3:7700, labels: {role: db}}", agentKeys) {
				switch f.Key {
				case "address":
					a.Address, _, _ = p.scalar("address", f.Value)
				case "labels":
					a.Labels = p.labels("labels of agent "+e.Key, f.Value)
				}
			}
		} else {
			a.Address, _, _ = p.scalar("agent "+e.Key, v)
		}
		if msg := CheckAddress(a.Address); msg != "" {
			p.add(yamlwalk.Pos(v), "agent %s: %s", e.Key, msg)
		}
		p.file.Agents = append(p.file.Agents, a)
	}
}

// CheckAddress says what is wrong with an agent's address, or "" (diag.AgentAddress: the
// scenarios' rule).
func CheckAddress(a string) string { return diag.AgentAddress(a) }

// labels reads a map of label keys to values.
func (p *parser) labels(what string, n *yaml.Node) map[string]string {
	out := map[string]string{}
	for _, e := range p.mapping(n, what, "{role: web, zone: a}", nil) {
		if !identRE().MatchString(e.Key) {
			p.add(yamlwalk.Pos(e.KeyNode), "a label key must be a letter or _ followed by letters, digits, _, . or -; got %q", e.Key)
			continue
		}
		if v, vn, ok := p.scalar("label "+e.Key, e.Value); ok {
			if _, err := path.Match(v, ""); err != nil {
				p.add(yamlwalk.Pos(vn), "label %s: %q is not a valid pattern (%v)", e.Key, v, err)
				continue
			}
			out[e.Key] = v
		}
	}
	return out
}

func (p *parser) services(n *yaml.Node) {
	entries := p.mapping(n, "services", "{web: {network: tcp, port: 8080}}", nil)
	if n.Kind == yaml.MappingNode && len(n.Content) == 0 {
		p.add(yamlwalk.Pos(n), "services is empty; give at least one, e.g. {web: {network: tcp, port: 8080}}")
	}
	if len(entries) > maxServices {
		p.add(yamlwalk.Pos(n), "%d services; at most %d", len(entries), maxServices)
		return
	}
	for _, e := range entries {
		s := Service{Name: e.Key, Pos: yamlwalk.Pos(e.KeyNode)}
		if !identRE().MatchString(e.Key) || e.Key == "all" {
			p.add(yamlwalk.Pos(e.KeyNode), "a service name must be a letter or _ followed by letters, digits, _, . or -, and not \"all\"; got %q", e.Key)
		}
		fields := p.mapping(e.Value, "service "+e.Key, "{network: tcp, port: 8080}", serviceKeys)
		given := map[string]bool{}
		for _, f := range fields {
			given[f.Key] = true
			v, vn, ok := p.scalar(f.Key, f.Value)
			if !ok {
				continue
			}
			switch f.Key {
			case "network":
				if !slices.Contains(networks, v) {
					msg := fmt.Sprintf("service %s: network %q is not one of %s", e.Key, v, strings.Join(networks, ", "))
					if s := diag.Suggest(v, networks); s != "" {
						msg += fmt.Sprintf("; did you mean %q?", s)
					}
					p.add(yamlwalk.Pos(vn), "%s", msg)
				}
				s.Network = v
			case "port":
				port, err := strconv.Atoi(v)
				if err != nil || port < 1 || port > 65535 {
					p.add(yamlwalk.Pos(vn), "service %s: port %q is not a number from 1 to 65535", e.Key, v)
				}
				s.Port = port
			}
		}
		if fields != nil && (!given["network"] || !given["port"]) {
			p.add(yamlwalk.Pos(e.KeyNode), "service %s needs network and port, e.g. {network: tcp, port: 8080}", e.Key)
		}
		p.file.Services = append(p.file.Services, s)
	}
}

// selectors reads one selector or a list of them.
func (p *parser) selectors(what string, n *yaml.Node) []Selector {
	n = p.Node(n)
	if n == nil {
		return nil
	}
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
		if len(items) == 0 {
			p.add(yamlwalk.Pos(n), "%s is empty; give agent names, label selectors such as {role: web}, or all", what)
		}
	}
	var out []Selector
	for _, it := range items {
		it = p.Node(it)
		if it == nil {
			return out
		}
		switch it.Kind {
		case yaml.ScalarNode:
			if it.Tag == "!!null" {
				p.add(yamlwalk.Pos(it), "%s: an empty selector; give an agent name, a pattern such as web*, {role: web}, or all", what)
				continue
			}
			if _, err := path.Match(it.Value, ""); err != nil {
				p.add(yamlwalk.Pos(it), "%s: %q is not a valid name pattern (%v)", what, it.Value, err)
				continue
			}
			out = append(out, Selector{All: it.Value == "all", Name: it.Value, Pos: yamlwalk.Pos(it)})
		case yaml.MappingNode:
			l := p.labels(what+" selector", it)
			if len(l) == 0 {
				p.add(yamlwalk.Pos(it), "%s: an empty label selector {} would pick every agent; write all", what)
				continue
			}
			out = append(out, Selector{Labels: l, Pos: yamlwalk.Pos(it)})
		default:
			p.add(yamlwalk.Pos(it), "%s: a selector is an agent name, a pattern, {label: value} or all, not %s", what, yamlwalk.Kind(it))
		}
	}
	return out
}

func (p *parser) verdict(what string, n *yaml.Node) (Verdict, bool) {
	v, vn, ok := p.scalar(what, n)
	if !ok {
		return "", false
	}
	if !slices.Contains(expectable, v) {
		msg := fmt.Sprintf("%s: %q is not one of %s", what, v, strings.Join(expectable, ", "))
		if s := diag.Suggest(v, expectable); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		p.add(yamlwalk.Pos(vn), "%s", msg)
		return "", false
	}
	return Verdict(v), true
}

func (p *parser) expect(n *yaml.Node) {
	p.file.Default = Open
	for _, e := range p.mapping(n, "expect", "{default: open, rules: [...]}", expectKeys) {
		switch e.Key {
		case "default":
			if v, ok := p.verdict("expect.default", e.Value); ok {
				p.file.Default = v
			}
		case "rules":
			rn := p.Node(e.Value)
			if rn == nil {
				continue
			}
			if rn.Kind != yaml.SequenceNode {
				p.add(yamlwalk.Pos(rn), "expect.rules must be a list such as [{from: all, to: {role: db}, service: web, expect: filtered}], not %s", yamlwalk.Kind(rn))
				continue
			}
			for _, r := range rn.Content {
				p.rule(r)
			}
		}
	}
}

func (p *parser) rule(n *yaml.Node) {
	r := Rule{Pos: yamlwalk.Pos(n)}
	has := map[string]bool{}
	for _, e := range p.mapping(n, "a rule", "{from: all, to: {role: db}, service: web, expect: filtered}", ruleKeys) {
		has[e.Key] = true
		switch e.Key {
		case "from":
			r.From = p.selectors("from", e.Value)
		case "to":
			r.To = p.selectors("to", e.Value)
		case "service":
			r.Services = p.serviceRefs(e.Value)
		case "expect":
			r.Expect, _ = p.verdict("expect", e.Value)
		}
	}
	if !has["expect"] {
		p.add(r.Pos, "a rule needs expect: open, closed, filtered, unreachable or any")
	}
	if !has["from"] {
		r.From = []Selector{{All: true, Name: "all", Pos: r.Pos}}
	}
	if !has["to"] {
		r.To = []Selector{{All: true, Name: "all", Pos: r.Pos}}
	}
	p.file.Rules = append(p.file.Rules, r)
}

// serviceRefs reads a rule's service: a name, a list of names, or all (nil).
func (p *parser) serviceRefs(n *yaml.Node) []string {
	n = p.Node(n)
	if n == nil {
		return nil
	}
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	var names []string
	for _, it := range items {
		v, vn, ok := p.scalar("service", it)
		if !ok {
			continue
		}
		if v == "all" {
			return nil
		}
		if !slices.ContainsFunc(p.file.Services, func(s Service) bool { return s.Name == v }) {
			known := make([]string, len(p.file.Services))
			for i, s := range p.file.Services {
				known[i] = s.Name
			}
			msg := fmt.Sprintf("service %q is not declared under services (%s)", v, strings.Join(known, ", "))
			if s := diag.Suggest(v, known); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			p.add(yamlwalk.Pos(vn), "%s", msg)
			continue
		}
		names = append(names, v)
	}
	return names
}

func (p *parser) probe(n *yaml.Node) {
	pr := &p.file.Probe
	for _, e := range p.mapping(n, "probe", "{concurrency: 64, timeout: 1s, attempts: 2, spacing: 100ms, pace: 500}", probeKeys) {
		v, vn, ok := p.scalar("probe."+e.Key, e.Value)
		if !ok {
			continue
		}
		switch e.Key {
		case "concurrency":
			pr.Concurrency = p.count(e.Key, v, vn, 1, maxConcurrency)
		case "attempts":
			pr.Attempts = p.count(e.Key, v, vn, 2, maxAttempts)
		case "pace":
			pr.Pace = p.count(e.Key, v, vn, 1, maxPace)
		case "timeout":
			pr.Timeout = p.duration(e.Key, v, vn, maxTimeout)
		case "spacing":
			pr.Spacing = p.duration(e.Key, v, vn, maxSpacing)
		}
	}
}

func (p *parser) count(key, v string, n *yaml.Node, lo, hi int) int {
	x, err := strconv.Atoi(v)
	if err != nil || x < lo || x > hi {
		p.add(yamlwalk.Pos(n), "probe.%s: %q is not a number from %d to %d", key, v, lo, hi)
		return 0
	}
	return x
}

func (p *parser) duration(key, v string, n *yaml.Node, hi time.Duration) time.Duration {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > hi {
		p.add(yamlwalk.Pos(n), "probe.%s: %q is not a duration from 1ms to %s (such as 500ms)", key, v, hi)
		return 0
	}
	return d
}
