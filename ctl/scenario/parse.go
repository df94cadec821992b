package scenario

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

	"go.yaml.in/yaml/v3"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/diag"
	"github.com/sockagent/sockagent/ctl/internal/yamlwalk"
)

// maxNodes bounds the YAML nodes a file may have once aliases (*name) are followed, so that
// a file of nested aliases cannot make Parse walk forever.
const maxNodes = yamlwalk.MaxNodes

// MaxRepeat is the largest repeat count.
const MaxRepeat = 100_000

var (
	topKeys    = []string{"name", "agents", "vars", "steps"}
	stepKeys   = []string{"on", "as", "name", "expect"}
	repeatKeys = []string{"count", "steps"}
	agentKeys  = []string{"address", "labels"}
	// The regular expressions compile on first use, not at package init, which every
	// sockctl start pays for.
	identRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`) })
	// labelKeyRE is the shape of a label key, as matrix files and inventories write them.
	labelKeyRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`) })
	// socketIDRE is the shape of the ids agents give sockets (contract.FormatSocketID), and of
	// those older agents gave (s1, s2, ...): an alias of that shape would make a step's socket
	// mean the id when the alias was not created.
	socketIDRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(fmt.Sprintf(`^s(?:[0-9]+|[0-9a-f]{%d}-[0-9]+)$`, contract.SocketIDInstanceLen))
	})
	reasonRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`) })
	syntaxRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`) })
)

// reserved are names that refer to something other than an alias or agent in ${...}.
var reserved = []string{"vars", "env", "i"}

// creates are the actions that create a socket (and so may have `as`); measures those whose
// results `as` may name: ${ALIAS.rtt_p50} in later steps.
var (
	creates  = actionsWhere(func(s ActionSpec) bool { return s.Creates })
	measures = actionsWhere(func(s ActionSpec) bool { return s.Results })
)

// expectFor lists the actions each expect key applies to; absent keys apply to all.
var expectFor = map[string][]string{
	"data":        {"recv", "recvfrom"},
	"data_hex":    {"recv", "recvfrom"},
	"data_base64": {"recv", "recvfrom"},
	"contains":    {"recv", "recvfrom"},
	"eof":         {"recv"},
	"from":        {"recvfrom"},
	"bytes":       {"send", "sendto", "recv", "recvfrom", "throughput"},

	"rtt_min":         {"probe"},
	"rtt_p50":         {"probe"},
	"rtt_p90":         {"probe"},
	"rtt_p99":         {"probe"},
	"rtt_max":         {"probe"},
	"rtt_mean":        {"probe"},
	"received":        {"probe"},
	"loss":            {"probe", "throughput"},
	"errors":          {"probe", "throughput"},
	"bits_per_second": {"throughput"},
	"retransmits":     {"throughput"},
	"rtt":             {"throughput"},
}

// parser walks the YAML node tree of one file.
type parser struct {
	yamlwalk.Walker
	file   *File
	agents map[string]bool
	meta   map[*Step]*stepMeta
}

func (p *parser) add(at Pos, format string, args ...any) { p.Add(at, format, args...) }

func (p *parser) err() error { return p.Err() }

// stepMeta is where the parts of a step are, for the messages of the later checks.
type stepMeta struct {
	as     Pos // the value of `as`
	action Pos // the action key
}

func parse(path string, data []byte) (*File, error) {
	p := &parser{Walker: yamlwalk.Walker{Problems: yamlwalk.Problems{Path: path}, Limit: maxNodes}, meta: map[*Step]*stepMeta{}, agents: map[string]bool{}}
	root, ok := p.document(data)
	if !ok {
		return nil, p.err()
	}
	p.file = &File{Path: path}
	p.top(root)
	if !p.Over {
		newChecker(p).steps(p.file.Steps, &scope{})
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return p.file, nil
}

// document decodes data into its one YAML document.
func (p *parser) document(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(Pos{Line: 1, Col: 1}, "the file is empty; a scenario has name, agents and steps")
			return nil, false
		}
		p.syntax(err, data)
		return nil, false
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.syntax(err, data)
		return nil, false
	default:
		p.add(Pos{Line: next.Line, Col: next.Column}, "a second YAML document (after ---); a file holds one scenario")
		return nil, false
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		p.add(Pos{Line: 1, Col: 1}, "the file is empty; a scenario has name, agents and steps")
		return nil, false
	}
	return doc.Content[0], true
}

