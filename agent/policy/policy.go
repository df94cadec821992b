// Package policy decides what a caller of sockagent may do with sockets: which networks it may
// use, which destinations Dial and SendTo may reach, which local addresses and ports Listen,
// Bind and Dial's local_address may take, where UNIX socket paths may live, and the limits on
// sockets, bytes per call and concurrent blocking calls.
//
// A Policy is a list of rule sets scoped to callers plus a default set; the first set whose
// callers match the caller applies, else the default. The agent asks the set before it opens
// or uses a socket; a refusal is a *Denied naming the rule, which the agent answers with
// PERMISSION_DENIED and reason POLICY_DENIED. The package knows nothing of gRPC or sockets: it
// checks addresses, ports, names and paths.
//
// # File format (sockagent --policy FILE)
//
//	agent_limits:                   # all callers together
//	  sockets: 4096                 # open sockets
//	  blocking_calls: 4096          # Dial, Accept, Send, Recv, SendTo, RecvFrom, Attach, Probe, Throughput in progress
//	  buffered_bytes: 268435456     # Send/SendTo data being written, Recv/RecvFrom buffers
//	default:                        # the rule set of callers no rule set names
//	  networks: [tcp, udp]          # allowed network names, compared exactly ("tcp" is not "tcp4")
//	  destinations:                 # Dial and SendTo targets, checked on the resolved IP and port
//	    allow: [{name: lab, cidrs: [10.0.0.0/8], ports: ["1024-65535"]}]
//	    deny:  [{name: ssh, ports: [22]}]
//	  local:                        # Listen, Bind and Dial's local_address
//	    allow: [{name: any}]
//	    deny:  [{name: privileged ports, ports: ["1-1023"]}]
//	  unix_paths:                   # UNIX socket paths; "$SOCKETS" is the agent's socket directory
//	    allow: [$SOCKETS, /run/lab]  # "$TMPDIR" is its temporary directory
//	    deny:  [/run/lab/private]
//	  socket_options: [tos, broadcast]  # guarded options allowed: bind_to_device, broadcast, reuse_port, tos
//	  limits:                       # per caller (Caller.ID)
//	    sockets: 64
//	    bytes_per_call: 1048576
//	    blocking_calls: 32
//	    watches: 4                  # WatchEvents streams open at once
//	  events: own                   # WatchEvents: own (its sockets and sessions) or all callers'
//	  session_limits:               # per session (the sockagent-session header)
//	    sockets: 16
//	    blocking_calls: 8
//	    buffered_bytes: 16777216
//	  tls:                          # TLS clients of Dial and Probe
//	    insecure_skip_verify: false # true lets callers accept any server certificate
//	rule_sets:                      # first match wins
//	  - name: ci
//	    callers: ["token:ci", "subject:CN=ci-*,O=Lab", "san:*.lab.example"]
//	    destinations: {allow: [{cidrs: [127.0.0.0/8]}]}
//
// Rules: a rule matches an address when the address lies in one of its cidrs (a bare IP is a
// single host; no cidrs = every address) and its port in one of its ports (N or "N-M"; no ports
// = every port). Deny wins: a denied address is refused even when an allow rule also matches;
// an address no allow rule matches is refused too (the rule named is "SECTION.allow"). IPv4-mapped
// IPv6 addresses are checked as IPv4, and zones are ignored. A rule without a name is named by
// its place, such as "destinations.deny[0]".
//
// Destinations are judged where the kernel sends them: 0.0.0.0 and :: are this host, reached
// over loopback, so they are judged as 127.0.0.1 and ::1. Broadcast (255.255.255.255 and the
// broadcast addresses of the host's subnets) and multicast destinations reach every host that
// listens, so only an allow rule that names them allows them: one of its cidrs is the address
// itself (10.0.0.255/32, 255.255.255.255/32) or, for multicast, a range inside 224.0.0.0/4 or
// ff00::/8. Neither a rule without cidrs ("anywhere") nor a range that also holds unicast
// addresses (10.0.0.0/24, 0.0.0.0/0) allows them; deny rules apply as to any address.
//
// Socket options: bind_to_device, broadcast, reuse_port and tos need privilege or reach other
// traffic (bypassing routes, every host of a subnet, connections meant for another socket,
// the network's queues), so a caller may set them only when its rule set lists them in
// socket_options; every other option is always allowed. Joining a multicast group is judged
// as a destination: an allow rule must name the group (as for sending to it) and the port the
// socket is bound to.
//
// Port 0 (the OS picks a port) is checked on the port the OS picked: the agent checks a local
// address before binding when its port is fixed, and the bound address after binding always.
//
// UNIX paths: a path is allowed when it lies under an allow prefix (by path element: /tmp
// covers /tmp/a.sock, not /tmpx) and under no deny prefix, both as written and with symlinks
// resolved (its directory's, when the socket file does not exist yet). Abstract names ("@name",
// Linux) match only prefixes that start with "@". The agent rejects relative paths and paths
// with ".." before any policy check. A prefix may start with "$SOCKETS", the agent's socket
// directory (SocketDirPrefix: private to the agent's user, so no other user's sockets live
// there and no other user can swap it for a link), or "$TMPDIR", the agent's temporary
// directory (TempDirPrefix: shared with every local user on most hosts).
//
// Inheritance: what a rule set leaves out it takes from the file's default set, and what the
// default set leaves out from the built-in default (DefaultYAML), list by list: networks,
// destinations.allow, destinations.deny, local.allow, local.deny, unix_paths.allow,
// unix_paths.deny and socket_options each replace the inherited list when given (an empty list [] clears it), and
// limits, session_limits and tls inherit field by field. So `destinations: {deny: [...]}` adds no allow rule and keeps
// the inherited one. Unknown keys are errors.
//
// Callers: each rule set lists caller patterns; the set applies when one matches.
//
//   - "token:GLOB" matches a token caller's name ("token:ci", "token:sha256-*"), and the name of
//     the token a certificate caller also sent.
//   - "san:GLOB" matches any of a certificate caller's subject alternative names (DNS, IP, URI,
//     e-mail): "san:*.lab.example".
//   - "subject:ATTRS" matches a certificate caller whose subject has every attribute listed,
//     in any order, others allowed: "subject:OU=lab,O=Example" matches CN=h1,OU=lab,O=Example.
//   - "cert:SUBJECT" matches a certificate caller whose whole subject is SUBJECT, attribute by
//     attribute in order, as its identity writes it ("cert:CN=ci-1,O=Lab"; the caller ID is
//     "cert:" + the subject); "cert:*" matches every certificate caller.
//   - Anything else ("anonymous", "*", "uid:*") is a glob over Caller.ID, "*" matching any run
//     of characters; such a glob matches a certificate caller only when it is "*".
//
// ATTRS and SUBJECT are written as RFC 4514 writes a subject: TYPE=VALUE pairs joined by ","
// (or "+"), types by name (CN, O, OU, C, L, ST, STREET, DC, UID, SERIALNUMBER, POSTALCODE;
// any case) or dotted OID, values with , + " \ < > ; = escaped by a backslash (or any byte
// as \XX). In a value, "*" matches any run of characters and "\*" is a star. Patterns match
// the certificate's parsed attributes, never a string of the whole subject: a common name of
// "mallory,OU=lab" is one CN value, so neither "subject:OU=lab" nor "*OU=lab" matches it, and
// a certificate without CN whose O is "Lab" ("cert:O=Lab") is not one whose CN is "O=Lab"
// ("cert:CN=O\=Lab"). Limits count per Caller.ID: two callers of one rule set each get the
// set's limits.
package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sockagent/sockagent/agent/contract"
)

