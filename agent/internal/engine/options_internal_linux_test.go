package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

func ptrOf[T any](v T) *T { return &v }

// checkOptions: each option's scope, the before-bind options, both ends of every range, and
// the policy before the value.
func TestCheckOptions(t *testing.T) {
	lax := &policy.RuleSet{Name: "lax", SocketOptions: contract.GuardedOptions()}
	strict := &policy.RuleSet{Name: "strict"}
	sec := func(n int) *time.Duration { return ptrOf(time.Duration(n) * time.Second) }
	for _, tc := range []struct {
		name    string
		o       Options
		network string
		open    opening
		set     *policy.RuleSet
		reason  string // "" = accepted
		words   string
	}{
		{"ttl 1", Options{TTL: ptrOf[uint32](1)}, "tcp", true, lax, "", ""},
		{"ttl 255", Options{TTL: ptrOf[uint32](255)}, "udp6", false, lax, "", ""},
		{"ttl 0", Options{TTL: ptrOf[uint32](0)}, "tcp", true, lax, contract.ReasonInvalidArgument, "ttl 0 out of range: give 1 to 255"},
		{"ttl 256", Options{TTL: ptrOf[uint32](256)}, "tcp", true, lax, contract.ReasonInvalidArgument, "ttl 256 out of range"},
		{"tos 0", Options{TOS: ptrOf[uint32](0)}, "udp", true, lax, "", ""},
		{"tos 255", Options{TOS: ptrOf[uint32](255)}, "udp", true, lax, "", ""},
		{"tos 256", Options{TOS: ptrOf[uint32](256)}, "udp", true, lax, contract.ReasonInvalidArgument, "tos 256"},
		{"tos strict", Options{TOS: ptrOf[uint32](1)}, "udp", true, strict, contract.ReasonPolicyDenied, "socket option tos"},
		{"buffer 1", Options{RecvBuffer: ptrOf[uint32](1)}, "unixgram", true, strict, "", ""},
		{"buffer max", Options{SendBuffer: ptrOf[uint32](maxSockBuffer)}, "unix", true, strict, "", ""},
		{"buffer over", Options{SendBuffer: ptrOf[uint32](maxSockBuffer + 1)}, "tcp", true, strict, contract.ReasonInvalidArgument, "send_buffer 268435457"},
		{"mss 88", Options{MaxSegment: ptrOf[uint32](88)}, "tcp4", true, strict, "", ""},
		{"mss 65535", Options{MaxSegment: ptrOf[uint32](65535)}, "tcp4", true, strict, "", ""},
		{"mss 65536", Options{MaxSegment: ptrOf[uint32](65536)}, "tcp4", true, strict, contract.ReasonInvalidArgument, "max_segment 65536"},
		{"mss on udp", Options{MaxSegment: ptrOf[uint32](1000)}, "udp", true, strict, contract.ReasonUnsupportedOption, "max_segment is not supported on a udp socket: it applies to TCP sockets"},
		{"mcast ttl 0", Options{MulticastTTL: ptrOf[uint32](0)}, "udp4", true, strict, "", ""},
		{"mcast on tcp", Options{MulticastLoop: ptrOf(true)}, "tcp", true, strict, contract.ReasonUnsupportedOption, "UDP sockets"},
		{"ttl on unix", Options{TTL: ptrOf[uint32](5)}, "unix", true, strict, contract.ReasonUnsupportedOption, "TCP and UDP sockets"},
		{"reuse open", Options{ReuseAddress: ptrOf(true)}, "tcp", false, strict, contract.ReasonUnsupportedOption, "only before the socket binds"},
		{"reuse opening", Options{ReuseAddress: ptrOf(true)}, "tcp", true, strict, "", ""},
		{"linger 0", Options{Linger: sec(0)}, "tcp", true, strict, "", ""},
		{"linger 1h", Options{Linger: ptrOf(maxLinger)}, "tcp", true, strict, "", ""},
		{"linger over", Options{Linger: ptrOf(maxLinger + time.Second)}, "tcp", true, strict, contract.ReasonInvalidArgument, "linger 1h0m1s"},
		{"linger off", Options{Linger: sec(-1)}, "tcp", true, strict, "", ""},
		{"linger fraction", Options{Linger: ptrOf(1500 * time.Millisecond)}, "tcp", true, strict, contract.ReasonInvalidArgument, "whole seconds"},
		{"keepalive 1s", Options{Keepalive: &Keepalive{Idle: sec(1), Interval: sec(maxKeepaliveSec)}}, "tcp", true, strict, "", ""},
		{"keepalive idle 0", Options{Keepalive: &Keepalive{Idle: sec(0)}}, "tcp", true, strict, contract.ReasonInvalidArgument, "keepalive_idle 0s"},
		{"keepalive interval over", Options{Keepalive: &Keepalive{Interval: sec(maxKeepaliveSec + 1)}}, "tcp", true, strict, contract.ReasonInvalidArgument, "keepalive_interval"},
		{"keepalive count 1", Options{Keepalive: &Keepalive{Count: ptrOf[uint32](1)}}, "tcp", true, strict, "", ""},
		{"keepalive count 127", Options{Keepalive: &Keepalive{Count: ptrOf[uint32](127)}}, "tcp", true, strict, "", ""},
		{"keepalive count 0", Options{Keepalive: &Keepalive{Count: ptrOf[uint32](0)}}, "tcp", true, strict, contract.ReasonInvalidArgument, "keepalive_count 0"},
		{"congestion reno", Options{Congestion: ptrOf("reno")}, "tcp", true, strict, "", ""},
		{"congestion unknown", Options{Congestion: ptrOf("nope")}, "tcp", true, strict, contract.ReasonInvalidArgument, "congestion \"nope\""},
		{"device lo", Options{BindToDevice: ptrOf("lo")}, "tcp", true, lax, "", ""},
		{"device none", Options{BindToDevice: ptrOf("")}, "tcp", true, lax, "", ""},
		{"device missing", Options{BindToDevice: ptrOf("nope0")}, "tcp", true, lax, contract.ReasonInvalidArgument, "no such interface"},
		{"device strict", Options{BindToDevice: ptrOf("nope0")}, "tcp", true, strict, contract.ReasonPolicyDenied, "bind_to_device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkOptions(&tc.o, tc.set, tc.network, tc.open)
			if got := reasonOrEmpty(err); got != tc.reason || (err != nil && !strings.Contains(err.Error(), tc.words)) {
				t.Errorf("%v (reason %q); want reason %q and %q", err, got, tc.reason, tc.words)
			}
		})
	}
	if err := checkOptions(nil, strict, "tcp", false); err != nil {
		t.Errorf("no options: %v", err)
	}
}

func reasonOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return Reason(err)
}

// The kernel's refusals name the option with the reason of the errno.
func TestKernelOptErr(t *testing.T) {
	for _, tc := range []struct {
		err    error
		reason string
	}{
		{syscall.ENOPROTOOPT, contract.ReasonUnsupportedOption},
		{syscall.EOPNOTSUPP, contract.ReasonUnsupportedOption},
		{syscall.EINVAL, contract.ReasonInvalidArgument},
		{syscall.EPERM, contract.ReasonAccessDenied},
		{errors.New("other"), contract.ReasonOSError},
	} {
		err := kernelOptErr("ttl", tc.err)
		if Reason(err) != tc.reason || Metadata(err)["option"] != "ttl" || !strings.HasPrefix(err.Error(), "socket option ttl: ") {
			t.Errorf("%v: reason %s metadata %v message %q; want %s, option ttl", tc.err, Reason(err), Metadata(err), err, tc.reason)
		}
	}
}

// split puts no_delay and keepalive after the connect, everything else before; no_delay true
// is left to Go, which sets it on every TCP connection.
func TestSplit(t *testing.T) {
	if b, a := (*Options)(nil).split(); b != nil || a != nil {
		t.Errorf("nil: %v %v", b, a)
	}
	o := &Options{NoDelay: ptrOf(false), Keepalive: &Keepalive{}, TTL: ptrOf[uint32](3)}
	b, a := o.split()
	if b.NoDelay != nil || b.Keepalive != nil || b.TTL == nil || a.NoDelay == nil || *a.NoDelay || a.Keepalive == nil || a.TTL != nil {
		t.Errorf("before %+v after %+v", b, a)
	}
	if _, a := (&Options{NoDelay: ptrOf(true)}).split(); a.NoDelay != nil {
		t.Errorf("no_delay true is set again after the connect: %+v", a)
	}
}