// parserProblems are the messages of the YAML parser (as opposed to its scanner). For
// those, yaml.v3 gives the 0-based line of the construct being parsed (an unclosed "{", say),
// so the line is one more than it says.
var parserProblems = []string{
	"did not find expected ',' or ']'", "did not find expected ',' or '}'",
	"did not find expected '-' indicator", "did not find expected <document start>",
	"did not find expected <stream-start>", "did not find expected key",
	"did not find expected node content", "found duplicate %TAG directive",
	"found duplicate %YAML directive", "found incompatible YAML document", "found undefined tag handle",
}

// syntax reports a YAML syntax error. The YAML library gives a line but no column: the
// column is then 1; with no line, the problem is on line 1.
func (p *parser) syntax(err error, data []byte) {
	m := syntaxRE().FindStringSubmatch(err.Error())
	if m == nil {
		p.add(Pos{Line: 1, Col: 1}, "invalid YAML: %v", err)
		return
	}
	line, _ := strconv.Atoi(m[1])
	if line > 0 && slices.Contains(parserProblems, m[2]) {
		line++
	}
	hint := ""
	if lines := strings.Split(string(data), "\n"); line >= 1 && line <= len(lines) {
		if c := unquotedGT().FindStringSubmatch(lines[line-1]); c != nil {
			hint = fmt.Sprintf("; a comparison that starts with > must be quoted: %s: %q", c[1], c[2])
		}
	}
	p.add(Pos{Line: max(line, 1), Col: 1}, "invalid YAML: %s%s", m[2], hint)
}

// unquotedGT matches "key: >= 1G", which YAML reads as a folded block.
var unquotedGT = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`([A-Za-z_]+):\s+(>=?\s*[^\s,}]+)`) })

// entry is one key: value of a mapping.
type entry = yamlwalk.Entry

// scalar reads the scalar value of key; null and collections are reported.
func (p *parser) scalar(key string, n *yaml.Node) (Scalar, bool) {
	return p.scalarOf(key, key, n)
}

// scalarOf is scalar for a value that messages call what.
func (p *parser) scalarOf(what, key string, n *yaml.Node) (Scalar, bool) {
	n = p.Node(n)
	if n == nil {
		return Scalar{}, false
	}
	switch {
	case n.Kind != yaml.ScalarNode:
		p.add(yamlwalk.Pos(n), "%s must be a single value, not %s", what, yamlwalk.Kind(n))
		return Scalar{}, false
	case n.Tag == "!!null" && n.Style == 0:
		p.add(yamlwalk.Pos(n), "%s has no value; write %s: \"\" for an empty string", what, key)
		return Scalar{}, false
	}
	return Scalar{Raw: n.Value, Pos: yamlwalk.Pos(n)}, true
}

// sequence returns the items of a list node.
func (p *parser) sequence(n *yaml.Node, what, example string) ([]*yaml.Node, bool) {
	n = p.Node(n)
	if n == nil {
		return nil, false
	}
	if n.Kind != yaml.SequenceNode {
		p.add(yamlwalk.Pos(n), "%s must be a list such as %s, not %s", what, example, yamlwalk.Kind(n))
		return nil, false
	}
	if len(n.Content) == 0 {
		p.add(yamlwalk.Pos(n), "%s is empty; give at least one step", what)
		return nil, false
	}
	return n.Content, true
}

