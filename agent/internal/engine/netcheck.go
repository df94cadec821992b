package engine

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/unixpath"
	"github.com/sockagent/sockagent/agent/policy"
)

// checkNetwork accepts the networks op takes (contract.Networks).
func checkNetwork(op contract.Op, network string) error {
	if contract.NetworkAllowed(op, network) {
		return nil
	}
	return badArg(contract.ReasonInvalidNetwork, "%s: network %q not allowed here; use one of %s", op, network, strings.Join(contract.Networks(op), ", "))
}

// checkAddress validates an address before any policy check or system call: it must not be
// empty, and on a UNIX network it must be a valid path (see checkUnixPath).
func checkAddress(op, network, address string) error {
	if address == "" {
		return badArg(contract.ReasonInvalidAddress, "%s: address is empty; give host:port (\"127.0.0.1:0\", \"[::1]:8080\") or a UNIX socket path", op)
	}
	if contract.IsUnix(network) {
		return checkUnixPath(op, address)
	}
	return nil
}

// checkUnixPath accepts an absolute path without ".." elements, or an abstract name ("@name").
// A relative path would depend on the agent's working directory, and ".." could walk out of
// the directories a policy allows, so both are refused.
func checkUnixPath(op, p string) error {
	switch {
	case strings.HasPrefix(p, "@"):
		return nil
	case strings.ContainsRune(p, 0):
		return badArg(contract.ReasonInvalidAddress, "%s: UNIX socket path %q contains a NUL byte", op, p)
	case !filepath.IsAbs(p):
		return badArg(contract.ReasonInvalidAddress, "%s: UNIX socket path %q is relative; give an absolute path (a relative one would depend on the agent's working directory)", op, p)
	case slices.Contains(strings.Split(filepath.ToSlash(p), "/"), ".."):
		return badArg(contract.ReasonInvalidAddress, "%s: UNIX socket path %q contains \"..\"; give the path without it (\"..\" is refused so no path escapes the directories the policy allows)", op, p)
	case filepath.Clean(p) == string(filepath.Separator):
		return badArg(contract.ReasonInvalidAddress, "%s: UNIX socket path %q is the root directory; give the path of a socket file", op, p)
	}
	return nil
}

// control is the Control hook of a net.Dialer or net.ListenConfig: it sees the address the
// socket is about to bind (local) or connect to, after name resolution, and asks the policy.
// What the kernel is given is what the policy judges (checkDest), so a name that resolves
// somewhere unexpected gains nothing. A local port 0 is judged later, by checkBound, once it
// is known. A UNIX path was judged when unixpath opened it (the kernel gets the handle,
// unixsock.go); anything else on a UNIX network (an abstract name; a path where unixpath
// cannot open one) is judged here. On a UDP socket it also decides SO_BROADCAST, which Go
// turns on for every UDP socket: a connected one keeps it only to reach a broadcast address
// the policy named, a bound one only when the caller's rule set names some broadcast address.
func control(set *policy.RuleSet, local bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, rc syscall.RawConn) error {
		if contract.IsUnix(network) {
			if unixpath.Opened(address) {
				return nil
			}
			return set.CheckUnixPath(address)
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("policy: cannot check address %q: %w", address, err)
		}
		if !local {
			if err := checkDest(set, ap); err != nil {
				return err
			}
		} else if ap.Port() != 0 {
			if err := set.CheckLocal(ap); err != nil {
				return err
			}
		}
		if !strings.HasPrefix(network, "udp") || rc == nil {
			return nil
		}
		broadcast := allowsBroadcast(set)
		if !local {
			broadcast = isBroadcast(policy.Where(ap).Addr())
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = setBroadcast(fd, broadcast) }); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set SO_BROADCAST: %w", serr)
		}
		return nil
	}
}

// checkDest asks the policy about a destination where the kernel sends it: the unspecified
// address as loopback (policy.Where), and a broadcast address of one of the host's subnets as
// a broadcast (policy.RuleSet.CheckBroadcast), which only a rule naming it allows.
func checkDest(set *policy.RuleSet, ap netip.AddrPort) error {
	if isBroadcast(policy.Where(ap).Addr()) {
		return set.CheckBroadcast(ap)
	}
	return set.CheckDestination(ap)
}

// isBroadcast reports whether a is 255.255.255.255 or the broadcast address of a subnet of
// one of the host's interfaces (hostNets, at most hostNetMaxAge old).
func isBroadcast(a netip.Addr) bool {
	a = a.Unmap()
	if !a.Is4() {
		return false
	}
	if a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return true
	}
	return hostNets().broadcast[a]
}

// allowsBroadcast reports whether set names some broadcast address the host has, so that a
// bound UDP socket of its caller may keep SO_BROADCAST.
func allowsBroadcast(set *policy.RuleSet) bool {
	if set.NamesDestination(netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		return true
	}
	for a := range hostNets().broadcast {
		if set.NamesDestination(a) {
			return true
		}
	}
	return false
}

// hostNetMaxAge bounds how old the host's addresses may be when the agent judges a
// destination; interfaces rarely change, and reading them takes netlink round trips.
const hostNetMaxAge = time.Second