// Policy is a parsed policy. Use Parse, Load or Default; the zero value allows nothing.
type Policy struct {
	// MaxSockets bounds the open sockets of all callers together (agent_limits.sockets).
	MaxSockets int
	// MaxBlockingCalls bounds the blocking calls (Dial, Accept, Send, Recv, SendTo, RecvFrom,
	// Attach, Probe, Throughput) of all callers together in progress at once
	// (agent_limits.blocking_calls).
	MaxBlockingCalls int
	// MaxBufferedBytes bounds the data the agent holds for calls in progress, all callers
	// together: Send and SendTo data being written, Recv and RecvFrom buffers being filled,
	// and the bytes sockets keep from interrupted exact reads (agent_limits.buffered_bytes).
	MaxBufferedBytes int
	// Default applies to callers no entry of RuleSets matches.
	Default *RuleSet
	// RuleSets are tried in order; the first whose Callers match applies.
	RuleSets []*RuleSet
}

// RuleSet is what one group of callers may do.
type RuleSet struct {
	// Name names the set in refusals ("default" for the default set).
	Name string
	// Callers are the caller patterns the set applies to (empty in the default set).
	Callers []string
	callers []callerPattern // Callers parsed, by Parse
	// Networks are the network names allowed, among contract.AllNetworks.
	Networks []string
	// Destinations govern Dial and SendTo targets.
	Destinations AddrRules
	// Local governs Listen, Bind and Dial's local_address.
	Local AddrRules
	// UnixPaths governs UNIX socket paths.
	UnixPaths PathRules
	// SocketOptions are the policy-guarded socket options (contract.GuardedOptions) the
	// set's callers may set; the other options are always allowed.
	SocketOptions []string
	// Limits apply per caller.
	Limits Limits
	// SessionLimits apply per session of a caller of the set.
	SessionLimits SessionLimits
	// EventsAll lets the set's callers watch every caller's events (WatchEvents all_callers;
	// "events: all"); without it ("events: own", the default) a caller watches its own only.
	EventsAll bool
	// TLS governs what Dial and Probe may ask of their TLS clients.
	TLS TLSRules
}

