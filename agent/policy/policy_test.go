package policy

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sockagent/sockagent/agent/contract"
)

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return p
}

func TestDefault(t *testing.T) {
	t.Parallel()
	p := Default()
	d := p.Default
	if p.MaxSockets != 4096 || d.Limits != (Limits{Sockets: 1024, BytesPerCall: 4 << 20, BlockingCalls: 256, BufferedBytes: 64 << 20, Sessions: 64, Watches: DefaultWatches}) {
		t.Errorf("limits: agent %d, default %+v", p.MaxSockets, d.Limits)
	}
	if all := contract.AllNetworks(); !slices.Equal(d.Networks, all) {
		t.Errorf("networks %v, want all of %v", d.Networks, all)
	}
	if d.Name != "default" || len(p.RuleSets) != 0 {
		t.Errorf("name %q, rule sets %d", d.Name, len(p.RuleSets))
	}
	for _, tc := range []struct {
		dst       string
		dest, loc string // "" allowed, else the rule named
	}{
		{"127.0.0.1:1", "", "privileged ports"},
		{"10.1.2.3:22", "", "privileged ports"},
		{"[::1]:1023", "", "privileged ports"},
		{"0.0.0.0:1024", "", ""},
		{"[::]:65535", "", ""},
		{"192.0.2.1:0", "", ""}, // port 0 is judged once the OS picked one
	} {
		ap := netip.MustParseAddrPort(tc.dst)
		if got := ruleOf(d.CheckDestination(ap)); got != tc.dest {
			t.Errorf("destination %s: rule %q, want %q", tc.dst, got, tc.dest)
		}
		if got := ruleOf(d.CheckLocal(ap)); got != tc.loc {
			t.Errorf("local %s: rule %q, want %q", tc.dst, got, tc.loc)
		}
	}
	// UNIX paths: the agent's socket directory only, never the shared temporary directories
	// where other users' sockets (tmux, X11, ssh-agent) live; unexpanded, nothing at all.
	sockets := t.TempDir()
	withDir := p.WithSocketDir(sockets).Default
	for _, tc := range []struct{ path, rule, expanded string }{
		{filepath.Join(sockets, "a.sock"), "unix_paths.allow", ""},
		{filepath.Join(sockets, "sub", "a.sock"), "unix_paths.allow", ""},
		{sockets + "x/a.sock", "unix_paths.allow", "unix_paths.allow"},
		{filepath.Join(os.TempDir(), "x.sock"), "unix_paths.allow", "unix_paths.allow"},
		{"/tmp/x.sock", "unix_paths.allow", "unix_paths.allow"},
		{"/tmp/.X11-unix/X0", "unix_paths.allow", "unix_paths.allow"},
		{"/run/docker.sock", "unix_paths.allow", "unix_paths.allow"},
		{"/var/run/x.sock", "unix_paths.allow", "unix_paths.allow"},
		{"@abstract", "unix_paths.allow", "unix_paths.allow"},
		{"$SOCKETS/a.sock", "unix_paths.allow", "unix_paths.allow"},
	} {
		if got := ruleOf(d.CheckUnixPath(tc.path)); got != tc.rule {
			t.Errorf("unix path %s, $SOCKETS unexpanded: rule %q, want %q", tc.path, got, tc.rule)
		}
		if got := ruleOf(withDir.CheckUnixPath(tc.path)); got != tc.expanded {
			t.Errorf("unix path %s, $SOCKETS = %s: rule %q, want %q", tc.path, sockets, got, tc.expanded)
		}
	}
}

