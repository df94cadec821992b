//go:build linux

package engine

import (
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockagent/sockagent/agent/contract"
)

// platformHas reports whether Linux has the option: all of them.
func platformHas(string) bool { return true }

// familyOf is the address family of a socket the network of a Control hook names ("tcp4",
// "udp6"...), or -1 when it does not say.
func familyOf(network string) int {
	switch {
	case strings.HasSuffix(network, "4"):
		return unix.AF_INET
	case strings.HasSuffix(network, "6"):
		return unix.AF_INET6
	}
	return -1
}

// sockFamily is the socket's address family (unix.AF_INET, AF_INET6, AF_UNIX).
func sockFamily(fd int) int {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return unix.AF_INET
	}
	return v
}

func isUnsupportedErrno(e syscall.Errno) bool {
	return e == unix.ENOPROTOOPT || e == unix.EOPNOTSUPP
}

func congestionAvailable() []string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ipOpt is an option with an IPv4 and an IPv6 form, chosen by the socket's family.
type ipOpt struct{ level4, opt4, level6, opt6 int }

func (o ipOpt) of(fam int) (level, opt int) {
	if fam == unix.AF_INET6 {
		return o.level6, o.opt6
	}
	return o.level4, o.opt4
}

var (
	ttlOpt       = ipOpt{unix.IPPROTO_IP, unix.IP_TTL, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS}
	tosOpt       = ipOpt{unix.IPPROTO_IP, unix.IP_TOS, unix.IPPROTO_IPV6, unix.IPV6_TCLASS}
	mtuOpt       = ipOpt{unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER}
	mcastTTLOpt  = ipOpt{unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS}
	mcastLoopOpt = ipOpt{unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP}
)

// intOpts are the options that are one int, by level and name (family-independent).
var intOpts = map[string][2]int{
	contract.OptReuseAddress: {unix.SOL_SOCKET, unix.SO_REUSEADDR},
	contract.OptReusePort:    {unix.SOL_SOCKET, unix.SO_REUSEPORT},
	contract.OptRecvBuffer:   {unix.SOL_SOCKET, unix.SO_RCVBUF},
	contract.OptSendBuffer:   {unix.SOL_SOCKET, unix.SO_SNDBUF},
	contract.OptBroadcast:    {unix.SOL_SOCKET, unix.SO_BROADCAST},
	contract.OptNoDelay:      {unix.IPPROTO_TCP, unix.TCP_NODELAY},
	contract.OptMaxSegment:   {unix.IPPROTO_TCP, unix.TCP_MAXSEG},
}

var familyOpts = map[string]ipOpt{
	contract.OptTTL: ttlOpt, contract.OptTOS: tosOpt, contract.OptMulticastTTL: mcastTTLOpt,
	contract.OptMulticastLoop: mcastLoopOpt,
}

// intValue is the int the kernel takes for one of intOpts or familyOpts.
func intValue(name string, o *Options) int {
	switch name {
	case contract.OptReuseAddress:
		return boolInt(*o.ReuseAddress)
	case contract.OptReusePort:
		return boolInt(*o.ReusePort)
	case contract.OptRecvBuffer:
		return int(*o.RecvBuffer)
	case contract.OptSendBuffer:
		return int(*o.SendBuffer)
	case contract.OptBroadcast:
		return boolInt(*o.Broadcast)
	case contract.OptNoDelay:
		return boolInt(*o.NoDelay)
	case contract.OptMaxSegment:
		return int(*o.MaxSegment)
	case contract.OptTTL:
		return int(*o.TTL)
	case contract.OptTOS:
		return int(*o.TOS)
	case contract.OptMulticastTTL:
		return int(*o.MulticastTTL)
	}
	return boolInt(*o.MulticastLoop)
}

