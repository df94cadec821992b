package scenario

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Fields a ${NAME.field} reference may ask of an alias (a socket) and of an agent.
var (
	AliasFields = []string{"socket_id", "local_address", "local_port", "remote_address", "remote_port", "network"}
	AgentFields = []string{"host", "address"}
)

// Markers in statically evaluated values: the repeat index, and a part only known at run time.
const (
	markI       = "\x00"
	markDynamic = "\x01"
)

// show turns a statically evaluated value back into the form written in the file.
func show(s string) string {
	return strings.NewReplacer(markI, "${i}", markDynamic, "${...}").Replace(s)
}

// frame is a repeat block being checked (or checked already: done).
type frame struct {
	count int
	done  bool
}

// aliasDef is an alias a step creates with `as`. A name holding markI is a template: it
// stands for one alias per index of its repeat frame.
type aliasDef struct {
	name   string
	agent  string
	pos    Pos
	frame  *frame
	result string // "probe" or "throughput" when the alias names a step's results, not a socket
}

// fields are the fields ${ALIAS.field} may ask of d.
func (d aliasDef) fields() (string, []string) {
	switch d.result {
	case "probe":
		return "a probe step", ProbeFigures
	case "throughput":
		return "a throughput step", ThroughputFigures
	}
	return "a socket", AliasFields
}

func (d aliasDef) template() bool { return strings.Contains(d.name, markI) }

// matches reports whether d defines the concrete alias name.
func (d aliasDef) matches(name string) bool {
	if !d.template() {
		return d.name == name
	}
	count := 1 // ${i} outside a repeat: reported, and taken as 0
	if d.frame != nil {
		count = d.frame.count
	}
	return matchTemplate(d.name, name, count)
}

// matchTemplate reports whether s is template t with markI replaced by one index below count.
func matchTemplate(t, s string, count int) bool {
	prefix, _, _ := strings.Cut(t, markI)
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return false
	}
	digits := 0
	for digits < len(rest) && digits < 7 && rest[digits] >= '0' && rest[digits] <= '9' {
		digits++
	}
	for l := 1; l <= digits; l++ {
		if l > 1 && rest[0] == '0' {
			break
		}
		k, _ := strconv.Atoi(rest[:l])
		if k < count && instance(t, k) == s {
			return true
		}
	}
	return false
}

// instance is template t for index k.
func instance(t string, k int) string { return strings.ReplaceAll(t, markI, strconv.Itoa(k)) }

// conflicts reports whether two definitions can name the same alias.
func conflicts(a, b aliasDef) bool {
	switch {
	case !a.template():
		return b.matches(a.name)
	case !b.template():
		return a.matches(b.name)
	}
	return a.name == b.name
}

// scope is the aliases a step can see.
type scope struct {
	defs []aliasDef
}

func (s *scope) clone() *scope { return &scope{defs: slices.Clone(s.defs)} }

// checker checks what needs the order of the steps: references and aliases.
type checker struct {
	p      *parser
	frames []*frame
	all    []aliasDef // every alias of the file, for hints
	usedAt Pos        // the value being checked
}

func newChecker(p *parser) *checker {
	c := &checker{p: p}
	c.collect(p.file.Steps, nil)
	return c
}

// collect lists every alias of the file (hints for "used before it exists").
func (c *checker) collect(steps []*Step, f *frame) {
	for _, st := range steps {
		switch {
		case st.Parallel != nil:
			c.collect(st.Parallel, f)
		case st.Repeat != nil:
			c.collect(st.Repeat.Steps, &frame{count: st.Repeat.Count})
		case st.As != "":
			if parts, err := parseTemplate(st.As); err == nil {
				name := c.eval(parts, nil, Pos{}, "", true)
				c.all = append(c.all, aliasDef{name: name, agent: st.On, pos: c.p.meta[st].as, frame: f})
			}
		}
	}
}

func (c *checker) steps(steps []*Step, sc *scope) {
	for _, st := range steps {
		c.step(st, sc)
	}
}