// TestWithSocketDir: $SOCKETS is expanded in every rule set's allow and deny lists, in a copy;
// $TMPDIR keeps working beside it.
func TestWithSocketDir(t *testing.T) {
	t.Parallel()
	sockets, other := t.TempDir(), t.TempDir()
	p := mustParse(t, `
default:
  unix_paths: {allow: [$SOCKETS], deny: [$SOCKETS/private]}
rule_sets:
  - name: lab
    callers: [anonymous]
    unix_paths: {allow: [$SOCKETS/lab, $TMPDIR, `+other+`]}
`)
	x := p.WithSocketDir(sockets)
	if !slices.Equal(p.Default.UnixPaths.Allow, []string{"$SOCKETS"}) || !slices.Equal(p.RuleSets[0].UnixPaths.Allow, []string{"$SOCKETS/lab", "$TMPDIR", other}) {
		t.Errorf("the original changed: %+v %+v", p.Default.UnixPaths, p.RuleSets[0].UnixPaths)
	}
	if !slices.Equal(x.Default.UnixPaths.Allow, []string{sockets}) || !slices.Equal(x.Default.UnixPaths.Deny, []string{sockets + "/private"}) {
		t.Errorf("default expanded to %+v", x.Default.UnixPaths)
	}
	if !slices.Equal(x.RuleSets[0].UnixPaths.Allow, []string{sockets + "/lab", "$TMPDIR", other}) || x.RuleSets[0].UnixPaths.Deny[0] != sockets+"/private" {
		t.Errorf("lab expanded to %+v", x.RuleSets[0].UnixPaths)
	}
	if got := x.For(Identity{ID: "anonymous"}); got.Name != "lab" {
		t.Errorf("the copy's caller patterns: anonymous gets %q, want lab", got.Name)
	}
	def, lab := x.Default, x.RuleSets[0]
	for _, tc := range []struct {
		set        *RuleSet
		path, rule string
	}{
		{def, filepath.Join(sockets, "a.sock"), ""},
		{def, filepath.Join(sockets, "private", "a.sock"), "unix_paths.deny " + sockets + "/private"},
		{def, filepath.Join(other, "a.sock"), "unix_paths.allow"},
		{lab, filepath.Join(sockets, "lab", "a.sock"), ""},
		{lab, "/run/x.sock", "unix_paths.allow"},
		{lab, filepath.Join(os.TempDir(), "a.sock"), ""},
		{lab, filepath.Join(other, "a.sock"), ""},
	} {
		if got := ruleOf(tc.set.CheckUnixPath(tc.path)); got != tc.rule {
			t.Errorf("%s: unix path %s: rule %q, want %q", tc.set.Name, tc.path, got, tc.rule)
		}
	}
	// A relative or empty directory expands nothing: $SOCKETS still matches no path.
	for _, dir := range []string{"", "sockets"} {
		if got := ruleOf(p.WithSocketDir(dir).Default.CheckUnixPath(filepath.Join(sockets, "a.sock"))); got != "unix_paths.allow" {
			t.Errorf("WithSocketDir(%q): rule %q, want unix_paths.allow", dir, got)
		}
	}
}

func ruleOf(err error) string {
	if err == nil {
		return ""
	}
	var d *Denied
	if !errors.As(err, &d) {
		return "not a *Denied: " + err.Error()
	}
	return d.Rule
}

const example = `
agent_limits: {sockets: 100}
default:
  networks: [tcp, udp]
  destinations:
    allow:
      - {name: loopback high, cidrs: [127.0.0.0/8, "::1"], ports: ["1024-65535"]}
      - {name: lab dns, cidrs: [10.0.0.53], ports: [53]}
    deny:
      - {name: no .2, cidrs: [127.0.0.2/32]}
  limits: {sockets: 10}
rule_sets:
  - name: ci
    callers: ["token:ci", "cert:CN=ci-*"]
    networks: [tcp4]
    limits: {blocking_calls: 3}
  - name: lab
    callers: ["san:*.lab.example", "subject:OU=lab-hosts"]
    destinations: {allow: [{}]}
    unix_paths: {allow: ["@sockagent-", /run/sockagent], deny: [/run/sockagent/private]}
  - name: open
    callers: [anonymous]
    destinations: {allow: [{}], deny: []}
`

