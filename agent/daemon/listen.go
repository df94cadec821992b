package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/sockagent/sockagent/agent/contract"
)

// Listen opens the control-plane listener on --listen: host:port, or unix:PATH (also
// unix:///PATH). A UNIX socket is created readable and writable by the agent's user alone
// (mode 0600), so other local users cannot connect; the default one's directory is created
// private (0700) or must already be. A UNIX socket file that no process answers on is removed
// first; one that answers belongs to a live agent and is left alone (an error).
func (s *Setup) Listen() (net.Listener, error) {
	addr := s.Config.Listen
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		path = strings.TrimPrefix(path, "//")
		if path == contract.DefaultAgentSocket() {
			if err := privateDir(filepath.Dir(path)); err != nil {
				return nil, err
			}
		}
		if err := removeStaleSocket(path); err != nil {
			return nil, err
		}
		return listenOwnerOnly(path)
	}
	return net.Listen("tcp", addr)
}

// DefaultSocketDir is the default --socket-dir: "sockets" beside the default control socket
// (/run/sockagent/sockets as root), so both live in the agent's private directory.
func DefaultSocketDir() string {
	return filepath.Join(filepath.Dir(contract.DefaultAgentSocket()), "sockets")
}

// MakeSocketDir creates --socket-dir private (mode 0700), or checks that an existing one is a
// directory of the agent's user that no one else may enter, and sets Agent.SocketDir to it.
// The default one's parent, the control socket's directory, is made private first. Call it
// before agent.New: a directory others could enter would let them put links or sockets where
// the policy sends callers.
func (s *Setup) MakeSocketDir() error {
	dir := filepath.Clean(s.Config.SocketDir)
	if dir == DefaultSocketDir() {
		if err := privateDir(filepath.Dir(dir)); err != nil {
			return err
		}
	}
	if err := privateDir(dir); err != nil {
		return fmt.Errorf("--socket-dir: %w", err)
	}
	s.Agent.SocketDir = dir
	return nil
}

// privateDir makes dir a directory only the agent's user may enter: created with mode 0700
// when missing; when present it must be a real directory (not a link) of this user that no
// one else may enter, else the agent refuses to serve there.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create the agent's directory %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("agent directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("agent directory %s is not a directory (a link or a file); remove it, or give --listen unix:PATH elsewhere", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("agent directory %s has mode %#o: other users could reach the agent's socket; chmod 700 it, or remove it so the agent creates it", dir, fi.Mode().Perm())
	}
	if uid, ok := ownerOf(fi); ok && uid != os.Geteuid() {
		return fmt.Errorf("agent directory %s belongs to uid %d, not to the agent's uid %d; remove it so the agent creates it", dir, uid, os.Geteuid())
	}
	return nil
}

// removeStaleSocket removes the socket file at path if nothing answers on it: a crashed
// agent's file would block the bind.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil // nothing there, or not a socket: the bind says what is wrong
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another process serves on this socket", path)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		_ = os.Remove(path)
	}
	return nil
}

// CheckBound refuses a listener on a non-loopback address without authentication, as Build
// does for addresses it can judge without resolving: a host name is judged here, by the
// address it resolved to.
func (s *Setup) CheckBound(bound net.Addr) error {
	c := s.Config
	if c.authenticated() || c.Insecure || isLoopback(bound) {
		return nil
	}
	return refusal(c.Listen+" ("+bound.String()+")", s.Agent.TLS != nil)
}

// Warn logs what the operator accepted that weakens the agent on bound: serving without
// authentication (--insecure), or tokens that cross the network in plaintext.
func (s *Setup) Warn(bound net.Addr) {
	c := s.Config
	switch {
	case !c.authenticated():
		if c.Insecure {
			s.Logger.Warn("--insecure: serving without authentication; anyone who can reach this address can open and drive sockets on this host", "addr", bound.String())
		}
	case s.Agent.TLS == nil && !isLoopback(bound):
		s.Logger.Warn("tokens travel in plaintext over the network; add --tls-cert and --tls-key", "addr", bound.String())
	}
}

// loopbackOnly reports whether a --listen address names loopback or a UNIX socket without
// resolving anything: unix:..., 127.0.0.0/8, ::1. A host name counts as loopback here and is
// judged once bound (CheckBound); "" (all interfaces), 0.0.0.0 and :: are not loopback.
func loopbackOnly(addr string) bool {
	if strings.HasPrefix(addr, "unix:") {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true // not an address: Listen fails and says so
	}
	if host == "" {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.WithZone("").Unmap().IsLoopback()
	}
	return true
}

// isLoopback reports whether a bound listener's address is a UNIX socket or on loopback.
func isLoopback(a net.Addr) bool {
	switch a := a.(type) {
	case *net.UnixAddr:
		return true
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	}
	return false
}