// TLSRules say which risky TLS settings a rule set's callers may use (the tls section).
type TLSRules struct {
	// InsecureSkipVerify allows TlsClient.insecure_skip_verify: a TLS client that accepts any
	// server certificate, so a man in the middle goes unnoticed. Off unless a rule set says so.
	InsecureSkipVerify bool
}

// CheckInsecureSkipVerify refuses a TLS client that skips verifying the server's certificate
// unless the set allows it (tls.insecure_skip_verify).
func (s *RuleSet) CheckInsecureSkipVerify() error {
	if s.TLS.InsecureSkipVerify {
		return nil
	}
	return &Denied{What: "tls insecure_skip_verify", Rule: "tls.insecure_skip_verify", RuleSet: s.Name, NoMatch: true,
		Hint: "give root_cas_pem with the CA that signed the server's certificate, or allow it with tls: {insecure_skip_verify: true} in the rule set"}
}

// AddrRules are allow and deny lists of address rules; deny wins.
type AddrRules struct {
	Allow, Deny []AddrRule
}

// AddrRule matches IP addresses and ports.
type AddrRule struct {
	// Name names the rule in refusals.
	Name string
	// Prefixes the address must lie in; empty matches every address.
	Prefixes []netip.Prefix
	// Ports the port must lie in; empty matches every port.
	Ports []PortRange
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// PathRules are allow and deny lists of UNIX path prefixes; deny wins.
type PathRules struct {
	Allow, Deny []string
}

// Limits bound one caller's use of the agent. Every field is positive.
type Limits struct {
	// Sockets bounds the caller's open sockets.
	Sockets int
	// BytesPerCall bounds Send and SendTo data and Recv and RecvFrom sizes.
	BytesPerCall int
	// BlockingCalls bounds the caller's concurrent blocking calls (Dial, Accept, Send, Recv,
	// SendTo, RecvFrom, Attach, Probe, Throughput).
	BlockingCalls int
	// BufferedBytes bounds the data the caller's calls hold at once, its share of
	// agent_limits.buffered_bytes: one caller cannot take the whole agent's.
	BufferedBytes int
	// Sessions bounds the caller's open sessions.
	Sessions int
	// Watches bounds the caller's WatchEvents streams open at once (default DefaultWatches).
	Watches int
}

// DefaultWatches is limits.watches where no policy gives it: enough for a few terminals
// following an agent, few enough that event buffers stay small.
const DefaultWatches = 4

// SessionLimits bound one session's use of the agent (session_limits). Every field is positive.
type SessionLimits struct {
	// Sockets bounds the session's open sockets.
	Sockets int
	// BlockingCalls bounds the concurrent blocking calls made in the session or on its sockets.
	BlockingCalls int
	// BufferedBytes bounds the data those calls hold at once (Send and SendTo data, Recv and
	// RecvFrom buffers).
	BufferedBytes int
}

// Identity is who asks: the fields of the agent's Caller that policies match on.
type Identity struct {
	// ID is "anonymous", "token:NAME" or "cert:" + the certificate's Subject.String().
	ID string
	// Subject is a certificate caller's subject, parsed; nil for every other caller.
	Subject Subject
	// SANs are a certificate caller's subject alternative names.
	SANs []string
	// Token names the caller's valid token, also for a certificate caller that sent one.
	Token string
}

// Denied is a refusal by a policy rule.
type Denied struct {
	// What was refused: "destination 10.0.0.1:22", "network udp", "UNIX path /x".
	What string
	// Rule names the rule that refused: a rule's name, or "SECTION.allow" when no allow rule
	// matched.
	Rule string
	// RuleSet names the rule set that applied.
	RuleSet string
	// NoMatch is set when no allow rule matched (rather than a deny rule matching).
	NoMatch bool
	// Hint, if set, says what rule would allow it.
	Hint string
}

func (e *Denied) Error() string {
	if e.NoMatch {
		s := fmt.Sprintf("%s not allowed by policy rule %q: no rule of it matches (rule set %q)", e.What, e.Rule, e.RuleSet)
		if e.Hint != "" {
			s += "; " + e.Hint
		}
		return s
	}
	return fmt.Sprintf("%s denied by policy rule %q (rule set %q)", e.What, e.Rule, e.RuleSet)
}

// For returns the rule set that applies to id: the first whose callers match, else the default.
func (p *Policy) For(id Identity) *RuleSet {
	for _, s := range p.RuleSets {
		if s.matches(id) {
			return s
		}
	}
	return p.Default
}

func (s *RuleSet) matches(id Identity) bool {
	pats := s.callers
	if len(pats) != len(s.Callers) { // a RuleSet built by hand, not by Parse
		pats = nil
		for _, c := range s.Callers {
			if p, err := compileCaller(c); err == nil {
				pats = append(pats, p)
			}
		}
	}
	for _, p := range pats {
		if p.matches(id) {
			return true
		}
	}
	return false
}

// callerPattern is one parsed entry of a rule set's callers.
type callerPattern struct {
	prefix string // "san:", "token:", "subject:", "cert:", or "" for a glob over Caller.ID
	glob   string
	subj   subjectPattern
}

// compileCaller parses a caller pattern; "subject:" and "cert:" patterns must be RFC 4514
// attribute lists (see the package doc).
func compileCaller(pat string) (callerPattern, error) {
	for _, prefix := range []string{"san:", "token:", "subject:", "cert:"} {
		rest, ok := strings.CutPrefix(pat, prefix)
		if !ok {
			continue
		}
		if rest == "" {
			return callerPattern{}, errors.New("empty caller pattern; use \"*\" for every caller")
		}
		c := callerPattern{prefix: prefix, glob: rest}
		if prefix == "subject:" || prefix == "cert:" {
			sp, err := compileSubjectPattern(rest, prefix == "cert:")
			if err != nil {
				return callerPattern{}, fmt.Errorf("%s pattern %q: %w (such as %sCN=ci-*,O=Lab)", strings.TrimSuffix(prefix, ":"), rest, err, prefix)
			}
			c.subj = sp
		}
		return c, nil
	}
	if pat == "" {
		return callerPattern{}, errors.New("empty caller pattern; use \"*\" for every caller")
	}
	return callerPattern{glob: pat}, nil
}

func (c callerPattern) matches(id Identity) bool {
	switch c.prefix {
	case "san:":
		for _, n := range id.SANs {
			if glob(c.glob, n) {
				return true
			}
		}
		return false
	case "subject:", "cert:":
		return c.subj.matches(id.Subject)
	case "token:": // a token caller's name, or the token a certificate caller also sent
		name, ok := id.Token, id.Token != ""
		if !ok {
			name, ok = strings.CutPrefix(id.ID, "token:")
		}
		return ok && glob(c.glob, name)
	}
	// A glob over a certificate caller's ID would reach into its subject's values (a CN of
	// "x,OU=lab" against "*OU=lab"): certificate callers are matched by their attributes only.
	if id.Subject != nil || strings.HasPrefix(id.ID, "cert:") {
		return c.glob == "*"
	}
	return glob(c.glob, id.ID)
}

// glob matches s against pattern, where "*" matches any run of characters (slashes and
// commas included) and everything else matches itself; in time linear in len(s) per piece
// of the pattern, however many stars it has.
func glob(pattern, s string) bool {
	return globPieces(strings.Split(pattern, "*"), s)
}

// CheckNetwork refuses a network name the set does not list.
func (s *RuleSet) CheckNetwork(network string) error {
	for _, n := range s.Networks {
		if n == network {
			return nil
		}
	}
	return &Denied{What: "network " + network, Rule: "networks", RuleSet: s.Name, NoMatch: true}
}

// CheckOption refuses a policy-guarded socket option (contract.GuardedOptions) the set does
// not list in socket_options; any other option is allowed.
func (s *RuleSet) CheckOption(name string) error {
	if !contract.IsGuarded(name) || slices.Contains(s.SocketOptions, name) {
		return nil
	}
	return &Denied{What: "socket option " + name, Rule: "socket_options", RuleSet: s.Name, NoMatch: true,
		Hint: "it needs privilege or reaches other traffic; list it in the rule set's socket_options to allow it"}
}

// Where returns the address the kernel sends a connection or datagram for ap to: the
// unspecified address (0.0.0.0, ::, and ::ffff:0.0.0.0) means this host, which Linux and the
// BSDs reach over loopback (127.0.0.1, ::1); any other address is itself, unmapped and
// without its zone.
func Where(ap netip.AddrPort) netip.AddrPort {
	ap = normalize(ap)
	if a := ap.Addr(); a.IsUnspecified() {
		if a.Is4() {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())
		}
		return netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
	}
	return ap
}

