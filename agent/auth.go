package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/auth"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// errUnauthenticated is the one status an RPC without valid credentials gets. It is built on
// first use, not at package init: encoding its ErrorInfo initialises protobuf reflection,
// which every process importing the package (sockctl too) would otherwise pay at start.
var errUnauthenticated = sync.OnceValue(func() error {
	st := status.New(codes.Unauthenticated, contract.UnauthenticatedMessage)
	if ds, err := st.WithDetails(&errdetails.ErrorInfo{Reason: contract.ReasonUnauthenticated, Domain: contract.Domain}); err == nil {
		return ds.Err()
	}
	return st.Err()
})

// ServerTLS builds the agent's TLS configuration from PEM files: the server certificate
// chain and its key, and, if clientCAFile is not empty, the CAs whose client certificates
// are required and verified (mTLS). TLS 1.2 is the minimum; TLS 1.3 is preferred.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("server TLS needs both a certificate and a key file")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load server certificate %s and key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
	if clientCAFile != "" {
		b, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("client CA %s: no PEM certificate in the file", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Tokens is an immutable set of bearer tokens with their names (see auth.Tokens).
type Tokens = auth.Tokens

// LoadTokens reads a token file; see ParseTokens for the format.
func LoadTokens(path string) (*Tokens, error) { return auth.LoadTokens(path) }

// ParseTokens reads tokens, one per line: "NAME:SECRET", or a bare "SECRET" whose name is
// BareTokenName(SECRET). The caller identity of a token is "token:NAME".
// Surrounding white space is trimmed; blank lines and lines starting with '#' are ignored.
// A secret containing ':' must be given with a name. Names are letters, digits and ._@-, and
// do not start with "sha256-" (the bare secrets' names); secrets contain no white space.
// Names and secrets must be unique; at least one token is required. Errors give line numbers,
// never the line's text, which may hold a secret.
func ParseTokens(r io.Reader) (*Tokens, error) { return auth.ParseTokens(r) }

// BareTokenName is the name of a token given as a bare secret (see auth.BareTokenName): it
// depends on the secret alone, so a token keeps its identity wherever its line moves.
func BareTokenName(secret string) string { return auth.BareTokenName(secret) }

// SetTokens replaces the agent's tokens atomically (a SIGHUP reload): RPCs from then on
// are checked against t. It fails when the agent was started without tokens or t is nil.
//
// A token that t no longer holds (its name gone, or its secret changed) is revoked: every RPC
// and stream it authenticated that is still running (Attach, Throughput, a blocked Recv) ends
// with UNAUTHENTICATED, and when its name is gone, every socket of the caller "token:NAME" is
// closed and its sessions end (CloseOwner): served sockets stop answering, Attach relays stop,
// and nothing the token opened is left that no caller could reach. A certificate caller that
// also sent the token keeps its sockets, which its certificate names.
func (a *Agent) SetTokens(t *Tokens) error {
	removed, err := a.tokens.Replace(t)
	if err != nil {
		return err
	}
	for _, name := range removed {
		a.closeRevoked("token:" + name)
	}
	return nil
}

// closeRevoked closes the sockets of owner, whose token was revoked.
func (a *Agent) closeRevoked(owner string) {
	if n := a.table.CloseOwner(owner, "its token was revoked"); n > 0 {
		a.log.Info("token revoked: its sockets closed", "owner", owner, "sockets", n)
	}
}

// trackToken registers an RPC that token c.Token of set gen authenticated, so that revoking
// the token ends it: the returned context is cancelled then. done unregisters it and reports
// whether it was revoked; when the token's name is gone by then, it also closes what the RPC
// may have opened after SetTokens closed the caller's sockets. ok is false when the token was
// revoked between authentication and now: the RPC must not run.
func (a *Agent) trackToken(ctx context.Context, c Caller, gen *Tokens) (_ context.Context, done func() (revoked bool), ok bool) {
	owner := ""
	if c.Kind == "token" {
		owner = c.ID
	}
	ctx, call, ok := a.tokens.Track(ctx, c.Token, owner, gen)
	if !ok {
		return ctx, nil, false
	}
	return ctx, func() bool {
		revoked, closeOwner := call.Done()
		if closeOwner != "" {
			a.closeRevoked(closeOwner)
		}
		return revoked
	}, true
}

// tokenExempt reports whether an RPC needs no token: the health service, which load
// balancers and orchestrators probe without credentials. (mTLS, a property of the
// connection, still applies to it.)
func tokenExempt(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/"+healthpb.Health_ServiceDesc.ServiceName+"/")
}

// authenticate returns the caller of an RPC, or errUnauthenticated with a reason for the log
// (never for the client); auth.Authenticate decides from what the transport proved
// (verified client certificate, the peer's uid on a UNIX socket) and the bearer header.
//
// gen is the token set that authenticated the caller's token, nil when no token did.
func (a *Agent) authenticate(ctx context.Context, p *peer.Peer, fullMethod string) (c Caller, gen *Tokens, why string, err error) {
	cr := auth.Credentials{Exempt: tokenExempt(fullMethod)}
	cr.Cert = verifiedCert(p)
	if cr.Cert == nil {
		cr.UID, cr.UIDKnown = peerUIDFrom(p)
	}
	toks := a.tokens.Current()
	if toks != nil { // without tokens the header says nothing; looking for it costs ~0.3 µs
		cr.Authorization = metadata.ValueFromIncomingContext(ctx, "authorization") // no copy of the whole metadata
	}
	r := auth.Authenticate(toks, cr)
	if r.Refused() {
		return r.Caller, nil, r.Why, errUnauthenticated()
	}
	return r.Caller, r.Gen, "", nil
}

// verifiedCert is the verified client certificate of the RPC's connection (its peer p, nil
// for none), nil without one.
func verifiedCert(p *peer.Peer) *x509.Certificate {
	if p == nil {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ti.State.VerifiedChains[0][0]
}

// handshakeLogger wraps server transport credentials to log failed TLS handshakes (no
// client certificate, one from another CA, an expired one, not TLS at all), at the bounded
// rate of lines about callers not yet known.
type handshakeLogger struct {
	credentials.TransportCredentials
	log *refusalLog
}

func (h handshakeLogger) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	remote := c.RemoteAddr().String()
	conn, ai, err := h.TransportCredentials.ServerHandshake(c)
	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, io.EOF) {
			level = slog.LevelDebug // a port probe: connected and closed
		}
		h.log.line(level, "tls handshake failed", slog.String("remote", remote), slog.String("err", clip(err.Error(), 512)))
	}
	return conn, ai, err
}

func (h handshakeLogger) Clone() credentials.TransportCredentials {
	return handshakeLogger{TransportCredentials: h.TransportCredentials.Clone(), log: h.log}
}