// unknown reports an unknown key with a suggestion among the known ones.
func (p *parser) unknown(e entry, where string, known []string, listed string) {
	msg := fmt.Sprintf("unknown key %q in %s", e.Key, where)
	if s := suggest(e.Key, known); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	p.add(yamlwalk.Pos(e.KeyNode), "%s (keys: %s)", msg, listed)
}

func (p *parser) top(root *yaml.Node) {
	entries, ok := p.Mapping(root, "a scenario", "{name: ..., agents: {...}, steps: [...]}")
	if !ok {
		return
	}
	has := map[string]bool{}
	var agentsNode *yaml.Node
	var stepsNode *yaml.Node
	for _, e := range entries {
		has[e.Key] = true
		switch e.Key {
		case "name":
			if s, ok := p.scalar("name", e.Value); ok {
				p.file.Name = s.Raw
			}
		case "agents":
			agentsNode = e.Value
		case "vars":
			p.vars(e.Value)
		case "steps":
			stepsNode = e.Value
		default:
			p.unknown(e, "the scenario", topKeys, strings.Join(topKeys, ", "))
		}
	}
	if !has["name"] {
		p.file.Name = strings.TrimSuffix(filepath.Base(p.Path), filepath.Ext(p.Path))
	}
	at := yamlwalk.Pos(root)
	if agentsNode == nil {
		p.add(at, "missing key \"agents\": declare the agents the steps run on, e.g. agents: {server: local, client: local}")
	} else {
		p.agentList(agentsNode)
	}
	if stepsNode == nil {
		p.add(at, "missing key \"steps\": a scenario needs a list of steps")
	} else if items, ok := p.sequence(stepsNode, "steps", "[{on: server, listen: {...}}]"); ok {
		p.file.Steps = p.stepList(items)
	}
}

func (p *parser) agentList(n *yaml.Node) {
	entries, ok := p.Mapping(n, "agents", "{server: 10.0.0.2:7700, client: local}")
	if !ok {
		return
	}
	if len(entries) == 0 {
		p.add(yamlwalk.Pos(n), "agents is empty; declare at least one agent, e.g. agents: {server: local}")
	}
	for _, e := range entries {
		p.checkName(e, "an agent")
		s, labels, ok := p.agentEntry(e)
		if !ok {
			continue
		}
		if msg := checkAddress(s.Raw); msg != "" {
			p.add(s.Pos, "agent %s: %s", e.Key, msg)
		}
		p.agents[e.Key] = true
		p.file.Agents = append(p.file.Agents, Agent{Name: e.Key, Address: s.Raw, Labels: labels, Pos: yamlwalk.Pos(e.KeyNode)})
	}
}

// agentEntry reads an agent's value: an address, or {address: ADDR, labels: {KEY: VALUE}}.
func (p *parser) agentEntry(e entry) (Scalar, map[string]string, bool) {
	v := p.Node(e.Value)
	if v == nil || v.Kind != yaml.MappingNode {
		s, ok := p.scalarOf("agent "+e.Key, e.Key, e.Value)
		return s, nil, ok
	}
	fields, _ := p.Mapping(v, "agent "+e.Key, "{address: local, labels: {role: web}}")
	var addr *entry
	var labels map[string]string
	for i, f := range fields {
		switch f.Key {
		case "address":
			addr = &fields[i]
		case "labels":
			labels = p.labels("labels of agent "+e.Key, f.Value)
		default:
			p.unknown(f, "agent "+e.Key, agentKeys, strings.Join(agentKeys, ", "))
		}
	}
	if addr == nil {
		p.add(yamlwalk.Pos(v), "agent %s needs an address: {address: HOST:PORT, labels: {role: web}} (or local)", e.Key)
		return Scalar{}, nil, false
	}
	s, ok := p.scalarOf("agent "+e.Key, "address", addr.Value)
	return s, labels, ok
}