// limitedBroadcast is 255.255.255.255, the broadcast of every subnet a host is on.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// CheckDestination refuses a Dial or SendTo target the set does not allow, judged where the
// kernel sends it (Where: 0.0.0.0 and :: are judged as loopback). A multicast destination,
// and 255.255.255.255, reach hosts the rules may deny, so only an allow rule that names them
// allows them (Names); the "anywhere" rule, or a range that merely covers them, does not.
func (s *RuleSet) CheckDestination(ap netip.AddrPort) error {
	a := Where(ap).Addr()
	return s.checkDestination(ap, a.IsMulticast() || a == limitedBroadcast)
}

// CheckBroadcast is CheckDestination for an address the agent knows to be the broadcast
// address of one of its host's subnets: like multicast, only an allow rule that names it
// (Names) allows it.
func (s *RuleSet) CheckBroadcast(ap netip.AddrPort) error {
	return s.checkDestination(ap, true)
}

func (s *RuleSet) checkDestination(ap netip.AddrPort, special bool) error {
	to := Where(ap)
	what := "destination " + normalize(ap).String()
	if to != normalize(ap) {
		what += " (the kernel sends it to " + to.String() + ")"
	}
	if !special {
		return s.Destinations.checkAs(what, "destinations", s.Name, to)
	}
	kind := "broadcast"
	if to.Addr().IsMulticast() {
		kind = "multicast"
	}
	what = kind + " " + what
	for _, rule := range s.Destinations.Deny {
		if rule.Matches(to) {
			return &Denied{What: what, Rule: rule.Name, RuleSet: s.Name}
		}
	}
	for _, rule := range s.Destinations.Allow {
		if rule.Names(to.Addr()) && rule.Matches(to) {
			return nil
		}
	}
	return &Denied{What: what, Rule: "destinations.allow", RuleSet: s.Name, NoMatch: true,
		Hint: "a " + kind + " destination reaches every host that listens, so only an allow rule whose cidrs name it allows it (" + namesHint + ")"}
}

