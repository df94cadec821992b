package agent

import (
	"context"
	"errors"
	"net"
	"syscall"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// peerCreds are the transport credentials of an agent without TLS: plaintext, but a
// connection over a UNIX socket carries the connecting process's user id, which the kernel
// vouches for (SO_PEERCRED), so a caller on the agent's own socket is "uid:N" rather than
// anonymous, and policies can name local users.
type peerCreds struct{}

// peerInfo is the AuthInfo of a plaintext connection: the peer's uid when the kernel told it.
type peerInfo struct {
	credentials.CommonAuthInfo
	uid   int
	known bool
}

func (peerInfo) AuthType() string { return "insecure" }

func (peerCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	info := peerInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}
	inner := c
	for {
		w, ok := inner.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		inner = w.NetConn()
	}
	if sc, ok := inner.(syscall.Conn); ok && inner.LocalAddr().Network() == "unix" {
		info.uid, info.known = peerUID(sc)
	}
	return c, info, nil
}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peer credentials are the agent's: a server side only")
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "insecure"}
}

func (peerCreds) Clone() credentials.TransportCredentials { return peerCreds{} }

func (peerCreds) OverrideServerName(string) error { return nil }

// peerUIDFrom is the uid of the peer p of an RPC that came over a UNIX socket, when the kernel
// told it.
func peerUIDFrom(p *peer.Peer) (int, bool) {
	if p == nil {
		return 0, false
	}
	pi, ok := p.AuthInfo.(peerInfo)
	if !ok || !pi.known {
		return 0, false
	}
	return pi.uid, true
}