// labels reads a map of label keys to values (values may be path.Match patterns in a
// selector).
func (p *parser) labels(what string, n *yaml.Node) map[string]string {
	entries, ok := p.Mapping(n, what, "{role: web, zone: a}")
	if !ok {
		return nil
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		if !labelKeyRE().MatchString(e.Key) {
			p.add(yamlwalk.Pos(e.KeyNode), "a label key must be a letter or _ followed by letters, digits, _, . or -; got %q", e.Key)
			continue
		}
		s, ok := p.scalarOf("label "+e.Key, e.Key, e.Value)
		if !ok {
			continue
		}
		if _, err := path.Match(s.Raw, ""); err != nil {
			p.add(s.Pos, "label %s: %q is not a valid pattern (%v)", e.Key, s.Raw, err)
			continue
		}
		out[e.Key] = s.Raw
	}
	return out
}

// checkName reports a name (of an agent or var) that is not an identifier or is reserved.
func (p *parser) checkName(e entry, what string) {
	switch {
	case !identRE().MatchString(e.Key):
		p.add(yamlwalk.Pos(e.KeyNode), "%s name must be a letter or _ followed by letters, digits, _ or -; got %q", what, e.Key)
	case slices.Contains(reserved, e.Key):
		p.add(yamlwalk.Pos(e.KeyNode), "%q cannot be %s name: ${%s...} means something else; pick another name", e.Key, what, e.Key)
	}
}

// checkAddress says what is wrong with an agent's address as a scenario gives it, or "".
func checkAddress(a string) string {
	if strings.Contains(a, "${") {
		return "addresses are taken as written (no ${...}); override them at run time with --agent NAME=HOST:PORT or --inventory"
	}
	return diag.AgentAddress(a)
}

func (p *parser) vars(n *yaml.Node) {
	entries, ok := p.Mapping(n, "vars", `{greeting: "Hello"}`)
	if !ok {
		return
	}
	p.file.Vars = map[string]string{}
	for _, e := range entries {
		p.checkName(e, "a var")
		s, ok := p.scalarOf("var "+e.Key, e.Key, e.Value)
		if !ok {
			continue
		}
		if strings.Contains(s.Raw, "${") {
			p.add(s.Pos, "var %s: vars are taken as written, ${...} inside one is not expanded; write $${ for a literal ${", e.Key)
		}
		p.file.Vars[e.Key] = strings.ReplaceAll(s.Raw, "$$", "$")
	}
}

// stepList reads a list of steps.
func (p *parser) stepList(items []*yaml.Node) []*Step {
	var out []*Step
	for _, it := range items {
		if p.Over {
			return out
		}
		if s := p.step(it); s != nil {
			out = append(out, s)
		}
	}
	return out
}

func (p *parser) step(n *yaml.Node) *Step {
	entries, ok := p.Mapping(n, "a step", "{on: AGENT, ACTION: {...}}")
	if !ok {
		return nil
	}
	n = p.Node(n)
	st := &Step{Pos: yamlwalk.Pos(n)}
	var blocks []entry
	for _, e := range entries {
		if e.Key == "parallel" || e.Key == "repeat" {
			blocks = append(blocks, e)
		}
	}
	switch {
	case len(blocks) > 1:
		p.add(yamlwalk.Pos(blocks[1].KeyNode), "a step has either parallel or repeat, not both; nest one inside the other")
		return nil
	case len(blocks) == 1:
		return p.block(st, blocks[0], entries)
	}
	return p.action(st, entries)
}