const namesHint = "the address itself, such as 10.0.0.255/32 or 255.255.255.255/32, or a range inside 224.0.0.0/4 or ff00::/8, such as 224.0.0.0/4"

// Names reports whether one of the rule's cidrs names a explicitly, as a broadcast or
// multicast destination needs: a single-address prefix equal to a, or, for a multicast a, a
// prefix that contains a and lies wholly inside the multicast range (224.0.0.0/4, ff00::/8).
// A rule without cidrs, or with a range that also covers unicast addresses, names nothing.
func (r AddrRule) Names(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range r.Prefixes {
		switch {
		case !p.Contains(a):
		case p.IsSingleIP():
			return true
		case a.IsMulticast() && p.Addr().IsMulticast() && p.Bits() >= multicastBits(a):
			return true
		}
	}
	return false
}

func multicastBits(a netip.Addr) int {
	if a.Is4() {
		return 4 // 224.0.0.0/4
	}
	return 8 // ff00::/8
}

// NamesDestination reports whether an allow rule of Destinations names a (Names): whether the
// set may send to a as a broadcast or multicast destination at all, ports aside. The agent
// leaves SO_BROADCAST on a socket only when the set names some broadcast address.
func (s *RuleSet) NamesDestination(a netip.Addr) bool {
	for _, rule := range s.Destinations.Allow {
		if rule.Names(a) {
			return true
		}
	}
	return false
}