// certID is the identity of a certificate caller whose subject is the RFC 4514 string subj.
func certID(t *testing.T, subj string) Identity {
	t.Helper()
	s, err := ParseSubject(subj)
	if err != nil {
		t.Fatal(err)
	}
	return Identity{ID: "cert:" + s.String(), Subject: s}
}

func withSANs(id Identity, sans ...string) Identity { id.SANs = sans; return id }

func withToken(id Identity, tok string) Identity { id.Token = tok; return id }

func TestMatching(t *testing.T) {
	t.Parallel()
	p := mustParse(t, example)
	ci, lab, open, def := p.RuleSets[0], p.RuleSets[1], p.RuleSets[2], p.Default
	for _, tc := range []struct {
		id   Identity
		want *RuleSet
	}{
		{Identity{ID: "anonymous"}, open},
		{Identity{ID: "token:x"}, def},
		{Identity{ID: "token:ci"}, ci},
		{Identity{ID: "token:cix"}, def},
		{certID(t, "CN=ci-7"), ci},
		{certID(t, "CN=ci-7,O=x/y"), def}, // cert: is the whole subject
		{withSANs(certID(t, "CN=lab"), "a.b", "h1.lab.example"), lab},
		{withSANs(certID(t, "CN=lab"), "lab.example"), def},
		{withToken(certID(t, "CN=ci-9,O=Lab"), "ci"), ci}, // the token it also sent
		{certID(t, "CN=x,O=Lab,OU=lab-hosts"), lab},       // subject:
		{certID(t, "CN=x,O=Other"), def},
	} {
		if got := p.For(tc.id); got != tc.want {
			t.Errorf("For(%+v) = %s, want %s", tc.id, got.Name, tc.want.Name)
		}
	}
	if p.MaxSockets != 100 {
		t.Errorf("agent sockets %d", p.MaxSockets)
	}
	// Inheritance: ci takes destinations from the file's default, limits field by field, and
	// the file's default takes local and unix_paths from the built-in default.
	if ci.Limits != (Limits{Sockets: 10, BytesPerCall: 4 << 20, BlockingCalls: 3, BufferedBytes: 64 << 20, Sessions: 64, Watches: DefaultWatches}) {
		t.Errorf("ci limits %+v", ci.Limits)
	}
	if len(ci.Destinations.Allow) != 2 || ci.Destinations.Deny[0].Name != "no .2" {
		t.Errorf("ci destinations %+v", ci.Destinations)
	}
	if def.Local.Deny[0].Name != "privileged ports" || !slices.Equal(def.UnixPaths.Allow, []string{"$SOCKETS"}) {
		t.Errorf("default local %+v unix %+v", def.Local, def.UnixPaths)
	}
	// Lists inherit one by one: lab gives destinations.allow and keeps the default's deny.
	if !slices.Equal(lab.Networks, []string{"tcp", "udp"}) || len(lab.Destinations.Deny) != 1 || len(lab.Destinations.Allow) != 1 {
		t.Errorf("lab networks %v destinations %+v", lab.Networks, lab.Destinations)
	}

	for _, tc := range []struct {
		set  *RuleSet
		dst  string
		rule string
	}{
		{def, "127.0.0.1:8080", ""},
		{def, "127.0.0.2:8080", "no .2"}, // deny wins over "loopback high"
		{def, "[::ffff:127.0.0.2]:8080", "no .2"},
		{def, "127.0.0.1:1023", "destinations.allow"},
		{def, "[::1]:2000", ""},
		{def, "[::2]:2000", "destinations.allow"},
		{def, "10.0.0.53:53", ""},
		{def, "10.0.0.53:54", "destinations.allow"},
		{def, "[fe80::1%eth0]:80", "destinations.allow"},
		{lab, "8.8.8.8:53", ""},
		{lab, "127.0.0.2:1", "no .2"},
		{lab, "127.0.0.3:1", ""},
		{open, "127.0.0.2:1", ""},
	} {
		if got := ruleOf(tc.set.CheckDestination(netip.MustParseAddrPort(tc.dst))); got != tc.rule {
			t.Errorf("%s: destination %s: rule %q, want %q", tc.set.Name, tc.dst, got, tc.rule)
		}
	}
	for _, tc := range []struct {
		set     *RuleSet
		network string
		ok      bool
	}{
		{def, "tcp", true}, {def, "tcp4", false}, {def, "unix", false}, {ci, "tcp4", true}, {ci, "tcp", false},
	} {
		if err := tc.set.CheckNetwork(tc.network); (err == nil) != tc.ok || (err != nil && ruleOf(err) != "networks") {
			t.Errorf("%s: network %s: %v", tc.set.Name, tc.network, err)
		}
	}
	for _, tc := range []struct{ path, rule string }{
		{"@sockagent-1", ""},
		{"@other", "unix_paths.allow"},
		{"/run/sockagent/a.sock", ""},
		{"/run/sockagent/private/a.sock", "unix_paths.deny /run/sockagent/private"},
		{"/run/sockagentx", "unix_paths.allow"},
		{"/tmp/a.sock", "unix_paths.allow"},
	} {
		if got := ruleOf(lab.CheckUnixPath(tc.path)); got != tc.rule {
			t.Errorf("lab: unix path %s: rule %q, want %q", tc.path, got, tc.rule)
		}
	}
}

