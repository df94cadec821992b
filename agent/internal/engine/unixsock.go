package engine

import (
	"errors"
	"net"
	"os"
	"strings"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/unixpath"
	"github.com/sockagent/sockagent/agent/policy"
)

// A caller's UNIX path is resolved once, by unixpath, and the policy judges what was opened;
// the kernel is then given the open file, never the path again (unixpath's package comment
// says how). Abstract names ("@name") have no file and are judged and used by name.

// isUnixPath reports whether address on network is a UNIX path (not an abstract name).
func isUnixPath(network, address string) bool {
	return contract.IsUnix(network) && address != "" && !strings.HasPrefix(address, "@")
}

// The policy judges a UNIX path twice: as the caller wrote it before anything is opened (so a
// refused path answers POLICY_DENIED, never whether something exists there), and as opened,
// symlinks resolved by the walk: the only judgement the kernel's later use is bound to.

// openUnixBind opens the directory of a caller's UNIX path for a bind (Listen, Bind, Dial's
// local_address) and asks the policy about it; nil for anything but a UNIX path.
func openUnixBind(set *policy.RuleSet, network, address string) (*unixpath.Bound, error) {
	if !isUnixPath(network, address) {
		return nil, nil
	}
	if err := set.CheckUnixPath(address); err != nil {
		return nil, err
	}
	b, err := unixpath.OpenBind(address)
	if err != nil {
		return nil, err
	}
	if err := set.CheckUnixPath(b.Real); err != nil {
		_, _ = b.Close()
		return nil, err
	}
	return b, nil
}

// openUnixTarget opens the file of a caller's UNIX path for connect or sendto (Dial, SendTo,
// Attach) and asks the policy about it; nil for anything but a UNIX path. The caller closes it
// once the call that uses Addr is done.
func openUnixTarget(set *policy.RuleSet, network, address string) (*unixpath.Target, error) {
	if !isUnixPath(network, address) {
		return nil, nil
	}
	if err := set.CheckUnixPath(address); err != nil {
		return nil, err
	}
	tgt, err := unixpath.OpenTarget(address)
	if err != nil {
		return nil, err
	}
	if err := set.CheckUnixPath(tgt.Real); err != nil {
		_ = tgt.Close()
		return nil, err
	}
	return tgt, nil
}

// kernelAddr is the address to give the kernel: the handle unixpath opened, else the address.
func kernelAddr(address string, b *unixpath.Bound, tgt *unixpath.Target) string {
	switch {
	case b != nil:
		return b.Addr
	case tgt != nil:
		return tgt.Addr
	}
	return address
}

// callerAddrs puts the caller's paths back into a net.OpError that names the handles given to
// the kernel, so messages speak of what the caller asked for.
func callerAddrs(err error, network, local, remote string) error {
	var oe *net.OpError
	if !errors.As(err, &oe) || !contract.IsUnix(network) {
		return err
	}
	if oe.Source != nil && local != "" {
		oe.Source = &net.UnixAddr{Name: local, Net: network}
	}
	if oe.Addr != nil && remote != "" {
		oe.Addr = &net.UnixAddr{Name: remote, Net: network}
	}
	return err
}

// boundBeforeFailure reports whether a failed dial with a local address had bound it: only a
// failed connect proves it (an error at socket, setsockopt or bind means nothing was created,
// and a name that then exists is someone else's).
func boundBeforeFailure(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se) && se.Syscall == "connect"
}