// CheckLocal refuses a local address (Listen, Bind, Dial's local_address) the set does not allow.
func (s *RuleSet) CheckLocal(ap netip.AddrPort) error {
	return s.Local.check("local address", "local", s.Name, ap)
}

func normalize(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

func (r AddrRules) check(what, section, set string, ap netip.AddrPort) error {
	ap = normalize(ap)
	return r.checkAs(what+" "+ap.String(), section, set, ap)
}

func (r AddrRules) checkAs(what, section, set string, ap netip.AddrPort) error {
	for _, rule := range r.Deny {
		if rule.Matches(ap) {
			return &Denied{What: what, Rule: rule.Name, RuleSet: set}
		}
	}
	for _, rule := range r.Allow {
		if rule.Matches(ap) {
			return nil
		}
	}
	return &Denied{What: what, Rule: section + ".allow", RuleSet: set, NoMatch: true}
}

// Matches reports whether ap lies in the rule's prefixes and ports.
func (r AddrRule) Matches(ap netip.AddrPort) bool {
	ap = normalize(ap)
	inPrefix := len(r.Prefixes) == 0
	for _, p := range r.Prefixes {
		if p.Contains(ap.Addr()) {
			inPrefix = true
			break
		}
	}
	if !inPrefix {
		return false
	}
	if len(r.Ports) == 0 {
		return true
	}
	for _, pr := range r.Ports {
		if ap.Port() >= pr.Lo && ap.Port() <= pr.Hi {
			return true
		}
	}
	return false
}

// CheckUnixPath refuses a UNIX socket path (or "@abstract" name) the set does not allow. The
// path is checked as written (cleaned) and with symlinks resolved; both must pass.
func (s *RuleSet) CheckUnixPath(path string) error {
	what := "UNIX path " + path
	if strings.HasPrefix(path, "@") {
		return s.UnixPaths.check(what, s.Name, []string{path})
	}
	clean := filepath.Clean(path)
	return s.UnixPaths.check(what, s.Name, []string{clean, resolve(clean)})
}

// resolve follows symlinks in path, dangling ones included (a link to a socket that does not
// exist yet, or to a path outside what is allowed); a socket that does not exist yet is
// resolved through its directory. What cannot be resolved stays as written: the OS call fails
// on it anyway.
func resolve(path string) string {
	for range 40 { // as many links as Linux follows
		if r, err := filepath.EvalSymlinks(path); err == nil {
			return r
		}
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			break
		}
		target, err := os.Readlink(path)
		if err != nil {
			return path
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = filepath.Clean(target)
	}
	dir, base := filepath.Split(path)
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return filepath.Join(r, base)
	}
	return path
}