// hostNet is what the agent knows of its host's interfaces at one time.
type hostNet struct {
	at        time.Time
	local     map[netip.Addr]bool // the interfaces' addresses, unmapped, without zones
	broadcast map[netip.Addr]bool // the IPv4 subnets' broadcast addresses
}

var (
	hostNetMu  sync.Mutex
	hostNetNow atomic.Pointer[hostNet]
)

// hostNets returns the host's addresses, read again when older than hostNetMaxAge. A host
// whose interfaces cannot be read has none: the kernel still refuses broadcasts on sockets
// without SO_BROADCAST.
func hostNets() *hostNet {
	if h := hostNetNow.Load(); h != nil && time.Since(h.at) < hostNetMaxAge {
		return h
	}
	hostNetMu.Lock()
	defer hostNetMu.Unlock()
	if h := hostNetNow.Load(); h != nil && time.Since(h.at) < hostNetMaxAge {
		return h
	}
	h := &hostNet{at: time.Now(), local: map[netip.Addr]bool{}, broadcast: map[netip.Addr]bool{}}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		h.local[ip] = true
		ones, bits := ipn.Mask.Size()
		if !ip.Is4() || bits != 32 || ones >= 31 {
			continue // /31 and /32 have no broadcast address
		}
		b := ip.As4()
		host := ^uint32(0) >> ones
		for i := range 4 {
			b[i] |= byte(host >> (24 - 8*i))
		}
		h.broadcast[netip.AddrFrom4(b)] = true
	}
	hostNetNow.Store(h)
	return h
}

// checkBound asks the policy about the address a socket was bound to, with the port the OS
// picked for port 0. UNIX addresses were judged by control.
func checkBound(set *policy.RuleSet, a net.Addr) error {
	if ap, ok := addrPort(a); ok {
		return set.CheckLocal(ap)
	}
	return nil
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort(), true
	case *net.UDPAddr:
		return a.AddrPort(), true
	}
	return netip.AddrPort{}, false
}

// ipv4Wildcard binds "tcp"/"udp" on 0.0.0.0 as tcp4/udp4, as a textbook AF_INET server does:
// Go would otherwise open a dual-stack [::] socket and report [::] as the local address.
func ipv4Wildcard(network, address string) string {
	if host, _, err := net.SplitHostPort(address); err == nil && host == "0.0.0.0" && (network == "tcp" || network == "udp") {
		return network + "4"
	}
	return network
}

func resolveLocal(network, address string) (net.Addr, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		return net.ResolveTCPAddr(network, address)
	case "udp", "udp4", "udp6":
		return net.ResolveUDPAddr(network, address)
	default:
		return net.ResolveUnixAddr(network, address)
	}
}

// destination resolves the destination of a datagram (SendTo, Attach on an unconnected
// socket) and asks the policy about it. A UNIX path is opened (unixsock.go): the address
// returned names the file opened, and done closes it once the datagram is written.
func destination(set *policy.RuleSet, network, address string) (dst net.Addr, done func(), err error) {
	done = func() {}
	if isUnixPath(network, address) {
		tgt, err := openUnixTarget(set, network, address)
		if err != nil {
			return nil, done, err
		}
		return &net.UnixAddr{Name: tgt.Addr, Net: network}, func() { _ = tgt.Close() }, nil
	}
	if dst, err = resolveLocal(network, address); err != nil {
		return nil, done, err
	}
	if ap, ok := addrPort(dst); ok {
		err = checkDest(set, ap)
	} else {
		err = set.CheckUnixPath(address)
	}
	if err != nil {
		return nil, done, err
	}
	return dst, done, nil
}

// dialer is the net.Dialer of a caller's outgoing sockets (Dial, Probe, Throughput): its
// Control hook asks the policy about the resolved destination, and a local address, if given,
// is resolved and judged (an abstract name, or an IP address with a port other than 0) before
// any socket exists; a port 0 is judged once bound (checkBound). A local UNIX path is left to
// Dial, which binds it through its directory handle (dialUnixAware).
func dialer(set *policy.RuleSet, network, local string, timeout time.Duration) (net.Dialer, error) {
	d := net.Dialer{Timeout: timeout, Control: control(set, false)}
	if local == "" || isUnixPath(network, local) {
		return d, nil
	}
	la, err := resolveLocal(network, local)
	if err != nil {
		return d, fmt.Errorf("local address %q: %w", local, err)
	}
	if contract.IsUnix(network) {
		err = set.CheckUnixPath(local)
	} else if ap, ok := addrPort(la); ok && ap.Port() != 0 {
		err = set.CheckLocal(ap)
	}
	if err != nil {
		return d, err
	}
	d.LocalAddr = la
	return d, nil
}

// precheckLocal refuses, before any budget is taken, a local address that is not host:port, or
// an IP address with a port the policy denies as written: a refused request costs no socket
// slot. The Control hook still judges
// what the kernel is given, and checkBound a port 0 once chosen.
func precheckLocal(set *policy.RuleSet, network, address string) error {
	if contract.IsUnix(network) {
		return nil
	}
	if _, _, err := net.SplitHostPort(address); err != nil {
		return err // not host:port: refused as the bind would refuse it, before any budget
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil || ap.Port() == 0 {
		return nil // a name, or port 0: judged once resolved and bound
	}
	return set.CheckLocal(ap)
}
