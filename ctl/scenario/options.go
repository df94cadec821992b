package scenario

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sockagent/sockagent/agent/contract"
)

// Structured arguments are kept in Args under flat keys, so ${...} is expanded in them as in
// any other argument: options.KEY for each socket option, multicast.interface and
// multicast.groups.N for a bind's multicast, join.N and leave.N for setopt's groups.
const (
	// OptionsPrefix starts the key of each socket option in Args: "options.ttl".
	OptionsPrefix = "options."
	// MulticastInterface is the key of multicast's interface in Args.
	MulticastInterface = "multicast.interface"
	// MulticastGroupsPrefix starts the keys of multicast's groups in Args, by index.
	MulticastGroupsPrefix = "multicast.groups."
	// JoinPrefix and LeavePrefix start the keys of setopt's join and leave groups, by index.
	JoinPrefix  = "join."
	LeavePrefix = "leave."
)

// structured reads an argument that is a mapping or a list (options, multicast, join, leave)
// into args; false for any other key.
func (p *parser) structured(e entry, args Args) bool {
	switch e.Key {
	case "options":
		p.options(e, args)
	case "multicast":
		p.multicast(e, args)
	case "join", "leave":
		p.groups(e.Value, e.Key, e.Key+".", args)
	case "toxics":
		p.toxics(e, args)
	default:
		return false
	}
	return true
}

// options reads a map of socket options: each key one of contract.SocketOptions (with a
// "did you mean" for a typo), each value a scalar of the option's kind.
func (p *parser) options(e entry, args Args) {
	entries, ok := p.Mapping(e.Value, "options", "{ttl: 5, no_delay: true}")
	if !ok {
		return
	}
	known := contract.SocketOptions()
	for _, oe := range entries {
		if !slices.Contains(known, oe.Key) {
			p.unknown(oe, "options", known, strings.Join(known, ", "))
			continue
		}
		s, ok := p.scalarOf("option "+oe.Key, oe.Key, oe.Value)
		if !ok {
			continue
		}
		args[OptionsPrefix+oe.Key] = s
		if strings.Contains(s.Raw, "${") {
			continue
		}
		if err := CheckOptionValue(oe.Key, s.Raw); err != nil {
			p.add(s.Pos, "options: %v", err)
		}
	}
}

var kindWords = map[string]string{
	contract.OptionBool:     "true or false",
	contract.OptionUint:     "a whole number (0x.. for hex)",
	contract.OptionDuration: "a duration such as 10s",
}

// CheckOptionValue reports whether value is of the kind socket option key takes.
func CheckOptionValue(key, value string) error {
	var err error
	switch contract.OptionKind(key) {
	case contract.OptionBool:
		_, err = strconv.ParseBool(value)
	case contract.OptionUint:
		_, err = strconv.ParseUint(value, 0, 32)
	case contract.OptionDuration:
		_, err = time.ParseDuration(value)
	}
	if err != nil {
		return fmt.Errorf("%s takes %s, got %q", key, kindWords[contract.OptionKind(key)], value)
	}
	return nil
}

// multicast reads {groups: [...], interface: IFACE}.
func (p *parser) multicast(e entry, args Args) {
	entries, ok := p.Mapping(e.Value, "multicast", "{groups: [239.1.2.3], interface: eth0}")
	if !ok {
		return
	}
	keys := []string{"groups", "interface"}
	for _, me := range entries {
		switch me.Key {
		case "groups":
			p.groups(me.Value, "multicast groups", MulticastGroupsPrefix, args)
		case "interface":
			if s, ok := p.scalar("interface", me.Value); ok {
				args[MulticastInterface] = s
			}
		default:
			p.unknown(me, "multicast", keys, strings.Join(keys, ", "))
		}
	}
}

// groups reads a list of multicast groups (GROUP or GROUP%IFACE) into prefix.N keys.
func (p *parser) groups(n *yaml.Node, what, prefix string, args Args) {
	items, ok := p.sequence(n, what, "[239.1.2.3, ff15::1%eth0]")
	if !ok {
		return
	}
	for i, it := range items {
		if s, ok := p.scalarOf(what, what, it); ok {
			args[prefix+strconv.Itoa(i)] = s
		}
	}
}

// Indexed returns the values of the keys prefix.0, prefix.1, ... of r, in order.
func (r Resolved) Indexed(prefix string) []string {
	var out []string
	for i := 0; ; i++ {
		v, ok := r.Args[prefix+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v.Raw)
	}
}

// Options returns the socket options of r as KEY=VALUE pairs, in contract.SocketOptions'
// order.
func (r Resolved) Options() []string {
	var out []string
	for _, k := range contract.SocketOptions() {
		if v, ok := r.Args[OptionsPrefix+k]; ok {
			out = append(out, k+"="+v.Raw)
		}
	}
	return out
}