func (r PathRules) check(what, set string, forms []string) error {
	for _, p := range forms {
		for _, prefix := range r.Deny {
			if underPrefix(p, prefix) {
				return &Denied{What: what, Rule: "unix_paths.deny " + prefix, RuleSet: set}
			}
		}
	}
	for _, p := range forms {
		ok := false
		for _, prefix := range r.Allow {
			if underPrefix(p, prefix) {
				ok = true
				break
			}
		}
		if !ok {
			return &Denied{What: what, Rule: "unix_paths.allow", RuleSet: set, NoMatch: true}
		}
	}
	return nil
}

// underPrefix: abstract names match "@" prefixes as strings; paths match path prefixes by
// element, as written or with the prefix's own symlinks resolved.
func underPrefix(p, prefix string) bool {
	if strings.HasPrefix(p, "@") || strings.HasPrefix(prefix, "@") {
		return strings.HasPrefix(p, "@") && strings.HasPrefix(prefix, "@") && strings.HasPrefix(p, prefix)
	}
	prefix, ok := expandPrefix(prefix)
	if !ok {
		return false
	}
	if within(p, prefix) {
		return true
	}
	if r, err := filepath.EvalSymlinks(prefix); err == nil && r != prefix {
		return within(p, r)
	}
	return false
}

func within(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator))
}

// TempDirPrefix in a unix_paths prefix stands for the agent's temporary directory.
const TempDirPrefix = "$TMPDIR"

// SocketDirPrefix in a unix_paths prefix stands for the agent's socket directory, a directory
// only the agent's user may enter (agent.Config.SocketDir). The agent expands it in its policy
// (WithSocketDir); until then a prefix that starts with it matches no path, so a policy whose
// agent has no socket directory allows nothing through it.
const SocketDirPrefix = "$SOCKETS"

// WithSocketDir returns a copy of p in which every unix_paths prefix (allow and deny, of every
// rule set) that starts with SocketDirPrefix names dir instead; p itself is not changed. dir
// must be an absolute path; an empty or relative dir leaves the prefixes unexpanded, matching
// nothing.
func (p *Policy) WithSocketDir(dir string) *Policy {
	cp := *p
	expand := func(s *RuleSet) *RuleSet {
		if s == nil {
			return nil
		}
		c := *s
		c.UnixPaths = PathRules{Allow: expandSocketDir(s.UnixPaths.Allow, dir), Deny: expandSocketDir(s.UnixPaths.Deny, dir)}
		return &c
	}
	cp.Default = expand(p.Default)
	cp.RuleSets = make([]*RuleSet, len(p.RuleSets))
	for i, s := range p.RuleSets {
		cp.RuleSets[i] = expand(s)
	}
	return &cp
}

func expandSocketDir(prefixes []string, dir string) []string {
	if prefixes == nil {
		return nil
	}
	out := make([]string, len(prefixes))
	for i, prefix := range prefixes {
		out[i] = prefix
		if rest, ok := cutDirPrefix(prefix, SocketDirPrefix); ok && filepath.IsAbs(dir) {
			out[i] = filepath.Clean(dir + rest)
		}
	}
	return out
}

// cutDirPrefix cuts placeholder off prefix when prefix is the placeholder or a path under it
// ("$SOCKETS/lab", not "$SOCKETSX").
func cutDirPrefix(prefix, placeholder string) (string, bool) {
	rest, ok := strings.CutPrefix(prefix, placeholder)
	return rest, ok && (rest == "" || strings.HasPrefix(rest, "/"))
}

// expandPrefix returns the directory a unix_paths prefix names, and false for an unexpanded
// SocketDirPrefix, which names none.
func expandPrefix(prefix string) (string, bool) {
	if rest, ok := cutDirPrefix(prefix, TempDirPrefix); ok {
		return filepath.Clean(os.TempDir() + rest), true
	}
	if _, ok := cutDirPrefix(prefix, SocketDirPrefix); ok {
		return "", false
	}
	return prefix, true
}