func (p *parser) block(st *Step, b entry, entries []entry) *Step {
	for _, e := range entries {
		switch e.Key {
		case b.Key:
		case "name":
			if s, ok := p.scalar("name", e.Value); ok {
				st.Name = s.Raw
			}
		default:
			p.add(yamlwalk.Pos(e.KeyNode), "%q is not allowed in a %s block (keys: %s, name); put it on the steps inside", e.Key, b.Key, b.Key)
		}
	}
	if b.Key == "parallel" {
		items, ok := p.sequence(b.Value, "parallel", "[{on: a, ...}, {on: b, ...}]")
		if !ok {
			return nil
		}
		st.Parallel = p.stepList(items)
		if len(st.Parallel) == 0 {
			return nil
		}
		return st
	}
	rentries, ok := p.Mapping(b.Value, "repeat", "{count: 3, steps: [...]}")
	if !ok {
		return nil
	}
	r := &Repeat{}
	var count, steps *entry
	for i, e := range rentries {
		switch e.Key {
		case "count":
			count = &rentries[i]
		case "steps":
			steps = &rentries[i]
		default:
			p.unknown(e, "repeat", repeatKeys, "count, steps")
		}
	}
	at := yamlwalk.Pos(b.KeyNode)
	if count == nil {
		p.add(at, "repeat is missing \"count\" (how many times, 1 to %d)", MaxRepeat)
	} else if s, ok := p.scalar("count", count.Value); ok {
		r.Count = p.count(s)
	}
	if steps == nil {
		p.add(at, "repeat is missing \"steps\" (the steps to repeat)")
	} else if items, ok := p.sequence(steps.Value, "repeat steps", "[{on: a, ...}]"); ok {
		r.Steps = p.stepList(items)
	}
	if r.Count == 0 || len(r.Steps) == 0 {
		return nil
	}
	st.Repeat = r
	return st
}