func TestDeniedMessage(t *testing.T) {
	t.Parallel()
	p := mustParse(t, example)
	err := p.Default.CheckDestination(netip.MustParseAddrPort("127.0.0.2:22"))
	if want := `destination 127.0.0.2:22 denied by policy rule "no .2" (rule set "default")`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	err = p.RuleSets[0].CheckNetwork("udp")
	if want := `network udp not allowed by policy rule "networks": no rule of it matches (rule set "ci")`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// TestUnixSymlinks: a symlink inside an allowed directory pointing outside it is judged by
// where it leads; an allowed prefix that is itself a symlink allows what lies behind it.
func TestUnixSymlinks(t *testing.T) {
	t.Parallel()
	allowed, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "target.sock"), filepath.Join(allowed, "link.sock")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "target.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "missing.sock"), filepath.Join(allowed, "dangling.sock")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../"+filepath.Base(outside)+"/rel.sock", filepath.Join(allowed, "relative.sock")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(allowed, "dirlink")); err != nil {
		t.Fatal(err)
	}
	aliasDir := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(allowed, aliasDir); err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, "default:\n  unix_paths: {allow: ["+allowed+", "+aliasDir+"]}\n")
	s := p.Default
	for _, tc := range []struct{ path, rule string }{
		{filepath.Join(allowed, "plain.sock"), ""},
		{filepath.Join(allowed, "link.sock"), "unix_paths.allow"},
		{filepath.Join(allowed, "dirlink", "new.sock"), "unix_paths.allow"},
		{filepath.Join(allowed, "dangling.sock"), "unix_paths.allow"},
		{filepath.Join(allowed, "relative.sock"), "unix_paths.allow"},
		{filepath.Join(aliasDir, "new.sock"), ""},
		{filepath.Join(outside, "x.sock"), "unix_paths.allow"},
	} {
		if got := ruleOf(s.CheckUnixPath(tc.path)); got != tc.rule {
			t.Errorf("unix path %s: rule %q, want %q", tc.path, got, tc.rule)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, src, want string }{
		{"empty", "", "p.yaml: the policy file is empty"},
		{"syntax", "default:\n  networks: [tcp\n", "p.yaml:"},
		{"unknown top key", "defaults: {}\n", `p.yaml:1:1: policy: unknown key "defaults"; known keys: agent_limits, default, rule_sets`},
		{"unknown set key", "default:\n  networkz: [tcp]\n", `p.yaml:2:3: default: unknown key "networkz"`},
		{"unknown rule key", "default:\n  destinations:\n    allow:\n      - {cidr: [10.0.0.0/8]}\n", `p.yaml:4:10: default.destinations.allow[0]: unknown key "cidr"; known keys: cidrs, name, ports`},
		{"twice", "default: {}\ndefault: {}\n", `p.yaml:2:1: policy: key "default" given twice`},
		{"bad network", "default:\n  networks: [tcp, sctp]\n", `p.yaml:2:19: default.networks[1]: unknown network "sctp"`},
		{"bad cidr", "default:\n  local: {allow: [{cidrs: [10.0.0/8]}]}\n", `p.yaml:2:28: default.local.allow[0].cidrs[0]: "10.0.0/8" is not a CIDR`},
		{"host bits", "default:\n  local: {deny: [{cidrs: [10.0.0.1/8]}]}\n", `did you mean 10.0.0.0/8?`},
		{"bad port", "default:\n  destinations: {deny: [{ports: [70000]}]}\n", `p.yaml:2:34: default.destinations.deny[0].ports[0]: want a port (22) or a range ("1024-65535") of 0 to 65535, not "70000"`},
		{"reversed range", "default:\n  destinations: {deny: [{ports: [\"20-10\"]}]}\n", `ports[0]: want a port`},
		{"not a list", "default:\n  networks: tcp\n", `p.yaml:2:13: default.networks: want a list`},
		{"zero limit", "default:\n  limits: {sockets: 0}\n", `p.yaml:2:21: default.limits.sockets: want a whole number from 1`},
		{"string limit", "agent_limits: {sockets: many}\n", `agent_limits.sockets: want a whole number`},
		{"unknown limit", "default:\n  limits: {bytes: 5}\n", `unknown key "bytes"; known keys: blocking_calls, buffered_bytes, bytes_per_call, sessions, sockets, watches`},
		{"relative unix", "default:\n  unix_paths: {allow: [tmp]}\n", `p.yaml:2:24: default.unix_paths.allow[0]: "tmp" is not an absolute path (nor an "@" abstract name, $SOCKETS or $TMPDIR)`},
		{"socket dir glued", "default:\n  unix_paths: {allow: [$SOCKETSX]}\n", `"$SOCKETSX" is not an absolute path`},
		{"dotdot unix", "default:\n  unix_paths: {allow: [/tmp/../etc]}\n", `contains ".."`},
		{"callers in default", "default:\n  callers: [x]\n", `default: unknown key "callers"`},
		{"set without callers", "rule_sets:\n  - name: x\n", `p.yaml:2:5: rule_sets[0]: has no callers`},
		{"empty callers", "rule_sets:\n  - {name: x, callers: []}\n", `rule_sets[0].callers: empty`},
		{"duplicate names", "rule_sets:\n  - {name: x, callers: [a]}\n  - {name: x, callers: [b]}\n", `p.yaml:3:5: rule set name "x" is used twice`},
		{"default name", "rule_sets:\n  - {name: default, callers: [a]}\n", `rule set name "default" is used twice`},
		{"mapping wanted", "default: [1]\n", `p.yaml:1:10: default: want a mapping`},
		{"unguarded option", "default:\n  socket_options: [tos, ttl]\n", `p.yaml:2:25: default.socket_options[1]: "ttl" is not a policy-guarded socket option; list some of bind_to_device, broadcast, reuse_port, tos`},
		{"options not a list", "rule_sets:\n  - {name: x, callers: [a], socket_options: tos}\n", `p.yaml:2:45: rule_sets[0].socket_options: want a list`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("p.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("parsed; want an error containing %q", tc.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("%T is not a *ParseError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("default:\n  limits: {sockets: 0}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+":2:21: ") {
		t.Errorf("Load: %v, want an error at %s:2:21", err, path)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
	// An alias is followed like the node it names.
	p := mustParse(t, "default:\n  networks: &n [tcp]\nrule_sets:\n  - {callers: [x], networks: *n}\n")
	if !slices.Equal(p.RuleSets[0].Networks, []string{"tcp"}) || p.RuleSets[0].Name != "rule_sets[0]" {
		t.Errorf("alias: %+v", p.RuleSets[0])
	}
}

func TestGlob(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true}, {"*", "anything/at,all", true}, {"a", "a", true}, {"a", "ab", false},
		{"cert:*", "cert:CN=x", true}, {"cert:*", "token:x", false}, {"*:ci", "token:ci", true},
		{"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false}, {"**", "x", true},
	} {
		if got := glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// TestUnixDenyResolved: a deny rule applies to the path a symlink resolves to, not only to
// the path as written: allow D, deny D/private, and D/pub.sock -> D/private/x.sock is denied
// by the deny rule.
func TestUnixDenyResolved(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	private := filepath.Join(d, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(private, "x.sock"), filepath.Join(d, "pub.sock")); err != nil {
		t.Fatal(err)
	}
	s := mustParse(t, "default:\n  unix_paths: {allow: ["+d+"], deny: ["+private+"]}\n").Default
	if got, want := ruleOf(s.CheckUnixPath(filepath.Join(d, "pub.sock"))), "unix_paths.deny "+private; got != want {
		t.Errorf("a link into the denied directory: rule %q, want %q", got, want)
	}
	if got := ruleOf(s.CheckUnixPath(filepath.Join(d, "plain.sock"))); got != "" {
		t.Errorf("a plain path in the allowed directory: rule %q, want none", got)
	}
}

// Guarded socket options are allowed only when the rule set lists them; the built-in policy
// lists none; a rule set inherits the default set's list unless it gives its own ([] clears
// it); other options are always allowed.
func TestSocketOptions(t *testing.T) {
	t.Parallel()
	p, err := Parse("p.yaml", []byte(`default:
  socket_options: [tos, broadcast]
rule_sets:
  - {name: lab, callers: ["token:lab"], socket_options: [bind_to_device, reuse_port]}
  - {name: none, callers: ["token:none"], socket_options: []}
  - {name: inherits, callers: ["token:inh"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		set     *RuleSet
		allowed []string
	}{
		{Default().Default, []string{"ttl", "no_delay", "reuse_address"}},
		{p.Default, []string{"tos", "broadcast", "ttl"}},
		{p.RuleSets[0], []string{"bind_to_device", "reuse_port", "linger"}},
		{p.RuleSets[1], []string{"multicast_ttl"}},
		{p.RuleSets[2], []string{"tos", "broadcast"}},
	} {
		for _, name := range []string{"bind_to_device", "broadcast", "reuse_port", "tos", "ttl", "no_delay", "reuse_address", "linger", "multicast_ttl"} {
			err := tc.set.CheckOption(name)
			want := !isGuardedForTest(name) || slices.Contains(tc.allowed, name)
			if (err == nil) != want {
				t.Errorf("rule set %s, option %s: %v; want allowed %v", tc.set.Name, name, err, want)
			}
			var d *Denied
			if err != nil && (!errors.As(err, &d) || d.Rule != "socket_options" || d.RuleSet != tc.set.Name || !d.NoMatch ||
				err.Error() != "socket option "+name+` not allowed by policy rule "socket_options": no rule of it matches (rule set "`+tc.set.Name+`"); it needs privilege or reaches other traffic; list it in the rule set's socket_options to allow it`) {
				t.Errorf("rule set %s, option %s: refusal %v", tc.set.Name, name, err)
			}
		}
	}
}

// isGuardedForTest names the guarded options independently of the code under test.
func isGuardedForTest(name string) bool {
	return name == "bind_to_device" || name == "broadcast" || name == "reuse_port" || name == "tos"
}