func (c *checker) step(st *Step, sc *scope) {
	switch {
	case st.Parallel != nil:
		// Each step of a block sees the aliases from before the block only; after the
		// block, all of theirs.
		base := len(sc.defs)
		var added []aliasDef
		for _, child := range st.Parallel {
			csc := sc.clone()
			c.step(child, csc)
			for _, d := range csc.defs[base:] {
				if i := slices.IndexFunc(added, func(e aliasDef) bool { return conflicts(d, e) }); i >= 0 {
					c.p.add(d.pos, "alias %q is also defined at line %d, in the same parallel block; pick another name", show(d.name), added[i].pos.Line)
					continue
				}
				added = append(added, d)
			}
		}
		sc.defs = append(sc.defs, added...)
	case st.Repeat != nil:
		f := &frame{count: st.Repeat.Count}
		c.frames = append(c.frames, f)
		c.steps(st.Repeat.Steps, sc)
		c.frames = c.frames[:len(c.frames)-1]
		f.done = true
	default:
		c.action(st, sc)
	}
}

func (c *checker) action(st *Step, sc *scope) {
	for i, args := range []Args{st.Args, st.Expect} {
		for _, key := range sortedKeys(args) {
			v := args[key]
			parts, err := parseTemplate(v.Raw)
			if err != nil {
				c.p.add(v.Pos, "%s: %v", key, err)
				continue
			}
			c.usedAt = v.Pos
			val := c.eval(parts, sc, v.Pos, key, false)
			if i == 0 && key == "socket" {
				c.socket(st, sc, v, val)
			}
		}
	}
	if st.As == "" {
		return
	}
	m := c.p.meta[st]
	parts, err := parseTemplate(st.As)
	if err != nil {
		c.p.add(m.as, "as: %v", err)
		return
	}
	name := c.eval(parts, sc, m.as, "as", false)
	d := aliasDef{name: name, agent: st.On, pos: m.as, frame: c.frame()}
	if spec, _ := Action(st.Action); spec.Results {
		d.result = st.Action
	}
	c.define(sc, d)
}