// count reads a repeat count: a whole number, or ${vars.NAME} holding one.
func (p *parser) count(s Scalar) int {
	raw := s.Raw
	if strings.Contains(raw, "$") {
		v, err := expand(raw, func(ref string) (string, error) {
			name, ok := strings.CutPrefix(ref, "vars.")
			if v, found := p.file.Vars[name]; ok && found {
				return v, nil
			}
			return "", fmt.Errorf("${%s}: count may use ${vars.NAME} of a declared var only", ref)
		})
		if err != nil {
			p.add(s.Pos, "count: %v", err)
			return 0
		}
		raw = v
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > MaxRepeat {
		p.add(s.Pos, "count: want a whole number from 1 to %d, got %q", MaxRepeat, raw)
		return 0
	}
	return n
}

func (p *parser) action(st *Step, entries []entry) *Step {
	m := &stepMeta{}
	var actions []entry
	var asEntry, expectEntry, onEntry *entry
	typo := false // an unknown key looks like a misspelt action
	for i, e := range entries {
		switch {
		case slices.Contains(Actions, e.Key):
			actions = append(actions, e)
		case e.Key == "on":
			onEntry = &entries[i]
		case e.Key == "as":
			asEntry = &entries[i]
		case e.Key == "expect":
			expectEntry = &entries[i]
		case e.Key == "name":
			if s, ok := p.scalar("name", e.Value); ok {
				st.Name = s.Raw
			}
		default:
			known := append(append(slices.Clone(stepKeys), Actions...), "parallel", "repeat")
			p.unknown(e, "step", known, "on, as, name, expect, and one action")
			typo = typo || slices.Contains(Actions, suggest(e.Key, known))
		}
	}
	switch len(actions) {
	case 0:
		if typo {
			break
		}
		p.add(st.Pos, "step has no action; give one of %s (or parallel/repeat for a block)", strings.Join(Actions, ", "))
	case 1:
	default:
		p.add(yamlwalk.Pos(actions[1].KeyNode), "step has two actions, %q and %q; a step does one thing: split it into two steps", actions[0].Key, actions[1].Key)
	}
	if len(actions) > 0 {
		a := actions[0]
		st.Action = a.Key
		m.action = yamlwalk.Pos(a.KeyNode)
		if a.Key == "matrix" {
			st.Args, st.Matrix = Args{}, p.matrix(a)
		} else {
			st.Args = p.args(a)
		}
	}
	switch {
	case onEntry != nil && st.Matrix != nil:
		p.add(yamlwalk.Pos(onEntry.KeyNode), "a matrix step runs on the agents its sources and targets pick; drop on")
	case onEntry != nil:
		p.on(st, *onEntry)
	default:
		if spec, ok := Action(st.Action); ok && !spec.NoAgent {
			p.add(st.Pos, "step has no \"on\": say which agent runs it, e.g. on: %s", p.firstAgent())
		}
	}
	if asEntry != nil {
		if s, ok := p.scalar("as", asEntry.Value); ok {
			st.As, m.as = s.Raw, s.Pos
			if st.OnAll != nil {
				p.add(yamlwalk.Pos(asEntry.KeyNode), "as names one socket or one result, but this step runs on every agent %s picks; drop as, or give each agent a step of its own", st.OnAll)
			}
			if st.Action != "" && !slices.Contains(creates, st.Action) && !slices.Contains(measures, st.Action) {
				p.add(yamlwalk.Pos(asEntry.KeyNode), "as names the socket a step creates (%s) or the results of %s; %s has neither", strings.Join(creates, ", "), strings.Join(measures, " and "), st.Action)
			}
		}
	}
	if expectEntry != nil {
		st.Expect = p.expect(st.Action, *expectEntry)
		if st.Matrix != nil {
			p.matrixExpect(st.Expect)
		}
	}
	p.meta[st] = m
	return st
}

// on reads a step's agent: a name; or, to fan the step out to every agent it picks, a label
// selector (picking at least one of the file's agents), a list of names, or all (unless an
// agent is called all: then it is that agent, as before lists were).
func (p *parser) on(st *Step, e entry) {
	v := p.Node(e.Value)
	if v == nil {
		return
	}
	switch {
	case v.Kind == yaml.SequenceNode:
		p.onList(st, v)
		return
	case v.Kind != yaml.MappingNode:
		if s, ok := p.scalar("on", v); ok {
			if s.Raw == "all" && !p.agents["all"] {
				st.OnAll = &Selector{All: true, Name: "all", Pos: s.Pos}
				return
			}
			st.On = s.Raw
			p.checkOn(s)
		}
		return
	}
	labels := p.labels("on", v)
	if len(labels) == 0 {
		if len(v.Content) == 0 {
			p.add(yamlwalk.Pos(v), "on: an empty selector {} would pick every agent; name the labels, such as on: {role: web}")
		}
		return
	}
	sel := &Selector{Labels: labels, Pos: yamlwalk.Pos(v)}
	st.OnAll = sel
	if len(p.file.Agents) > 0 && len(p.file.Pick(*sel, nil)) == 0 {
		p.add(sel.Pos, "on: %s picks no agent (agents: %s); label agents with {address: ..., labels: {role: web}}", sel, p.agentLabels())
	}
}

// agentLabels lists the agents with their labels, for a selector that picks none.
func (p *parser) agentLabels() string {
	parts := make([]string, len(p.file.Agents))
	for i, a := range p.file.Agents {
		parts[i] = a.Name
		if len(a.Labels) > 0 {
			parts[i] += " " + Selector{Labels: a.Labels}.String()
		}
	}
	return strings.Join(parts, ", ")
}

func (p *parser) firstAgent() string {
	if len(p.file.Agents) > 0 {
		return p.file.Agents[0].Name
	}
	return "AGENT"
}

func (p *parser) checkOn(s Scalar) {
	switch {
	case len(p.file.Agents) == 0:
		// agents are missing or broken: reported already
	case strings.Contains(s.Raw, "${"):
		p.add(s.Pos, "on names an agent as declared in agents; ${...} is not expanded here")
	case !p.agents[s.Raw]:
		names := make([]string, len(p.file.Agents))
		for i, a := range p.file.Agents {
			names[i] = a.Name
		}
		msg := fmt.Sprintf("unknown agent %q", s.Raw)
		if sg := suggest(s.Raw, names); sg != "" {
			msg += fmt.Sprintf("; did you mean %q?", sg)
		}
		p.add(s.Pos, "%s (agents: %s)", msg, strings.Join(names, ", "))
	}
}

// args reads and checks the arguments of an action.
func (p *parser) args(a entry) Args {
	args := Args{}
	v := p.Node(a.Value)
	if v == nil {
		return args
	}
	spec, _ := Action(a.Key) // a.Key is one of Actions
	allowed := spec.Args
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Style == 0 {
		v = &yaml.Node{Kind: yaml.MappingNode, Line: v.Line, Column: v.Column}
	}
	entries, ok := p.Mapping(v, a.Key, fmt.Sprintf("{%s: ...}", allowed[0]))
	if !ok {
		return args
	}
	var data, typos []string
	for _, e := range entries {
		if !slices.Contains(allowed, e.Key) {
			p.unknown(e, a.Key, allowed, strings.Join(allowed, ", "))
			typos = append(typos, suggest(e.Key, allowed))
			continue
		}
		if e.Key == "tls" {
			p.tlsArgs(a.Key, e, args)
			continue
		}
		if p.structured(e, args) {
			continue
		}
		s, ok := p.scalar(e.Key, e.Value)
		if !ok {
			continue
		}
		args[e.Key] = s
		if slices.Contains(dataKeys, e.Key) {
			data = append(data, e.Key)
			if len(data) == 2 {
				p.add(yamlwalk.Pos(e.KeyNode), "give one of data, data_hex, data_base64 or data_size, not both %s and %s", data[0], data[1])
			}
		}
		p.literal(a.Key, e.Key, s)
	}
	var missing []string
	for _, k := range spec.Required {
		given := slices.ContainsFunc(entries, func(e entry) bool { return e.Key == k })
		if _, ok := args[k]; !ok && !given && !slices.Contains(typos, k) {
			missing = append(missing, strconv.Quote(k))
		}
	}
	if len(missing) > 0 {
		p.add(yamlwalk.Pos(a.KeyNode), "%s is missing %s (required: %s)", a.Key, strings.Join(missing, " and "), strings.Join(spec.Required, ", "))
	}
	if a.Key == "serve" {
		p.serveArgs(a, args)
	}
	if (a.Key == "send" || a.Key == "sendto") && len(data) == 0 && !slices.ContainsFunc(typos, func(k string) bool { return slices.Contains(dataKeys, k) }) {
		p.add(yamlwalk.Pos(a.KeyNode), "%s needs a payload: give one of data, data_hex, data_base64 or data_size", a.Key)
	}
	return args
}

// literal checks a value without ${...} references.
func (p *parser) literal(action, key string, s Scalar) {
	if strings.Contains(s.Raw, "${") {
		return
	}
	raw := strings.ReplaceAll(s.Raw, "$$", "$")
	var err error
	if ok, e := measureLiteral(action, key, raw); ok {
		if e != nil {
			p.add(s.Pos, "%s: %v", key, e)
		}
		return
	}
	switch key {
	case "network":
		spec, _ := Action(action)
		if !contract.NetworkAllowed(spec.Network, raw) {
			err = fmt.Errorf("%s takes network %s; got %q", action, orList(contract.Networks(spec.Network)), raw)
		}
	case "timeout", "duration", "within":
		_, err = parseDuration(raw)
	case "max_bytes", "exact_bytes", "bytes":
		_, err = parseUint(raw)
	case "data_size":
		_, err = parseDataSize(raw)
	case "eof":
		_, err = parseBool(raw)
	case "data_hex":
		_, err = decodeHex(raw)
	case "data_base64":
		_, err = decodeBase64(raw)
	case "direction":
		if !slices.Contains([]string{"read", "write", "both"}, raw) {
			err = fmt.Errorf("want read, write or both, got %q", raw)
		}
	case "error":
		err = checkReason(raw)
	case "socket":
		if raw == "" {
			err = errors.New("empty; name the socket by the alias a step gave it with as")
		}
	}
	if err != nil {
		p.add(s.Pos, "%s: %v", key, err)
	}
}

// expectLiteral checks an expectation without ${...} references: a comparison for a measured
// figure (bytes is one on throughput only), else as literal does.
func (p *parser) expectLiteral(action, key string, s Scalar) {
	if fig, _ := IsFigure(key); !fig || (key == "bytes" && action != "throughput") {
		p.literal(action, key, s)
		return
	}
	if strings.Contains(s.Raw, "${") {
		return
	}
	if _, err := parseComparison(key, strings.ReplaceAll(s.Raw, "$$", "$")); err != nil {
		p.add(s.Pos, "%s: %v", key, err)
	}
}

func orList(xs []string) string {
	if len(xs) == 1 {
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " or " + xs[len(xs)-1]
}

// expect reads and checks the expectations of a step.
func (p *parser) expect(action string, e entry) Args {
	out := Args{}
	v := p.Node(e.Value)
	if v == nil {
		return out
	}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Style == 0 {
		return out
	}
	entries, ok := p.Mapping(v, "expect", "{data: \"Hello\"}")
	if !ok {
		return out
	}
	var data []string
	for _, x := range entries {
		if !slices.Contains(ExpectKeys, x.Key) {
			p.unknown(x, "expect", ExpectKeys, strings.Join(expectKeysFor(action), ", "))
			continue
		}
		s, ok := p.scalar(x.Key, x.Value)
		if !ok {
			continue
		}
		out[x.Key] = s
		p.expectLiteral(action, x.Key, s)
		if acts, ok := expectFor[x.Key]; ok && action != "" && !slices.Contains(acts, action) {
			p.add(yamlwalk.Pos(x.KeyNode), "expect %s applies to %s, not to %s", x.Key, orList(acts), action)
		}
		if x.Key == "data" || x.Key == "data_hex" || x.Key == "data_base64" {
			data = append(data, x.Key)
			if len(data) == 2 {
				p.add(yamlwalk.Pos(x.KeyNode), "expect one of data, data_hex or data_base64, not both %s and %s", data[0], data[1])
			}
		}
	}
	if _, ok := out["error"]; ok {
		for _, x := range entries {
			if x.Key != "error" && x.Key != "within" && slices.Contains(ExpectKeys, x.Key) {
				p.add(yamlwalk.Pos(x.KeyNode), "expect error cannot be combined with %s: a step that fails has no result to check (only within may go with error)", x.Key)
			}
		}
	}
	return out
}

// checkReason accepts a reason an expectation may name: one of the agent's, a measurement's
// or the runner's own (contract.IsReason).
func checkReason(raw string) error {
	if !reasonRE().MatchString(raw) {
		return fmt.Errorf("want an error reason in upper case such as CONNECTION_REFUSED or TIMEOUT, got %q", raw)
	}
	if contract.IsReason(raw) {
		return nil
	}
	known := slices.Concat(contract.AgentReasons(), contract.MeasureReasons(), contract.ClientReasons())
	msg := fmt.Sprintf("unknown reason %q", raw)
	lower := make([]string, len(known)) // suggest compares in lower case
	for i, k := range known {
		lower[i] = strings.ToLower(k)
	}
	if sg := suggest(raw, lower); sg != "" {
		msg += fmt.Sprintf("; did you mean %q?", strings.ToUpper(sg))
	}
	return fmt.Errorf("%s (known reasons: %s)", msg, strings.Join(known, ", "))
}

// expectKeysFor lists the expect keys that apply to action (all of them for "").
func expectKeysFor(action string) []string {
	var out []string
	for _, k := range ExpectKeys {
		if acts, ok := expectFor[k]; !ok || action == "" || slices.Contains(acts, action) {
			out = append(out, k)
		}
	}
	return out
}

// suggest returns the candidate closest to s, if it is close enough to be a typo.
func suggest(s string, candidates []string) string { return diag.Suggest(s, candidates) }
