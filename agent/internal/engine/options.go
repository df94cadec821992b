package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/unixpath"
	"github.com/sockagent/sockagent/agent/policy"
)

// Keepalive configures TCP keepalive; a nil field is left as it is.
type Keepalive struct {
	Enabled        *bool
	Idle, Interval *time.Duration
	Count          *uint32
}

// Options are socket options; a nil field is left as the kernel (or Go) has it. Read back
// (Info.Options), every option of the socket's kind is set.
type Options struct {
	NoDelay                 *bool
	Keepalive               *Keepalive
	RecvBuffer, SendBuffer  *uint32
	Linger                  *time.Duration // negative: off; 0: reset on close
	TTL, TOS                *uint32
	ReuseAddress, ReusePort *bool
	BindToDevice            *string
	MaxSegment              *uint32
	Congestion              *string
	DontFragment, Broadcast *bool
	MulticastTTL            *uint32
	MulticastLoop           *bool
}

// Multicast is what Bind joins once bound (MulticastOptions).
type Multicast struct {
	Groups    []string // GROUP or GROUP%IFACE
	Interface string   // for joins without their own, and for sending
	Sources   []SourceGroup
}

// SourceGroup is one source-specific membership.
type SourceGroup struct{ Group, Source string }

// Limits of option values, as the kernel takes them.
const (
	maxSockBuffer   = 256 << 20
	maxLinger       = time.Hour
	maxKeepaliveSec = 32767 // TCP_KEEPIDLE and TCP_KEEPINTVL take at most this many seconds
	maxKeepaliveCnt = 127
	minMSS          = 88 // TCP_MIN_MSS
	maxGroups       = 20 // net.ipv4.igmp_max_memberships' default
	maxCongestion   = 15 // TCP_CA_NAME_MAX less its NUL
)

// scope is the sockets an option applies to.
type scope int

const (
	scopeAny scope = iota // every socket, UNIX included
	scopeIP               // TCP and UDP
	scopeTCP
	scopeUDP
)

func (sc scope) String() string {
	return [...]string{"any socket", "TCP and UDP sockets", "TCP sockets", "UDP sockets"}[sc]
}

func (sc scope) covers(network string) bool {
	switch sc {
	case scopeIP:
		return !contract.IsUnix(network)
	case scopeTCP:
		return strings.HasPrefix(network, "tcp")
	case scopeUDP:
		return contract.IsUDP(network)
	}
	return true
}

// optSpec describes one option: where it applies, whether it was given, and its range.
type optSpec struct {
	name       string
	scope      scope
	beforeBind bool // only before the socket binds (Listen, Bind, Dial)
	afterDial  bool // applied once connected: Go sets it on every connection it makes
	perFamily  bool // its IPv4 and IPv6 forms differ
	given      func(*Options) bool
	check      func(*Options) error
}

func inRange(name string, v *uint32, lo, hi uint32, hint string) error {
	if *v < lo || *v > hi {
		return optErr(name, contract.ReasonInvalidArgument, "%s %d out of range: give %d to %d%s", name, *v, lo, hi, hint)
	}
	return nil
}

func wholeSeconds(name string, d time.Duration, lo, hi time.Duration) error {
	if d < lo || d > hi || d%time.Second != 0 {
		return optErr(name, contract.ReasonInvalidArgument, "%s %s: give whole seconds from %s to %s (the kernel counts in seconds)", name, d, lo, hi)
	}
	return nil
}