// keepaliveConfig: keepalive turned on goes to Go's Dialer, a field not given as -1 (leave
// the kernel's); off or not said is not Go's to set.
func TestKeepaliveConfig(t *testing.T) {
	cfg, ok := (&Keepalive{Enabled: ptrOf(true), Idle: ptrOf(7 * time.Second), Interval: ptrOf(4 * time.Second), Count: ptrOf[uint32](5)}).keepaliveConfig()
	if want := (net.KeepAliveConfig{Enable: true, Idle: 7 * time.Second, Interval: 4 * time.Second, Count: 5}); !ok || cfg != want {
		t.Errorf("all given: %+v %v, want %+v", cfg, ok, want)
	}
	cfg, ok = (&Keepalive{Enabled: ptrOf(true)}).keepaliveConfig()
	if want := (net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}); !ok || cfg != want {
		t.Errorf("only enabled: %+v %v, want %+v", cfg, ok, want)
	}
	for _, k := range []*Keepalive{nil, {}, {Enabled: ptrOf(false), Idle: ptrOf(time.Second)}, {Idle: ptrOf(time.Second)}} {
		if _, ok := k.keepaliveConfig(); ok {
			t.Errorf("%+v goes to Go's Dialer", k)
		}
	}
}

// A Dial's options read back as given, on IPv4 and IPv6 (the TTL is the hop limit there): no
// field of keepalive left unsaid is changed from the kernel's (idle 7200 s, interval 75 s,
// count 9 by default), keepalive off keeps the idle time given, and no_delay false holds.
func TestDialReadBack(t *testing.T) {
	tb, ctx := optTable(t)
	def := readKernelKeepalive(t)
	for _, tc := range []struct {
		network, addr string
		o             Options
		want          func(o *Options) bool
	}{
		{"tcp", "127.0.0.1", Options{TTL: ptrOf[uint32](9), NoDelay: ptrOf(true), Keepalive: &Keepalive{Enabled: ptrOf(true), Idle: ptrOf(7 * time.Second), Interval: ptrOf(4 * time.Second), Count: ptrOf[uint32](5)}},
			func(o *Options) bool {
				k := o.Keepalive
				return *o.TTL == 9 && *o.NoDelay && *k.Enabled && *k.Idle == 7*time.Second && *k.Interval == 4*time.Second && *k.Count == 5
			}},
		{"tcp6", "::1", Options{TTL: ptrOf[uint32](11), NoDelay: ptrOf(false), Keepalive: &Keepalive{Enabled: ptrOf(true), Idle: ptrOf(9 * time.Second)}},
			func(o *Options) bool {
				k := o.Keepalive
				return *o.TTL == 11 && !*o.NoDelay && *k.Enabled && *k.Idle == 9*time.Second && *k.Interval == *def.Interval && *k.Count == *def.Count
			}},
		{"tcp", "127.0.0.1", Options{Keepalive: &Keepalive{Enabled: ptrOf(false), Idle: ptrOf(11 * time.Second)}},
			func(o *Options) bool { return !*o.Keepalive.Enabled && *o.Keepalive.Idle == 11*time.Second }},
	} {
		ln, err := net.Listen(tc.network, net.JoinHostPort(tc.addr, "0"))
		if err != nil {
			t.Fatal(err)
		}
		in, err := tb.Dial(ctx, tc.network, ln.Addr().String(), "", time.Second, "", &tc.o)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tb.GetFor(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !tc.want(got.Options) {
			t.Errorf("%s dial with %+v (keepalive %+v): read back %+v keepalive %+v", tc.network, tc.o, tc.o.Keepalive, got.Options, got.Options.Keepalive)
		}
		if _, err := tb.Close(ctx, in.ID); err != nil {
			t.Fatal(err)
		}
		_ = ln.Close()
	}
}

// readKernelKeepalive reads the keepalive a fresh TCP socket has from the kernel.
func readKernelKeepalive(t *testing.T) *Keepalive {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	out := &Options{}
	readOption(fd, unix.AF_INET, contract.OptKeepalive, out)
	if out.Keepalive == nil || out.Keepalive.Interval == nil || out.Keepalive.Count == nil {
		t.Fatalf("the kernel's keepalive reads back %+v", out.Keepalive)
	}
	return out.Keepalive
}

// parseGroup: GROUP, GROUP%IFACE, SOURCE@GROUP, families, interfaces.
func TestParseGroup(t *testing.T) {
	for _, tc := range []struct {
		spec, def string
		v6        bool
		want      string // membership.String(), or the error's words
		ok        bool
	}{
		{"239.1.2.3", "", false, "239.1.2.3", true},
		{"239.1.2.3%lo", "", false, "239.1.2.3%lo", true},
		{"239.1.2.3", "lo", false, "239.1.2.3%lo", true},
		{"10.0.0.1@232.1.1.1%lo", "", false, "10.0.0.1@232.1.1.1%lo", true},
		{"ff15::1", "", true, "ff15::1", true},
		{"::ffff:239.1.2.3", "", false, "239.1.2.3", true},
		{"ff15::1", "", false, "not of the socket's address family", false},
		{"239.1.2.3", "", true, "not of the socket's address family", false},
		{"::1@ff15::1", "", false, "not of the socket's address family", false},
		{"10.0.0.1", "", false, "not a multicast address", false},
		{"nonsense", "", false, "not a multicast address", false},
		{"x@239.1.2.3", "", false, "multicast source \"x\"", false},
		{"239.1.2.3%nope0", "", false, "no interface \"nope0\"", false},
	} {
		m, err := parseGroup(tc.spec, tc.def, tc.v6)
		switch {
		case tc.ok && (err != nil || m.String() != tc.want):
			t.Errorf("%s: %v %v, want %s", tc.spec, m, err, tc.want)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", tc.spec, err, tc.want)
		case tc.ok && (m.ifi != nil) != strings.Contains(tc.want, "%"):
			t.Errorf("%s: interface %v", tc.spec, m.ifi)
		}
	}
}

// optTable is a table whose policy allows every guarded option and the groups 239.0.0.0/8,
// and a caller's context; the table must be empty at the end.
func optTable(t *testing.T) (*Table, context.Context) {
	t.Helper()
	pol, err := policy.Parse("p.yaml", []byte(`default:
  socket_options: [reuse_port, broadcast, tos, bind_to_device]
  destinations: {allow: [{name: any}, {name: g, cidrs: [239.0.0.0/8]}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	tb := newTable(time.Second, 1<<20, pol)
	t.Cleanup(func() {
		if n := tb.Len(); n != 0 {
			t.Errorf("%d sockets left", n)
		}
		tb.Stop()
	})
	return tb, WithCaller(context.Background(), Caller{ID: "t"})
}

// Every option set on a real socket reads back as set; join and leave keep the list.
func TestApplyAndReadBack(t *testing.T) {
	tb, ctx := optTable(t)
	in, err := tb.Bind(ctx, "udp4", "127.0.0.1:0", "", &Options{TTL: ptrOf[uint32](9), TOS: ptrOf[uint32](0x20), MulticastTTL: ptrOf[uint32](3),
		MulticastLoop: ptrOf(false), Broadcast: ptrOf(true), DontFragment: ptrOf(true), ReusePort: ptrOf(true)},
		&Multicast{Groups: []string{"239.1.1.1", "239.1.1.2%lo"}, Interface: "lo"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tb.GetFor(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	o := got.Options
	if *o.TTL != 9 || *o.TOS != 0x20 || *o.MulticastTTL != 3 || *o.MulticastLoop || !*o.Broadcast || !*o.DontFragment || !*o.ReusePort || o.NoDelay != nil {
		t.Errorf("read back %+v", o)
	}
	if strings.Join(got.Groups, " ") != "239.1.1.1%lo 239.1.1.2%lo" {
		t.Errorf("groups %v", got.Groups)
	}
	after, err := tb.SetOptions(ctx, in.ID, &Options{TTL: ptrOf[uint32](10)}, []string{"239.1.1.3"}, []string{"239.1.1.1%lo"})
	if err != nil {
		t.Fatal(err)
	}
	if *after.Options.TTL != 10 || strings.Join(after.Groups, " ") != "239.1.1.2%lo 239.1.1.3" {
		t.Errorf("after SetOptions: ttl %d groups %v", *after.Options.TTL, after.Groups)
	}
	if _, err := tb.SetOptions(ctx, in.ID, nil, []string{"239.1.1.3"}, nil); err == nil || !strings.Contains(err.Error(), "a member already") {
		t.Errorf("joining twice: %v", err)
	}
	if _, err := tb.Close(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
}

// A socket joins at most maxGroups groups, at Bind and later; an interface must exist.
func TestGroupBounds(t *testing.T) {
	tb, ctx := optTable(t)
	many := make([]string, maxGroups+1)
	for i := range many {
		many[i] = fmt.Sprintf("239.2.0.%d", i+1)
	}
	if _, err := tb.Bind(ctx, "udp4", "127.0.0.1:0", "", nil, &Multicast{Groups: many}); err == nil || !strings.Contains(err.Error(), "multicast: 21 groups asked for; a socket may join at most 20") {
		t.Errorf("21 groups: %v", err)
	}
	if _, err := tb.Bind(ctx, "udp4", "127.0.0.1:0", "", nil, &Multicast{Interface: "nope0"}); err == nil || !strings.Contains(err.Error(), `multicast interface "nope0"`) {
		t.Errorf("no such interface: %v", err)
	}
	full, err := tb.Bind(ctx, "udp4", "127.0.0.1:0", "", nil, &Multicast{Groups: many[:maxGroups]})
	if err != nil || len(full.Groups) != maxGroups {
		t.Fatalf("20 groups: %v, %d joined", err, len(full.Groups))
	}
	if _, err := tb.SetOptions(ctx, full.ID, nil, many[maxGroups:], nil); err == nil || !strings.Contains(err.Error(), "in 20 groups already") {
		t.Errorf("a 21st join: %v", err)
	}
	if _, err := tb.Close(ctx, full.ID); err != nil {
		t.Fatal(err)
	}
}

// TCP options, read back from a listener.
func TestTCPReadBack(t *testing.T) {
	tb, ctx := optTable(t)
	ln, err := tb.Listen(ctx, "tcp4", "127.0.0.1:0", "", &Options{Linger: ptrOf(3 * time.Second), NoDelay: ptrOf(true), Congestion: ptrOf("reno"),
		BindToDevice: ptrOf("lo"), Keepalive: &Keepalive{Enabled: ptrOf(true), Idle: ptrOf(7 * time.Second), Interval: ptrOf(4 * time.Second), Count: ptrOf[uint32](5)}})
	if err != nil {
		t.Fatal(err)
	}
	lo, err := tb.GetFor(ctx, ln.ID)
	if err != nil {
		t.Fatal(err)
	}
	k := lo.Options.Keepalive
	if *lo.Options.Linger != 3*time.Second || !*lo.Options.NoDelay || *lo.Options.Congestion != "reno" || *lo.Options.BindToDevice != "lo" ||
		!*k.Enabled || *k.Idle != 7*time.Second || *k.Interval != 4*time.Second || *k.Count != 5 || lo.Options.Broadcast != nil {
		t.Errorf("listener read back %+v keepalive %+v", lo.Options, k)
	}
	if _, err := tb.Close(ctx, ln.ID); err != nil {
		t.Fatal(err)
	}
}
