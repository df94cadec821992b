package policy

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/sockagent/sockagent/agent/contract"
)

// ParseError is a mistake at a place in a policy file.
type ParseError struct {
	File      string
	Line, Col int // 1-based; 0 when unknown
	Msg       string
}

func (e *ParseError) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Col == 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Default returns the built-in policy (DefaultYAML), the policy of an agent without --policy.
func Default() *Policy {
	p, err := parse("DefaultYAML", []byte(DefaultYAML), nil)
	if err != nil {
		panic("policy: DefaultYAML does not parse: " + err.Error())
	}
	return p
}

// builtin is the parsed DefaultYAML that files inherit from; never modified.
var builtin = sync.OnceValue(Default)

// Parse parses a policy file; file names it in errors, which are *ParseError with a line and
// column. Sections the file leaves out are inherited as the package doc says.
func Parse(file string, data []byte) (*Policy, error) {
	return parse(file, data, builtin())
}

var yamlLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: line (\d+): (.*)$`) })

// parse parses data over base, the policy it inherits from (nil for DefaultYAML itself, which
// must then carry every section).
func parse(file string, data []byte, base *Policy) (*Policy, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		pe := &ParseError{File: file, Msg: err.Error()}
		if m := yamlLine().FindStringSubmatch(err.Error()); m != nil {
			pe.Line, _ = strconv.Atoi(m[1])
			pe.Msg = m[2]
		}
		return nil, pe
	}
	if len(doc.Content) == 0 {
		return nil, &ParseError{File: file, Msg: "the policy file is empty; write at least \"default: {}\" to use the built-in default"}
	}
	p := &parser{file: file}
	var (
		top   = &Policy{}
		def   *rawSet
		sets  []*rawSet
		agent Policy // agent_limits as given; 0 = inherited
	)
	err := p.mapping(doc.Content[0], "policy", map[string]func(*yaml.Node) error{
		"agent_limits": func(n *yaml.Node) error {
			return p.mapping(n, "agent_limits", map[string]func(*yaml.Node) error{
				"sockets": func(n *yaml.Node) (err error) { agent.MaxSockets, err = p.positive(n, "agent_limits.sockets"); return },
				"blocking_calls": func(n *yaml.Node) (err error) {
					agent.MaxBlockingCalls, err = p.positive(n, "agent_limits.blocking_calls")
					return
				},
				"buffered_bytes": func(n *yaml.Node) (err error) {
					agent.MaxBufferedBytes, err = p.positive(n, "agent_limits.buffered_bytes")
					return
				},
			})
		},
		"default": func(n *yaml.Node) (err error) { def, err = p.ruleSet(n, "default", true); return },
		"rule_sets": func(n *yaml.Node) error {
			items, err := p.sequence(n, "rule_sets")
			for i, it := range items {
				s, err := p.ruleSet(it, fmt.Sprintf("rule_sets[%d]", i), false)
				if err != nil {
					return err
				}
				sets = append(sets, s)
			}
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	if base == nil {
		base = &Policy{Default: &RuleSet{Name: "default"}}
	}
	top.MaxSockets = cmp.Or(agent.MaxSockets, base.MaxSockets)
	top.MaxBlockingCalls = cmp.Or(agent.MaxBlockingCalls, base.MaxBlockingCalls)
	top.MaxBufferedBytes = cmp.Or(agent.MaxBufferedBytes, base.MaxBufferedBytes)
	if def == nil {
		def = &rawSet{set: RuleSet{Name: "default"}, has: map[string]bool{}}
	}
	top.Default = def.inherit(base.Default)
	names := map[string]bool{"default": true}
	for _, s := range sets {
		if names[s.set.Name] {
			return nil, p.errf(s.node, "rule set name %q is used twice; names must be unique (\"default\" is taken)", s.set.Name)
		}
		names[s.set.Name] = true
		top.RuleSets = append(top.RuleSets, s.inherit(top.Default))
	}
	return top, nil
}

// rawSet is a rule set as written, with the sections it has.
type rawSet struct {
	node   *yaml.Node
	set    RuleSet
	has    map[string]bool
	limits [6]*int // sockets, bytes_per_call, blocking_calls, buffered_bytes, sessions, watches
	sess   [3]*int // session_limits: sockets, blocking_calls, buffered_bytes
	skip   *bool   // tls.insecure_skip_verify
}

func (r *rawSet) inherit(base *RuleSet) *RuleSet {
	s := r.set
	for key, v := range map[string][2]any{
		"networks":           {&s.Networks, base.Networks},
		"destinations.allow": {&s.Destinations.Allow, base.Destinations.Allow},
		"destinations.deny":  {&s.Destinations.Deny, base.Destinations.Deny},
		"local.allow":        {&s.Local.Allow, base.Local.Allow},
		"local.deny":         {&s.Local.Deny, base.Local.Deny},
		"unix_paths.allow":   {&s.UnixPaths.Allow, base.UnixPaths.Allow},
		"unix_paths.deny":    {&s.UnixPaths.Deny, base.UnixPaths.Deny},
		"socket_options":     {&s.SocketOptions, base.SocketOptions},
	} {
		if r.has[key] {
			continue
		}
		switch dst := v[0].(type) {
		case *[]string:
			*dst = v[1].([]string)
		case *[]AddrRule:
			*dst = v[1].([]AddrRule)
		}
	}
	if !r.has["events"] {
		s.EventsAll = base.EventsAll
	}
	s.Limits = base.Limits
	for i, dst := range []*int{&s.Limits.Sockets, &s.Limits.BytesPerCall, &s.Limits.BlockingCalls, &s.Limits.BufferedBytes, &s.Limits.Sessions, &s.Limits.Watches} {
		if v := r.limits[i]; v != nil {
			*dst = *v
		}
	}
	// DefaultYAML predates event watches: what no file gives comes from DefaultWatches.
	s.Limits.Watches = cmp.Or(s.Limits.Watches, DefaultWatches)
	s.SessionLimits = base.SessionLimits
	for i, dst := range []*int{&s.SessionLimits.Sockets, &s.SessionLimits.BlockingCalls, &s.SessionLimits.BufferedBytes} {
		if v := r.sess[i]; v != nil {
			*dst = *v
		}
	}
	s.TLS = base.TLS
	if r.skip != nil {
		s.TLS.InsecureSkipVerify = *r.skip
	}
	return &s
}

type parser struct{ file string }

func (p *parser) errf(n *yaml.Node, format string, args ...any) error {
	return &ParseError{File: p.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)}
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// mapping walks a mapping node, calling fields[key] for each key; unknown and repeated keys
// are errors.
func (p *parser) mapping(n *yaml.Node, what string, fields map[string]func(*yaml.Node) error) error {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		return p.errf(n, "%s: want a mapping (key: value lines), not %s", what, describe(n))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		f, ok := fields[k.Value]
		if !ok {
			known := make([]string, 0, len(fields))
			for name := range fields {
				known = append(known, name)
			}
			slices.Sort(known)
			return p.errf(k, "%s: unknown key %q; known keys: %s", what, k.Value, strings.Join(known, ", "))
		}
		if seen[k.Value] {
			return p.errf(k, "%s: key %q given twice", what, k.Value)
		}
		seen[k.Value] = true
		if err := f(v); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) sequence(n *yaml.Node, what string) ([]*yaml.Node, error) {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, "%s: want a list ([a, b] or \"- a\" lines), not %s", what, describe(n))
	}
	return n.Content, nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "this"
}

func (p *parser) str(n *yaml.Node, what string) (string, error) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", p.errf(n, "%s: want a string, not %s", what, describe(n))
	}
	return n.Value, nil
}

func (p *parser) strings(n *yaml.Node, what string, check func(*yaml.Node, string, string) (string, error)) ([]string, error) {
	items, err := p.sequence(n, what)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		w := fmt.Sprintf("%s[%d]", what, i)
		s, err := p.str(it, w)
		if err != nil {
			return nil, err
		}
		if check != nil {
			if s, err = check(it, w, s); err != nil {
				return nil, err
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// positives parses the mapping n, whose keys are among keys, of positive integers: the
// value of keys[i] goes to dst[i]; a key not given leaves its dst nil (inherited).
func (p *parser) positives(n *yaml.Node, what string, dst []*int, keys ...string) error {
	fields := make(map[string]func(*yaml.Node) error, len(keys))
	for i, key := range keys {
		fields[key] = func(n *yaml.Node) error {
			v, err := p.positive(n, what+"."+key)
			dst[i] = &v
			return err
		}
	}
	return p.mapping(n, what, fields)
}

func (p *parser) boolean(n *yaml.Node, what string) (bool, error) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		return false, p.errf(n, "%s: want true or false, not %s", what, describe(n))
	}
	return strings.EqualFold(n.Value, "true"), nil
}

func (p *parser) positive(n *yaml.Node, what string) (int, error) {
	n = deref(n)
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil || v <= 0 || v > math.MaxInt32 {
		return 0, p.errf(n, "%s: want a whole number from 1 to %d, not %s", what, math.MaxInt32, describe(n))
	}
	return int(v), nil
}

func (p *parser) ruleSet(n *yaml.Node, what string, isDefault bool) (*rawSet, error) {
	r := &rawSet{node: deref(n), has: map[string]bool{}}
	if isDefault {
		r.set.Name = "default"
	} else {
		r.set.Name = what
	}
	fields := map[string]func(*yaml.Node) error{
		"networks": func(n *yaml.Node) (err error) {
			r.has["networks"] = true
			known := contract.AllNetworks()
			r.set.Networks, err = p.strings(n, what+".networks", func(n *yaml.Node, w, s string) (string, error) {
				if !slices.Contains(known, s) {
					return "", p.errf(n, "%s: unknown network %q; use %s", w, s, strings.Join(known, ", "))
				}
				return s, nil
			})
			return err
		},
		"socket_options": func(n *yaml.Node) (err error) {
			r.has["socket_options"] = true
			guarded := contract.GuardedOptions()
			r.set.SocketOptions, err = p.strings(n, what+".socket_options", func(n *yaml.Node, w, s string) (string, error) {
				if !slices.Contains(guarded, s) {
					return "", p.errf(n, "%s: %q is not a policy-guarded socket option; list some of %s (every other option is always allowed)", w, s, strings.Join(guarded, ", "))
				}
				return s, nil
			})
			if err == nil && r.set.SocketOptions == nil {
				r.set.SocketOptions = []string{}
			}
			return err
		},
		"destinations": func(n *yaml.Node) (err error) {
			r.set.Destinations, err = p.addrRules(n, what, "destinations", r.has)
			return err
		},
		"local": func(n *yaml.Node) (err error) {
			r.set.Local, err = p.addrRules(n, what, "local", r.has)
			return err
		},
		"unix_paths": func(n *yaml.Node) error {
			w := what + ".unix_paths"
			return p.mapping(n, w, map[string]func(*yaml.Node) error{
				"allow": func(n *yaml.Node) (err error) {
					r.has["unix_paths.allow"] = true
					r.set.UnixPaths.Allow, err = p.strings(n, w+".allow", p.pathPrefix)
					return err
				},
				"deny": func(n *yaml.Node) (err error) {
					r.has["unix_paths.deny"] = true
					r.set.UnixPaths.Deny, err = p.strings(n, w+".deny", p.pathPrefix)
					return err
				},
			})
		},
		"limits": func(n *yaml.Node) error {
			return p.positives(n, what+".limits", r.limits[:], "sockets", "bytes_per_call", "blocking_calls", "buffered_bytes", "sessions", "watches")
		},
		"session_limits": func(n *yaml.Node) error {
			return p.positives(n, what+".session_limits", r.sess[:], "sockets", "blocking_calls", "buffered_bytes")
		},
		"events": func(n *yaml.Node) (err error) {
			r.has["events"] = true
			r.set.EventsAll, err = p.eventsScope(n, what+".events")
			return err
		},
		"tls": func(n *yaml.Node) error {
			return p.mapping(n, what+".tls", map[string]func(*yaml.Node) error{
				"insecure_skip_verify": func(n *yaml.Node) error {
					v, err := p.boolean(n, what+".tls.insecure_skip_verify")
					r.skip = &v
					return err
				},
			})
		},
	}
	if !isDefault {
		fields["name"] = func(n *yaml.Node) (err error) {
			r.set.Name, err = p.str(n, what+".name")
			if err == nil && r.set.Name == "" {
				err = p.errf(n, "%s.name: must not be empty", what)
			}
			return err
		}
		fields["callers"] = func(n *yaml.Node) (err error) {
			r.set.Callers, err = p.strings(n, what+".callers", func(n *yaml.Node, w, s string) (string, error) {
				c, err := compileCaller(s)
				if err != nil {
					return "", p.errf(n, "%s: %v", w, err)
				}
				r.set.callers = append(r.set.callers, c)
				return s, nil
			})
			if err == nil && len(r.set.Callers) == 0 {
				err = p.errf(n, "%s.callers: empty; a rule set applies to the callers it lists", what)
			}
			return err
		}
	}
	if err := p.mapping(n, what, fields); err != nil {
		return nil, err
	}
	if !isDefault && r.set.Callers == nil {
		return nil, p.errf(r.node, "%s: has no callers; list who it applies to, such as callers: [\"token:ci\"]", what)
	}
	return r, nil
}

func (p *parser) pathPrefix(n *yaml.Node, what, s string) (string, error) {
	switch {
	case strings.HasPrefix(s, "@"):
		return s, nil
	case s == TempDirPrefix || strings.HasPrefix(s, TempDirPrefix+"/"):
	case s == SocketDirPrefix || strings.HasPrefix(s, SocketDirPrefix+"/"):
	case !filepath.IsAbs(s) && !strings.HasPrefix(s, "/"): // "/tmp" must parse on Windows too
		return "", p.errf(n, "%s: %q is not an absolute path (nor an \"@\" abstract name, %s or %s)", what, s, SocketDirPrefix, TempDirPrefix)
	}
	if slices.Contains(strings.Split(s, "/"), "..") {
		return "", p.errf(n, "%s: %q contains \"..\"", what, s)
	}
	return filepath.Clean(s), nil
}

// addrRules parses a destinations or local section, marking in has the lists it gives.
func (p *parser) addrRules(n *yaml.Node, set, section string, has map[string]bool) (AddrRules, error) {
	var r AddrRules
	w := set + "." + section
	list := func(dst *[]AddrRule, kind string) func(*yaml.Node) error {
		return func(n *yaml.Node) error {
			has[section+"."+kind] = true
			*dst = []AddrRule{}
			items, err := p.sequence(n, w+"."+kind)
			for i, it := range items {
				rule, err := p.addrRule(it, fmt.Sprintf("%s.%s[%d]", section, kind, i), fmt.Sprintf("%s.%s[%d]", w, kind, i))
				if err != nil {
					return err
				}
				*dst = append(*dst, rule)
			}
			return err
		}
	}
	err := p.mapping(n, w, map[string]func(*yaml.Node) error{"allow": list(&r.Allow, "allow"), "deny": list(&r.Deny, "deny")})
	return r, err
}

func (p *parser) addrRule(n *yaml.Node, name, what string) (AddrRule, error) {
	r := AddrRule{Name: name}
	err := p.mapping(n, what, map[string]func(*yaml.Node) error{
		"name": func(n *yaml.Node) (err error) {
			r.Name, err = p.str(n, what+".name")
			if err == nil && r.Name == "" {
				err = p.errf(n, "%s.name: must not be empty", what)
			}
			return err
		},
		"cidrs": func(n *yaml.Node) error {
			items, err := p.sequence(n, what+".cidrs")
			for i, it := range items {
				w := fmt.Sprintf("%s.cidrs[%d]", what, i)
				s, err := p.str(it, w)
				if err != nil {
					return err
				}
				pfx, err := parsePrefix(s)
				if err != nil {
					return p.errf(it, "%s: %v", w, err)
				}
				r.Prefixes = append(r.Prefixes, pfx)
			}
			return err
		},
		"ports": func(n *yaml.Node) error {
			items, err := p.sequence(n, what+".ports")
			for i, it := range items {
				w := fmt.Sprintf("%s.ports[%d]", what, i)
				it = deref(it)
				pr, perr := parsePorts(it.Value)
				if it.Kind != yaml.ScalarNode || perr != nil {
					return p.errf(it, "%s: want a port (22) or a range (\"1024-65535\") of 0 to 65535, not %s", w, describe(it))
				}
				r.Ports = append(r.Ports, pr)
			}
			return err
		},
	})
	return r, err
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (10.0.0.0/8, fd00::/8) or an IP address", s)
		}
		if pfx.Masked() != pfx {
			return netip.Prefix{}, fmt.Errorf("%q has bits set past its /%d; did you mean %s?", s, pfx.Bits(), pfx.Masked())
		}
		if pfx.Addr().Is4In6() {
			return netip.PrefixFrom(pfx.Addr().Unmap(), max(pfx.Bits()-96, 0)).Masked(), nil
		}
		return pfx, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (10.0.0.0/8, fd00::/8) or an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

var errPorts = errors.New("bad port range")

func parsePorts(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	l, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil || l > h {
		return PortRange{}, errPorts
	}
	return PortRange{Lo: uint16(l), Hi: uint16(h)}, nil
}

// eventsScope parses a rule set's events: "own" (the default: a caller watches the events of
// its own sockets and sessions) or "all" (every caller's).
func (p *parser) eventsScope(n *yaml.Node, what string) (bool, error) {
	v, err := p.str(n, what)
	if err != nil {
		return false, err
	}
	switch v {
	case "own":
		return false, nil
	case "all":
		return true, nil
	}
	return false, p.errf(n, "%s: %q is no events scope; write own (its callers watch their own sockets) or all (every caller's)", what, v)
}
