package policy

import (
	"net/netip"
	"strings"
	"testing"
)

// Destinations are judged where the kernel sends them: the unspecified address is loopback,
// and broadcast and multicast need a rule that names them.
func TestCheckDestinationWhere(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `
default:
  destinations:
    allow: [{name: anywhere}]
    deny:
      - {name: no loopback, cidrs: [127.0.0.0/8, "::1"]}
      - {name: no victim, cidrs: [10.9.0.7]}
rule_sets:
  - name: named
    callers: [token:named]
    destinations:
      allow:
        - {name: all}
        - {name: lab broadcast, cidrs: [10.9.0.255/32], ports: ["9000"]}
        - {name: limited broadcast, cidrs: [255.255.255.255/32]}
        - {name: multicast, cidrs: [224.0.0.0/4]}
        - {name: v6 all-nodes, cidrs: ["ff02::1/128"]}
      deny: [{name: no 224.0.0.251, cidrs: [224.0.0.251]}]
  - name: covering
    callers: [token:covering]
    destinations:
      allow: [{name: wide, cidrs: [0.0.0.0/0, "::/0"]}, {name: lab, cidrs: [10.9.0.0/24]}]
`)
	def := p.Default
	named := p.For(Identity{ID: "token:named", Token: "named"})
	covering := p.For(Identity{ID: "token:covering", Token: "covering"})
	for _, tc := range []struct {
		set   *RuleSet
		dst   string
		bcast bool   // the agent knows it as a subnet broadcast (CheckBroadcast)
		rule  string // "" allowed
		what  string // in the message
	}{
		{def, "0.0.0.0:80", false, "no loopback", "destination 0.0.0.0:80 (the kernel sends it to 127.0.0.1:80)"},
		{def, "[::]:80", false, "no loopback", "destination [::]:80 (the kernel sends it to [::1]:80)"},
		{def, "[::ffff:0.0.0.0]:80", false, "no loopback", "(the kernel sends it to 127.0.0.1:80)"},
		{def, "[::ffff:127.0.0.1]:80", false, "no loopback", "destination 127.0.0.1:80"},
		{def, "10.9.0.8:80", false, "", ""},
		{def, "10.9.0.7:80", false, "no victim", ""},
		{def, "255.255.255.255:9000", false, "destinations.allow", "broadcast destination 255.255.255.255:9000"},
		{def, "10.9.0.255:9000", true, "destinations.allow", "broadcast destination 10.9.0.255:9000"},
		{def, "224.0.0.1:9000", false, "destinations.allow", "multicast destination 224.0.0.1:9000"},
		{def, "[ff02::1]:9000", false, "destinations.allow", "multicast destination [ff02::1]:9000"},
		{def, "[::ffff:224.0.0.1]:9000", false, "destinations.allow", "multicast"},
		{covering, "10.9.0.255:9000", true, "destinations.allow", "a broadcast destination reaches every host"},
		{covering, "10.9.0.255:9000", false, "", ""}, // not a broadcast address here: unicast
		{covering, "224.0.0.1:9000", false, "destinations.allow", ""},
		{covering, "255.255.255.255:1", false, "destinations.allow", ""},
		{named, "10.9.0.255:9000", true, "", ""},
		{named, "10.9.0.255:9001", true, "destinations.allow", ""}, // the naming rule's ports
		{named, "10.9.1.255:9000", true, "destinations.allow", ""},
		{named, "255.255.255.255:7", false, "", ""},
		{named, "224.0.0.1:7", false, "", ""},
		{named, "239.1.2.3:7", false, "", ""},
		{named, "224.0.0.251:5353", false, "no 224.0.0.251", "multicast destination 224.0.0.251:5353"},
		{named, "[ff02::1]:7", false, "", ""},
		{named, "[ff02::2]:7", false, "destinations.allow", ""},
		{named, "0.0.0.0:7", false, "", ""}, // loopback is not denied in this set
	} {
		ap := netip.MustParseAddrPort(tc.dst)
		var err error
		if tc.bcast {
			err = tc.set.CheckBroadcast(ap)
		} else {
			err = tc.set.CheckDestination(ap)
		}
		if got := ruleOf(err); got != tc.rule {
			t.Errorf("%s %s (broadcast %v): rule %q, want %q (%v)", tc.set.Name, tc.dst, tc.bcast, got, tc.rule, err)
		}
		if tc.what != "" && (err == nil || !strings.Contains(err.Error(), tc.what)) {
			t.Errorf("%s %s: error %v, want it to say %q", tc.set.Name, tc.dst, err, tc.what)
		}
	}
	for _, tc := range []struct {
		set  *RuleSet
		addr string
		want bool
	}{
		{def, "255.255.255.255", false},
		{covering, "10.9.0.255", false},
		{named, "10.9.0.255", true},
		{named, "255.255.255.255", true},
		{named, "10.9.0.254", false},
		{named, "224.1.1.1", true},
		{covering, "224.1.1.1", false},
	} {
		if got := tc.set.NamesDestination(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("%s NamesDestination(%s) = %v, want %v", tc.set.Name, tc.addr, got, tc.want)
		}
	}
}

func TestWhere(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"0.0.0.0:1":          "127.0.0.1:1",
		"[::]:2":             "[::1]:2",
		"[::ffff:0.0.0.0]:3": "127.0.0.1:3",
		"[fe80::1%eth0]:4":   "[fe80::1]:4",
		"10.0.0.1:5":         "10.0.0.1:5",
	} {
		if got := Where(netip.MustParseAddrPort(in)).String(); got != want {
			t.Errorf("Where(%s) = %s, want %s", in, got, want)
		}
	}
}