// setOption sets the option name of o on fd, a socket of family fam.
func setOption(fd, fam int, name string, o *Options) error {
	if lo, ok := intOpts[name]; ok {
		return unix.SetsockoptInt(fd, lo[0], lo[1], intValue(name, o))
	}
	if io, ok := familyOpts[name]; ok {
		level, opt := io.of(fam)
		return unix.SetsockoptInt(fd, level, opt, intValue(name, o))
	}
	switch name {
	case contract.OptBindToDevice:
		return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, *o.BindToDevice)
	case contract.OptCongestion:
		return unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, *o.Congestion)
	case contract.OptDontFragment:
		level, opt := mtuOpt.of(fam)
		v := unix.IP_PMTUDISC_DONT
		if *o.DontFragment {
			v = unix.IP_PMTUDISC_DO // IPV6_PMTUDISC_DO has the same value
		}
		return unix.SetsockoptInt(fd, level, opt, v)
	case contract.OptLinger:
		l := &unix.Linger{}
		if *o.Linger >= 0 {
			l.Onoff, l.Linger = 1, int32(*o.Linger/time.Second)
		}
		return unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, l)
	}
	return setKeepalive(fd, o.Keepalive)
}

func setKeepalive(fd int, k *Keepalive) error {
	if k.Enabled != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, boolInt(*k.Enabled)); err != nil {
			return err
		}
	}
	if k.Idle != nil {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(*k.Idle/time.Second)); err != nil {
			return err
		}
	}
	if k.Interval != nil {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(*k.Interval/time.Second)); err != nil {
			return err
		}
	}
	if k.Count != nil {
		return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, int(*k.Count))
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// readOption reads the option name of fd into out; an option the kernel does not report is
// left nil.
func readOption(fd, fam int, name string, out *Options) {
	get := func(level, opt int) (int, bool) {
		v, err := unix.GetsockoptInt(fd, level, opt)
		return v, err == nil
	}
	if lo, ok := intOpts[name]; ok {
		if v, ok := get(lo[0], lo[1]); ok {
			storeInt(name, v, out)
		}
		return
	}
	if io, ok := familyOpts[name]; ok {
		if v, ok := get(io.of(fam)); ok {
			storeInt(name, v, out)
		}
		return
	}
	switch name {
	case contract.OptBindToDevice:
		if v, err := unix.GetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE); err == nil {
			out.BindToDevice = &v
		}
	case contract.OptCongestion:
		if v, err := unix.GetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION); err == nil {
			out.Congestion = &v
		}
	case contract.OptDontFragment:
		if v, ok := get(mtuOpt.of(fam)); ok {
			out.DontFragment = ptr(v == unix.IP_PMTUDISC_DO || v == unix.IP_PMTUDISC_PROBE)
		}
	case contract.OptLinger:
		if l, err := unix.GetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER); err == nil && l.Onoff != 0 {
			out.Linger = ptr(time.Duration(l.Linger) * time.Second)
		}
	case contract.OptKeepalive:
		out.Keepalive = readKeepalive(get)
	}
}

func readKeepalive(get func(level, opt int) (int, bool)) *Keepalive {
	k := &Keepalive{}
	if v, ok := get(unix.SOL_SOCKET, unix.SO_KEEPALIVE); ok {
		k.Enabled = ptr(v != 0)
	}
	if v, ok := get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE); ok {
		k.Idle = ptr(time.Duration(v) * time.Second)
	}
	if v, ok := get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL); ok {
		k.Interval = ptr(time.Duration(v) * time.Second)
	}
	if v, ok := get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT); ok {
		k.Count = ptr(uint32(v))
	}
	return k
}

func storeInt(name string, v int, out *Options) {
	u := ptr(uint32(max(v, 0)))
	b := ptr(v != 0)
	switch name {
	case contract.OptReuseAddress:
		out.ReuseAddress = b
	case contract.OptReusePort:
		out.ReusePort = b
	case contract.OptRecvBuffer:
		out.RecvBuffer = u
	case contract.OptSendBuffer:
		out.SendBuffer = u
	case contract.OptBroadcast:
		out.Broadcast = b
	case contract.OptNoDelay:
		out.NoDelay = b
	case contract.OptMaxSegment:
		out.MaxSegment = u
	case contract.OptTTL:
		out.TTL = u
	case contract.OptTOS:
		out.TOS = u
	case contract.OptMulticastTTL:
		out.MulticastTTL = u
	case contract.OptMulticastLoop:
		out.MulticastLoop = b
	}
}