// specs lists every option in the order they are applied.
var specs = []optSpec{
	{name: contract.OptReuseAddress, scope: scopeIP, beforeBind: true, given: func(o *Options) bool { return o.ReuseAddress != nil }},
	{name: contract.OptReusePort, scope: scopeIP, beforeBind: true, given: func(o *Options) bool { return o.ReusePort != nil }},
	{name: contract.OptBindToDevice, scope: scopeIP, given: func(o *Options) bool { return o.BindToDevice != nil }, check: func(o *Options) error {
		if *o.BindToDevice == "" {
			return nil
		}
		if _, err := net.InterfaceByName(*o.BindToDevice); err != nil || len(*o.BindToDevice) > 15 {
			return optErr(contract.OptBindToDevice, contract.ReasonInvalidArgument, "bind_to_device %q: no such interface on the agent's host; GetInfo lists them", *o.BindToDevice)
		}
		return nil
	}},
	{name: contract.OptRecvBuffer, scope: scopeAny, given: func(o *Options) bool { return o.RecvBuffer != nil }, check: func(o *Options) error {
		return inRange(contract.OptRecvBuffer, o.RecvBuffer, 1, maxSockBuffer, " bytes (the kernel caps it at net.core.rmem_max)")
	}},
	{name: contract.OptSendBuffer, scope: scopeAny, given: func(o *Options) bool { return o.SendBuffer != nil }, check: func(o *Options) error {
		return inRange(contract.OptSendBuffer, o.SendBuffer, 1, maxSockBuffer, " bytes (the kernel caps it at net.core.wmem_max)")
	}},
	{name: contract.OptTTL, perFamily: true, scope: scopeIP, given: func(o *Options) bool { return o.TTL != nil }, check: func(o *Options) error {
		return inRange(contract.OptTTL, o.TTL, 1, 255, "")
	}},
	{name: contract.OptTOS, perFamily: true, scope: scopeIP, given: func(o *Options) bool { return o.TOS != nil }, check: func(o *Options) error {
		return inRange(contract.OptTOS, o.TOS, 0, 255, " (the whole byte: DSCP<<2 | ECN)")
	}},
	{name: contract.OptDontFragment, perFamily: true, scope: scopeIP, given: func(o *Options) bool { return o.DontFragment != nil }},
	{name: contract.OptLinger, scope: scopeTCP, given: func(o *Options) bool { return o.Linger != nil }, check: func(o *Options) error {
		if *o.Linger < 0 {
			return nil
		}
		return wholeSeconds(contract.OptLinger, *o.Linger, 0, maxLinger)
	}},
	{name: contract.OptMaxSegment, scope: scopeTCP, given: func(o *Options) bool { return o.MaxSegment != nil }, check: func(o *Options) error {
		return inRange(contract.OptMaxSegment, o.MaxSegment, minMSS, 65535, "")
	}},
	{name: contract.OptCongestion, scope: scopeTCP, given: func(o *Options) bool { return o.Congestion != nil }, check: func(o *Options) error {
		return checkCongestion(*o.Congestion)
	}},
	{name: contract.OptNoDelay, scope: scopeTCP, afterDial: true, given: func(o *Options) bool { return o.NoDelay != nil }},
	{name: contract.OptKeepalive, scope: scopeTCP, afterDial: true, given: func(o *Options) bool { return o.Keepalive != nil }, check: checkKeepalive},
	{name: contract.OptBroadcast, scope: scopeUDP, given: func(o *Options) bool { return o.Broadcast != nil }},
	{name: contract.OptMulticastTTL, perFamily: true, scope: scopeUDP, given: func(o *Options) bool { return o.MulticastTTL != nil }, check: func(o *Options) error {
		return inRange(contract.OptMulticastTTL, o.MulticastTTL, 0, 255, "")
	}},
	{name: contract.OptMulticastLoop, perFamily: true, scope: scopeUDP, given: func(o *Options) bool { return o.MulticastLoop != nil }},
}

func checkKeepalive(o *Options) error {
	k := o.Keepalive
	for _, d := range []struct {
		name string
		v    *time.Duration
	}{{contract.OptKeepaliveIdle, k.Idle}, {contract.OptKeepaliveInterval, k.Interval}} {
		if d.v != nil {
			if err := wholeSeconds(d.name, *d.v, time.Second, maxKeepaliveSec*time.Second); err != nil {
				return err
			}
		}
	}
	if k.Count != nil {
		return inRange(contract.OptKeepaliveCount, k.Count, 1, maxKeepaliveCnt, "")
	}
	return nil
}