func sortedKeys(a Args) []string {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (c *checker) frame() *frame {
	if len(c.frames) == 0 {
		return nil
	}
	return c.frames[len(c.frames)-1]
}

// eval evaluates a value as far as it is known before the run, reporting bad references
// (unless quiet): ${vars.X} is replaced, ${i} becomes markI, anything else markDynamic.
func (c *checker) eval(parts []part, sc *scope, at Pos, key string, quiet bool) string {
	var b strings.Builder
	for _, p := range parts {
		if !p.isRef {
			b.WriteString(p.lit)
			continue
		}
		ref := c.eval(p.ref, sc, at, key, quiet)
		v, msg := c.ref(ref, sc, quiet)
		if msg != "" && !quiet {
			c.p.add(at, "%s: %s", key, msg)
		}
		b.WriteString(v)
	}
	return b.String()
}

// ref evaluates one reference: its static value and what is wrong with it.
func (c *checker) ref(ref string, sc *scope, quiet bool) (string, string) {
	shown := "${" + show(ref) + "}"
	switch {
	case strings.Contains(ref, markDynamic):
		return markDynamic, ""
	case ref == "":
		return markDynamic, `empty "${}": write ${ALIAS.field}, ${AGENT.host}, ${vars.NAME}, ${env.NAME} or ${i}`
	case ref == "i":
		if len(c.frames) == 0 && !quiet {
			return markI, "${i} is only defined inside a repeat block"
		}
		return markI, ""
	}
	name, field, dotted := strings.Cut(ref, ".")
	if !dotted {
		if c.p.agents[name] || (sc != nil && c.find(sc, name) != nil) {
			return markDynamic, fmt.Sprintf("%s: say which field, e.g. ${%s.%s}", shown, show(name), map[bool]string{true: "host", false: "socket_id"}[c.p.agents[name]])
		}
		return markDynamic, fmt.Sprintf("%s: write ${ALIAS.field}, ${AGENT.host}, ${vars.NAME}, ${env.NAME} or ${i}", shown)
	}
	switch {
	case name == "vars":
		if v, ok := c.p.file.Vars[field]; ok {
			return v, ""
		}
		return markDynamic, c.unknownVar(shown, field)
	case name == "env":
		if field == "" {
			return markDynamic, shown + ": name the environment variable, e.g. ${env.HOME}"
		}
		return markDynamic, ""
	case c.p.agents[name]:
		return markDynamic, fieldProblem(shown, "an agent", field, AgentFields)
	}
	if sc == nil {
		return markDynamic, ""
	}
	if slices.Contains(AgentFields, field) && !strings.Contains(name, markI) && c.find(sc, name) == nil {
		return markDynamic, c.unknownAgent(shown, name)
	}
	d, msg := c.lookup(sc, name)
	if msg != "" {
		return markDynamic, shown + ": " + msg
	}
	what, fields := "a socket", AliasFields
	if d != nil {
		what, fields = d.fields()
	}
	return markDynamic, fieldProblem(shown, what, field, fields)
}

func (c *checker) unknownAgent(shown, name string) string {
	names := make([]string, len(c.p.file.Agents))
	for i, a := range c.p.file.Agents {
		names[i] = a.Name
	}
	msg := fmt.Sprintf("%s: no agent is named %q", shown, name)
	if s := suggest(name, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return msg + " (agents: " + strings.Join(names, ", ") + ")"
}

func (c *checker) unknownVar(shown, name string) string {
	if len(c.p.file.Vars) == 0 {
		return fmt.Sprintf("%s: no var %q; declare it under vars (there are none)", shown, name)
	}
	names := make([]string, 0, len(c.p.file.Vars))
	for k := range c.p.file.Vars {
		names = append(names, k)
	}
	slices.Sort(names)
	msg := fmt.Sprintf("%s: no var %q", shown, name)
	if s := suggest(name, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return msg + " (vars: " + strings.Join(names, ", ") + ")"
}

func fieldProblem(shown, what, field string, fields []string) string {
	if slices.Contains(fields, field) {
		return ""
	}
	msg := fmt.Sprintf("%s: %s has no field %q", shown, what, field)
	if s := suggest(field, fields); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return msg + " (fields: " + strings.Join(fields, ", ") + ")"
}

// find returns the definition of a concrete alias name visible in sc.
func (c *checker) find(sc *scope, name string) *aliasDef {
	for i := len(sc.defs) - 1; i >= 0; i-- {
		if sc.defs[i].matches(name) {
			return &sc.defs[i]
		}
	}
	return nil
}

// lookup finds the definition of an alias name (which may be a template) visible in sc.
func (c *checker) lookup(sc *scope, name string) (*aliasDef, string) {
	if !strings.Contains(name, markI) {
		if d := c.find(sc, name); d != nil {
			return d, ""
		}
		return nil, c.unknownAlias(sc, name)
	}
	cur := c.frame()
	if cur == nil {
		return nil, "" // ${i} outside a repeat: reported already
	}
	for i := len(sc.defs) - 1; i >= 0; i-- {
		d := &sc.defs[i]
		if d.name != name {
			continue
		}
		if d.frame == nil || !d.frame.done || cur.count <= d.frame.count {
			return d, ""
		}
		return nil, fmt.Sprintf("alias %q exists for ${i} from 0 to %d (line %d), but this repeat counts to %d",
			show(name), d.frame.count-1, d.pos.Line, cur.count)
	}
	var first *aliasDef
	for k := range cur.count {
		d := c.find(sc, instance(name, k))
		if d == nil {
			if k == 0 {
				return nil, c.unknownAlias(sc, name)
			}
			return nil, fmt.Sprintf("alias %q exists for ${i} below %d, but this repeat counts to %d", show(name), k, cur.count)
		}
		if first == nil {
			first = d
		}
	}
	return first, ""
}

// unknownAlias explains an alias that is not visible: created later, in a parallel block
// running alongside, by a repeat for other indexes, or not at all.
func (c *checker) unknownAlias(sc *scope, name string) string {
	shown := show(name)
	at := c.usedAt
	for _, d := range c.all {
		if d.name != name && !(d.frame != nil && !strings.Contains(name, markI) && d.matches(name)) {
			continue
		}
		if slices.ContainsFunc(sc.defs, func(e aliasDef) bool { return e.pos == d.pos }) {
			continue
		}
		if d.pos.Line > at.Line || d.pos.Line == at.Line && d.pos.Col > at.Col {
			return fmt.Sprintf("alias %q is created by a later step (line %d); a step can only use a socket created before it", shown, d.pos.Line)
		}
		return fmt.Sprintf("alias %q is created at line %d by a step running in parallel with this one; use it after the parallel block", shown, d.pos.Line)
	}
	if !strings.Contains(name, markI) {
		for _, d := range sc.defs {
			if d.template() && matchTemplate(d.name, name, 1<<30) {
				n := 1
				if d.frame != nil {
					n = d.frame.count
				}
				return fmt.Sprintf("no socket is named %q: %q (line %d) makes %s to %s only", shown, show(d.name), d.pos.Line, instance(d.name, 0), instance(d.name, n-1))
			}
		}
	}
	var names []string
	for _, d := range sc.defs {
		names = append(names, show(d.name))
	}
	msg := fmt.Sprintf("no socket is named %q; name one with as: on the step that creates it", shown)
	if s := suggest(shown, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return msg
}

// socket checks the socket argument: it must name an alias created before, on the same agent.
func (c *checker) socket(st *Step, sc *scope, v Scalar, val string) {
	if strings.Contains(val, markDynamic) {
		return
	}
	d, msg := c.lookup(sc, val)
	if msg != "" {
		if name, _, ok := strings.Cut(val, "."); ok && c.find(sc, name) != nil {
			msg += fmt.Sprintf("; socket takes the alias itself: socket: %s", show(name))
		}
		c.p.add(v.Pos, "socket: %s", msg)
		return
	}
	if d != nil && d.result != "" {
		c.p.add(v.Pos, "socket: %q names the results of a %s step (line %d), not a socket", show(val), d.result, d.pos.Line)
		return
	}
	if d != nil && st.OnAll != nil {
		c.p.add(v.Pos, "socket: %q lives on agent %s (line %d), but this step runs on every agent %s picks; a fanned-out step opens what it uses (probe, dial) or takes ${...} values", show(val), d.agent, d.pos.Line, st.OnAll)
		return
	}
	if d != nil && c.p.agents[st.On] && c.p.agents[d.agent] && d.agent != st.On {
		c.p.add(v.Pos, "socket: %q was created on agent %s (line %d); this step runs on %s", show(val), d.agent, d.pos.Line, st.On)
	}
}

// define adds an alias to sc, reporting bad and duplicate names.
func (c *checker) define(sc *scope, d aliasDef) {
	switch {
	case strings.Contains(d.name, markDynamic):
		c.p.add(d.pos, "as: an alias may use ${i} and ${vars.NAME} only: it must be known before the run")
		return
	case !identRE().MatchString(instance(d.name, 0)):
		c.p.add(d.pos, "as: %q is not a valid alias: a letter or _ followed by letters, digits, _ or -", show(d.name))
		return
	case socketIDRE().MatchString(instance(d.name, 0)) || socketIDRE().MatchString(instance(d.name, 1)):
		c.p.add(d.pos, "as: %q looks like a socket id (s3fa9c1-1, s1, ...): if its step failed, a later step naming it would act on the agent's socket of that id; pick a name such as lis, conn or cli", show(d.name))
		return
	}
	for _, a := range c.p.file.Agents {
		if d.matches(a.Name) {
			c.p.add(d.pos, "as: %q is the name of an agent (line %d); pick another alias", a.Name, a.Pos.Line)
			return
		}
	}
	for _, r := range reserved {
		if d.matches(r) {
			c.p.add(d.pos, "as: %q cannot be an alias: ${%s...} means something else; pick another name", r, r)
			return
		}
	}
	for _, e := range sc.defs {
		if conflicts(d, e) {
			c.p.add(d.pos, "alias %q is already defined at line %d; pick another name", show(d.name), e.pos.Line)
			return
		}
	}
	sc.defs = append(sc.defs, d)
}
