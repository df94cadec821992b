package agent

import (
	"crypto/tls"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// tlsVersions pairs the API's TLS versions with crypto/tls's; TLS_VERSION_UNSPECIFIED is 0,
// the engine's default.
var tlsVersions = enumTable[sockagentv1.TlsVersion, uint16]{
	{sockagentv1.TlsVersion_TLS_VERSION_UNSPECIFIED, 0},
	{sockagentv1.TlsVersion_TLS_VERSION_1_0, tls.VersionTLS10},
	{sockagentv1.TlsVersion_TLS_VERSION_1_1, tls.VersionTLS11},
	{sockagentv1.TlsVersion_TLS_VERSION_1_2, tls.VersionTLS12},
	{sockagentv1.TlsVersion_TLS_VERSION_1_3, tls.VersionTLS13},
}

func tlsVersionOf(op string, v sockagentv1.TlsVersion) (uint16, error) {
	e, ok := tlsVersions.engine(v)
	if !ok {
		return 0, engine.BadArg(contract.ReasonInvalidArgument, "%s: tls.min_version %d unknown; use TLS_VERSION_1_2 or TLS_VERSION_1_3", op, v)
	}
	return e, nil
}

// tlsClientOf converts a request's TlsClient; nil stays nil (a plain socket).
func tlsClientOf(op string, c *sockagentv1.TlsClient) (*engine.TLSClient, error) {
	if c == nil {
		return nil, nil
	}
	v, err := tlsVersionOf(op, c.GetMinVersion())
	if err != nil {
		return nil, err
	}
	return &engine.TLSClient{
		ServerName: c.GetServerName(), RootCAsPEM: c.GetRootCasPem(), CertPEM: c.GetCertPem(), KeyPEM: c.GetKeyPem(),
		ALPN: c.GetAlpn(), MinVersion: v, InsecureSkipVerify: c.GetInsecureSkipVerify(),
	}, nil
}

// tlsServerOf converts a ListenRequest's TlsServer; nil stays nil (a plain listener).
func tlsServerOf(c *sockagentv1.TlsServer) (*engine.TLSServer, error) {
	if c == nil {
		return nil, nil
	}
	v, err := tlsVersionOf("listen", c.GetMinVersion())
	if err != nil {
		return nil, err
	}
	return &engine.TLSServer{CertPEM: c.GetCertPem(), KeyPEM: c.GetKeyPem(), ClientCAPEM: c.GetClientCaPem(), ALPN: c.GetAlpn(), MinVersion: v}, nil
}

func tlsInfoProto(in *engine.TLSInfo) *sockagentv1.TlsInfo {
	if in == nil {
		return nil
	}
	ver, _ := tlsVersions.proto(in.Version)
	min, _ := tlsVersions.proto(in.MinVersion)
	out := &sockagentv1.TlsInfo{
		Version: ver, CipherSuite: in.CipherSuite, Alpn: in.ALPN, PeerSubject: in.PeerSubject,
		PeerIssuer: in.PeerIssuer, ServerName: in.ServerName, Listener: in.Listener, MinVersion: min,
	}
	if !in.PeerNotAfter.IsZero() {
		out.PeerNotAfter = timestamppb.New(in.PeerNotAfter)
	}
	return out
}