// checkCongestion accepts only an algorithm the kernel has loaded: asked for another, a
// root agent's kernel would load a module by that name.
func checkCongestion(name string) error {
	avail := congestionAvailable()
	if len(name) > maxCongestion || !slices.Contains(avail, name) {
		return optErr(contract.OptCongestion, contract.ReasonInvalidArgument, "congestion %q: not an algorithm the kernel has loaded; use one of %s", name, strings.Join(avail, ", "))
	}
	return nil
}

// optionError is a socket option the agent refused or the kernel did not take, naming it.
type optionError struct {
	option string
	reason string // "" when the wrapped error decides it
	msg    string
	err    error
}

func (e *optionError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("socket option %s: %v", e.option, e.err)
	}
	return e.msg
}

func (e *optionError) Unwrap() error { return e.err }

func optErr(option, reason, format string, args ...any) error {
	return &optionError{option: option, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// kernelOptErr names the option the kernel refused; an option the kernel does not have is
// UNSUPPORTED_OPTION, an out-of-range value INVALID_ARGUMENT, else the errno's own reason.
func kernelOptErr(option string, err error) error {
	oe := &optionError{option: option, err: err}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch {
		case isUnsupportedErrno(errno):
			oe.reason = contract.ReasonUnsupportedOption
		case errno == syscall.EINVAL:
			oe.reason = contract.ReasonInvalidArgument
		}
	}
	return oe
}

// unsupported says the platform or the socket's kind lacks an option.
func unsupported(option, why string) error {
	return optErr(option, contract.ReasonUnsupportedOption, "socket option %s is not supported %s", option, why)
}

// opening says whether options are checked for a socket being opened (all options) or an
// open one (SetOptions: not those that only work before the bind).
type opening bool

// checkOptions validates o for a socket of network: kind, platform, policy, then the value
// (so a caller the policy refuses learns nothing of the host's interfaces).
func checkOptions(o *Options, set *policy.RuleSet, network string, open opening) error {
	if o == nil {
		return nil
	}
	for i := range specs {
		sp := &specs[i]
		if !sp.given(o) {
			continue
		}
		switch {
		case !sp.scope.covers(network):
			return unsupported(sp.name, fmt.Sprintf("on a %s socket: it applies to %s", network, sp.scope))
		case sp.beforeBind && !bool(open):
			return unsupported(sp.name, "on an open socket: it works only before the socket binds; give it to Listen, Bind or Dial")
		case !platformHas(sp.name):
			return unsupported(sp.name, "on this platform")
		}
		if err := set.CheckOption(sp.name); err != nil {
			return err
		}
		if sp.check != nil {
			if err := sp.check(o); err != nil {
				return err
			}
		}
	}
	return nil
}

// split returns the options to apply before connecting and those to apply once connected
// (afterDial), for Dial; either may be nil. no_delay true is left out of after: Go sets
// TCP_NODELAY on every TCP connection it makes (and a UNIX or UDP Dial was refused no_delay
// by checkOptions), so setting it again would cost a system call and change nothing.
func (o *Options) split() (before, after *Options) {
	if o == nil {
		return nil, nil
	}
	b, a := *o, Options{NoDelay: o.NoDelay, Keepalive: o.Keepalive}
	b.NoDelay, b.Keepalive = nil, nil
	if a.NoDelay != nil && *a.NoDelay {
		a.NoDelay = nil
	}
	return &b, &a
}

// keepaliveConfig is keepalive k as Go's Dialer applies it while it makes the connection (in
// place of its own default), when k turns keepalive on: a nil field becomes -1, which leaves
// the kernel's value, as applyOptions would. ok is false when k does not turn it on: Go's
// config cannot then say "leave it off and set the idle time".
func (k *Keepalive) keepaliveConfig() (cfg net.KeepAliveConfig, ok bool) {
	if k == nil || k.Enabled == nil || !*k.Enabled {
		return cfg, false
	}
	cfg = net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
	if k.Idle != nil {
		cfg.Idle = *k.Idle
	}
	if k.Interval != nil {
		cfg.Interval = *k.Interval
	}
	if k.Count != nil {
		cfg.Count = int(*k.Count)
	}
	return cfg, true
}

// applyOptions sets every given option on the socket behind rc, in specs' order; fam is the
// socket's address family when the caller knows it, else -1.
func applyOptions(rc syscall.RawConn, o *Options, fam int) error {
	if o == nil {
		return nil
	}
	var err error
	cerr := rc.Control(func(fd uintptr) {
		// fam is read once when unknown, and only for an option whose form depends on it.
		for i := range specs {
			if specs[i].given(o) {
				if fam < 0 && specs[i].perFamily {
					fam = sockFamily(int(fd))
				}
				if err = setOption(int(fd), fam, specs[i].name, o); err != nil {
					err = kernelOptErr(specs[i].name, err)
					return
				}
			}
		}
	})
	return cmpErr(err, cerr)
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// withOptions runs ctl (the policy's Control hook), then sets o on the new socket, before it
// binds or connects.
func withOptions(ctl func(string, string, syscall.RawConn) error, o *Options) func(string, string, syscall.RawConn) error {
	if o == nil {
		return ctl
	}
	return func(network, address string, rc syscall.RawConn) error {
		if err := ctl(network, address, rc); err != nil {
			return err
		}
		return applyOptions(rc, o, familyOf(network))
	}
}

// rawConn returns the syscall.RawConn of a socket's file, or nil.
func (s *sock) rawConn() syscall.RawConn {
	var v any
	switch {
	case s.ln != nil:
		v = s.ln
	case s.conn != nil:
		v = s.conn
	case s.pc != nil:
		v = s.pc
	}
	sc, ok := v.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// effective reads back the options of s's kind as the kernel reports them.
func (s *sock) effective() *Options {
	rc := s.rawConn()
	if rc == nil {
		return nil
	}
	out := &Options{}
	if err := rc.Control(func(fd uintptr) {
		fam := sockFamily(int(fd))
		for i := range specs {
			if specs[i].scope.covers(s.network) && platformHas(specs[i].name) {
				readOption(int(fd), fam, specs[i].name, out)
			}
		}
	}); err != nil {
		return nil
	}
	return out
}

// detailed is s.info() with the effective options: a system call per option, so only
// GetSocket and SetOptions read them.
func (s *sock) detailed() Info {
	in := s.info()
	in.Options = s.effective()
	return in
}

// SetOptions changes options of an open socket and joins and leaves multicast groups, in that
// order; it returns the socket with its effective options.
func (t *Table) SetOptions(ctx context.Context, id string, o *Options, join, leave []string) (Info, error) {
	s, err := t.get(ctx, id)
	wrap := func(err error) error {
		return &OpError{Op: "setoptions", SocketID: id, Network: networkOf(s), Address: addressOf(s), Err: err}
	}
	if err != nil {
		return Info{}, wrap(err)
	}
	_, set := t.who(ctx)
	if err := checkOptions(o, set, s.network, false); err != nil {
		return Info{}, wrap(err)
	}
	rc := s.rawConn()
	if rc == nil {
		return Info{}, wrap(&kindError{"socket has no file descriptor to set options on"})
	}
	if err := applyOptions(rc, o, -1); err != nil {
		return Info{}, wrap(err)
	}
	for _, g := range join {
		if err := s.join(set, g, "", ""); err != nil {
			return Info{}, wrap(err)
		}
	}
	for _, g := range leave {
		if err := s.leave(g); err != nil {
			return Info{}, wrap(err)
		}
	}
	return s.detailed(), nil
}

// membership is one multicast group a socket joined.
type membership struct {
	group, source netip.Addr
	iface         string
	ifi           *net.Interface // nil: the kernel chooses
}

func (m membership) String() string {
	s := m.group.String()
	if m.iface != "" {
		s += "%" + m.iface
	}
	if m.source.IsValid() {
		s = m.source.String() + "@" + s
	}
	return s
}

// parseGroup reads GROUP, GROUP%IFACE or, with source, SOURCE@GROUP[%IFACE]: a multicast
// address of the socket's family, and an interface that exists (defIface when none is named).
func parseGroup(spec, defIface string, v6 bool) (membership, error) {
	var m membership
	rest := spec
	if src, g, ok := strings.Cut(spec, "@"); ok {
		a, err := netip.ParseAddr(src)
		if err != nil || a.Zone() != "" {
			return m, badArg(contract.ReasonInvalidAddress, "multicast source %q in %q: not an IP address", src, spec)
		}
		m.source, rest = a.Unmap(), g
	}
	g, iface, _ := strings.Cut(rest, "%")
	a, err := netip.ParseAddr(g)
	if err != nil || !a.Unmap().IsMulticast() {
		return m, badArg(contract.ReasonInvalidAddress, "multicast group %q: not a multicast address (224.0.0.0/4, ff00::/8); give GROUP or GROUP%%IFACE", spec)
	}
	m.group = a.Unmap()
	if m.group.Is6() != v6 || (m.source.IsValid() && m.source.Is6() != v6) {
		return m, badArg(contract.ReasonInvalidAddress, "multicast group %q: not of the socket's address family", spec)
	}
	m.iface = iface
	if m.iface == "" {
		m.iface = defIface
	}
	if m.iface != "" {
		ifi, err := net.InterfaceByName(m.iface)
		if err != nil {
			return m, badArg(contract.ReasonInvalidArgument, "multicast group %q: no interface %q on the agent's host; GetInfo lists them", spec, m.iface)
		}
		m.ifi = ifi
	}
	return m, nil
}

// join makes a bound UDP socket a member of a group (spec as parseGroup), after the policy
// allowed the group as a destination on the socket's port.
func (s *sock) join(set *policy.RuleSet, spec, defIface, source string) error {
	if s.pc == nil || !contract.IsUDP(s.network) {
		return &kindError{fmt.Sprintf("socket is a %s %s socket; joining a multicast group needs a UDP socket from Bind", s.network, s.kind)}
	}
	if source != "" {
		spec = source + "@" + spec
	}
	local, _ := addrPort(s.pc.LocalAddr())
	m, err := parseGroup(spec, defIface, local.Addr().Is6() && !local.Addr().Is4In6())
	if err != nil {
		return err
	}
	if err := set.CheckDestination(netip.AddrPortFrom(m.group, local.Port())); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.groups) >= maxGroups {
		return badArg(contract.ReasonInvalidArgument, "join %s: the socket is in %d groups already, the most it may join", spec, maxGroups)
	}
	for _, have := range s.groups {
		if have.String() == m.String() {
			return badArg(contract.ReasonInvalidArgument, "join %s: the socket is a member already", spec)
		}
	}
	if err := membershipOp(s.pc, m, true); err != nil {
		return fmt.Errorf("join %s: %w", spec, err)
	}
	s.groups = append(s.groups, m)
	return nil
}

// leave drops a membership join made, named as GetSocket shows it.
func (s *sock) leave(spec string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.groups, func(m membership) bool { return m.String() == spec })
	if i < 0 {
		var have []string
		for _, m := range s.groups {
			have = append(have, m.String())
		}
		return badArg(contract.ReasonInvalidArgument, "leave %s: the socket is not a member; its groups: [%s]", spec, strings.Join(have, ", "))
	}
	if err := membershipOp(s.pc, s.groups[i], false); err != nil {
		return fmt.Errorf("leave %s: %w", spec, err)
	}
	s.groups = slices.Delete(s.groups, i, i+1)
	return nil
}

// joinAll joins what Bind was asked to, and sets the interface for sending to multicast.
func (s *sock) joinAll(set *policy.RuleSet, mc *Multicast) error {
	if mc == nil {
		return nil
	}
	if s.pc == nil || !contract.IsUDP(s.network) {
		return &kindError{fmt.Sprintf("socket is a %s socket; multicast needs a UDP socket", s.network)}
	}
	if len(mc.Groups)+len(mc.Sources) > maxGroups {
		return badArg(contract.ReasonInvalidArgument, "multicast: %d groups asked for; a socket may join at most %d", len(mc.Groups)+len(mc.Sources), maxGroups)
	}
	if mc.Interface != "" {
		ifi, err := net.InterfaceByName(mc.Interface)
		if err != nil {
			return badArg(contract.ReasonInvalidArgument, "multicast interface %q: no such interface on the agent's host; GetInfo lists them", mc.Interface)
		}
		if err := setMulticastIf(s.pc, ifi); err != nil {
			return kernelOptErr("multicast.interface", err)
		}
	}
	for _, g := range mc.Groups {
		if err := s.join(set, g, mc.Interface, ""); err != nil {
			return err
		}
	}
	for _, sg := range mc.Sources {
		if err := s.join(set, sg.Group, mc.Interface, sg.Source); err != nil {
			return err
		}
	}
	return nil
}

// membershipOp joins (or leaves) m on pc, through golang.org/x/net, which knows each
// platform's membership requests.
func membershipOp(pc net.PacketConn, m membership, join bool) error {
	grp := &net.UDPAddr{IP: m.group.AsSlice()}
	if m.group.Is4() {
		p := ipv4.NewPacketConn(pc)
		switch {
		case m.source.IsValid() && join:
			return p.JoinSourceSpecificGroup(m.ifi, grp, &net.UDPAddr{IP: m.source.AsSlice()})
		case m.source.IsValid():
			return p.LeaveSourceSpecificGroup(m.ifi, grp, &net.UDPAddr{IP: m.source.AsSlice()})
		case join:
			return p.JoinGroup(m.ifi, grp)
		}
		return p.LeaveGroup(m.ifi, grp)
	}
	p := ipv6.NewPacketConn(pc)
	switch {
	case m.source.IsValid() && join:
		return p.JoinSourceSpecificGroup(m.ifi, grp, &net.UDPAddr{IP: m.source.AsSlice()})
	case m.source.IsValid():
		return p.LeaveSourceSpecificGroup(m.ifi, grp, &net.UDPAddr{IP: m.source.AsSlice()})
	case join:
		return p.JoinGroup(m.ifi, grp)
	}
	return p.LeaveGroup(m.ifi, grp)
}

// setMulticastIf makes pc send multicast datagrams through ifi.
func setMulticastIf(pc net.PacketConn, ifi *net.Interface) error {
	if a, ok := addrPort(pc.LocalAddr()); ok && a.Addr().Is6() && !a.Addr().Is4In6() {
		return ipv6.NewPacketConn(pc).SetMulticastInterface(ifi)
	}
	return ipv4.NewPacketConn(pc).SetMulticastInterface(ifi)
}

// afterDial sets the options Go would overwrite once connected (no_delay, keepalive) on a
// new connection; on failure it closes the connection (and removes the file ub bound).
func afterDial(conn net.Conn, o *Options, ub *unixpath.Bound) error {
	if o == nil || (o.NoDelay == nil && o.Keepalive == nil) {
		return nil
	}
	sc, ok := conn.(syscall.Conn)
	var err error
	if ok {
		var rc syscall.RawConn
		if rc, err = sc.SyscallConn(); err == nil {
			err = applyOptions(rc, o, -1)
		}
	}
	if err != nil {
		_ = conn.Close()
		_, _ = ub.Close()
	}
	return err
}
