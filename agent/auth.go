package agent

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/engine"
	"github.com/sockagent/sockagent/agent/policy"
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

// Tokens is an immutable set of bearer tokens with their names. Only SHA-256 sums of the
// secrets are kept.
type Tokens struct {
	names []string
	sums  [][sha256.Size]byte
}

// LoadTokens reads a token file; see ParseTokens for the format.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens reads tokens, one per line: "NAME:SECRET", or a bare "SECRET" whose name is
// BareTokenName(SECRET). The caller identity of a token is "token:NAME".
// Surrounding white space is trimmed; blank lines and lines starting with '#' are ignored.
// A secret containing ':' must be given with a name. Names are letters, digits and ._@-, and
// do not start with "sha256-" (the bare secrets' names); secrets contain no white space.
// Names and secrets must be unique; at least one token is required. Errors give line numbers,
// never the line's text, which may hold a secret.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	seenName := map[string]int{}
	seenSum := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, secret, named := strings.Cut(line, ":")
		if !named {
			name, secret = BareTokenName(line), line
		}
		// No error quotes the line: what looks like a name may be the start of a bare secret
		// that contains ':', and errors end up in logs.
		switch {
		case named && strings.HasPrefix(name, bareTokenPrefix):
			return nil, fmt.Errorf("line %d: the token name starts with %q, which is reserved for bare secrets; choose another name", n, bareTokenPrefix)
		case name == "":
			return nil, fmt.Errorf("line %d: empty name before ':' (write NAME:SECRET, or the secret alone)", n)
		case !validTokenName(name):
			return nil, fmt.Errorf("line %d: the text before the first ':' is not a token name (letters, digits and ._@-); a secret that contains ':' needs a name in front: NAME:SECRET", n)
		case secret == "":
			return nil, fmt.Errorf("line %d: empty secret after ':' (write NAME:SECRET)", n)
		case strings.ContainsFunc(secret, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			return nil, fmt.Errorf("line %d: the secret contains white space or control characters", n)
		}
		sum := sha256.Sum256([]byte(secret))
		if prev, ok := seenName[name]; ok {
			return nil, fmt.Errorf("line %d: the token name is already used on line %d (each token needs its own name)", n, prev)
		}
		if prev, ok := seenSum[sum]; ok {
			return nil, fmt.Errorf("line %d: the same secret as on line %d (each caller needs its own)", n, prev)
		}
		seenName[name], seenSum[sum] = n, n
		t.names = append(t.names, name)
		t.sums = append(t.sums, sum)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	if len(t.names) == 0 {
		return nil, errors.New("no tokens (give one per line: NAME:SECRET)")
	}
	return t, nil
}

// bareTokenPrefix starts the names of bare secrets.
const bareTokenPrefix = "sha256-"

// BareTokenName is the name of a token given as a bare secret: "sha256-" and the first 16 hex
// digits of the SHA-256 of "sockagent-token-id:" + secret. It depends on the secret alone, so
// a token keeps its identity, its sockets and its rule set wherever its line moves in the
// file, and another token never inherits them. The sum is domain-separated so that the name
// in logs and policies matches no published table of plain SHA-256 sums; a guessable secret
// is still guessable from its name, so bare secrets must be random (or give tokens names).
func BareTokenName(secret string) string {
	sum := sha256.Sum256([]byte("sockagent-token-id:" + secret))
	return bareTokenPrefix + hex.EncodeToString(sum[:8])
}

func validTokenName(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("._@-", r):
		default:
			return false
		}
	}
	return true
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.names) }

// Names are the tokens' names in file order (the caller identities without "token:").
func (t *Tokens) Names() []string { return slices.Clone(t.names) }

// match returns the name of the token whose secret is secret. It compares SHA-256 sums in
// constant time against every token, without stopping at a match, so neither the time nor
// the secret's length tells which token (or how much of one) matched.
func (t *Tokens) match(secret string) (string, bool) {
	sum := sha256.Sum256([]byte(secret))
	found := -1
	for i := range t.sums {
		eq := subtle.ConstantTimeCompare(sum[:], t.sums[i][:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return "", false
	}
	return t.names[found], true
}

// sumOf returns the SHA-256 of the secret of the token named name.
func (t *Tokens) sumOf(name string) ([sha256.Size]byte, bool) {
	if i := slices.Index(t.names, name); i >= 0 {
		return t.sums[i], true
	}
	return [sha256.Size]byte{}, false
}

// holds reports whether t has the token named name with the secret whose sum is sum.
func (t *Tokens) holds(name string, sum [sha256.Size]byte) bool {
	s, ok := t.sumOf(name)
	return ok && s == sum
}

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
	if t == nil || t.Len() == 0 {
		return errors.New("set tokens: no tokens")
	}
	a.tokenCallsMu.Lock()
	old := a.tokens.Load()
	if old == nil {
		a.tokenCallsMu.Unlock()
		return errors.New("set tokens: the agent was started without token authentication")
	}
	a.tokens.Store(t)
	var ended []*tokenCall
	for c := range a.tokenCalls {
		if !t.holds(c.name, c.sum) {
			c.revoked = true
			ended = append(ended, c)
		}
	}
	a.tokenCallsMu.Unlock()
	for _, c := range ended {
		c.cancel(errRevoked)
	}
	for _, name := range old.names {
		if _, kept := t.sumOf(name); !kept {
			a.closeRevoked("token:" + name)
		}
	}
	return nil
}

// errRevoked is the cause of the contexts SetTokens cancels.
var errRevoked = errors.New("the token of the call was revoked")

// closeRevoked closes the sockets of owner, whose token was revoked.
func (a *Agent) closeRevoked(owner string) {
	if n := a.table.CloseOwner(owner, "its token was revoked"); n > 0 {
		a.log.Info("token revoked: its sockets closed", "owner", owner, "sockets", n)
	}
}

// tokenCall is an RPC in progress that a token authenticated.
type tokenCall struct {
	name    string            // the token's name
	sum     [sha256.Size]byte // its secret's sum: a new secret under the same name revokes the old
	owner   string            // the caller, when the token names it ("token:NAME"); else ""
	cancel  context.CancelCauseFunc
	revoked bool // set by SetTokens, under tokenCallsMu
}

// trackToken registers an RPC that token name of set gen authenticated, so that revoking the
// token ends it: the returned context is cancelled then. done unregisters it and reports
// whether it was revoked; when the token's name is gone by then, it also closes what the RPC
// may have opened after SetTokens closed the caller's sockets. ok is false when the token was
// revoked between authentication and now: the RPC must not run.
func (a *Agent) trackToken(ctx context.Context, c Caller, gen *Tokens) (_ context.Context, done func() (revoked bool), ok bool) {
	sum, _ := gen.sumOf(c.Token)
	call := &tokenCall{name: c.Token, sum: sum}
	if c.Kind == "token" {
		call.owner = c.ID
	}
	ctx, call.cancel = context.WithCancelCause(ctx)
	a.tokenCallsMu.Lock()
	if cur := a.tokens.Load(); cur != gen && !cur.holds(call.name, sum) {
		a.tokenCallsMu.Unlock()
		call.cancel(errRevoked)
		return ctx, nil, false
	}
	a.tokenCalls[call] = struct{}{}
	a.tokenCallsMu.Unlock()
	return ctx, func() bool {
		a.tokenCallsMu.Lock()
		delete(a.tokenCalls, call)
		revoked := call.revoked
		_, nameKept := a.tokens.Load().sumOf(call.name)
		a.tokenCallsMu.Unlock()
		call.cancel(nil)
		if revoked && !nameKept && call.owner != "" {
			a.closeRevoked(call.owner)
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
// (never for the client). A verified client certificate makes a "cert" caller; a valid
// bearer token a "token" caller; with both, the certificate names the caller and Token
// records the token's name. When the agent has tokens, every RPC but health needs one, even
// from a caller with a certificate.
//
// gen is the token set that authenticated the caller's token, nil when no token did.
func (a *Agent) authenticate(ctx context.Context, fullMethod string) (c Caller, gen *Tokens, why string, err error) {
	c, hasCert := certCaller(ctx)
	if !hasCert {
		if u, ok := uidCaller(ctx); ok {
			c = u
		}
	}
	toks := a.tokens.Load()
	if toks == nil {
		return c, nil, "", nil
	}
	secret, why := bearer(ctx)
	if why != "" {
		if tokenExempt(fullMethod) {
			return c, nil, "", nil
		}
		return c, nil, why, errUnauthenticated()
	}
	name, ok := toks.match(secret)
	if !ok {
		if tokenExempt(fullMethod) {
			return c, nil, "", nil
		}
		return c, nil, "unknown token", errUnauthenticated()
	}
	if hasCert {
		c.Token = name
		return c, toks, "", nil
	}
	return Caller{ID: "token:" + name, Kind: "token", Token: name}, toks, "", nil
}

// bearer returns the secret of the RPC's "authorization: Bearer SECRET" header, or why there
// is none.
func bearer(ctx context.Context) (secret, why string) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch {
	case len(vals) == 0:
		return "", "no authorization header"
	case len(vals) > 1:
		return "", "more than one authorization header"
	}
	scheme, secret, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", "authorization header is not Bearer"
	}
	secret = strings.TrimSpace(secret)
	if secret == "" {
		return "", "empty bearer token"
	}
	return secret, ""
}

// certCaller is the caller named by the verified client certificate of the RPC's
// connection: ID "cert:" + its whole subject in RFC 4514 form, every value escaped
// (policy.Subject.String), so that no value poses as another attribute and distinct subjects
// are distinct callers; Subject holds the parsed attributes that "subject:" and "cert:"
// policy patterns match.
func certCaller(ctx context.Context) (Caller, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return engine.Anonymous, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return engine.Anonymous, false
	}
	cert := ti.State.VerifiedChains[0][0]
	subject := certSubject(cert)
	var sans []string
	sans = append(sans, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		sans = append(sans, ip.String())
	}
	for _, u := range cert.URIs {
		sans = append(sans, u.String())
	}
	sans = append(sans, cert.EmailAddresses...)
	return Caller{ID: "cert:" + subject.String(), Kind: "cert", Subject: subject, SANs: sans}, true
}

// dnTypes are the RFC 4514 names of attribute types; others are written as dotted OIDs.
var dnTypes = map[string]string{
	"2.5.4.3": "CN", "2.5.4.5": "SERIALNUMBER", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST",
	"2.5.4.9": "STREET", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.17": "POSTALCODE",
	"0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
}

// certSubject is the certificate's subject with its RDNs as signed (multi-valued ones kept),
// in RFC 4514 order (the reverse of the certificate's).
func certSubject(cert *x509.Certificate) policy.Subject {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(cert.RawSubject, &rdns); err != nil || len(rest) != 0 {
		rdns = cert.Subject.ToRDNSequence() // the parsed form x509 verified, flattened
	}
	out := make(policy.Subject, 0, len(rdns))
	for i := len(rdns) - 1; i >= 0; i-- {
		rdn := make([]policy.Attribute, 0, len(rdns[i]))
		for _, atv := range rdns[i] {
			typ := atv.Type.String()
			if name, ok := dnTypes[typ]; ok {
				typ = name
			}
			value, ok := atv.Value.(string)
			if !ok { // x509 refuses non-string values; kept distinct should one appear
				der, _ := asn1.Marshal(atv.Value)
				value = "#" + hex.EncodeToString(der)
			}
			rdn = append(rdn, policy.Attribute{Type: typ, Value: value})
		}
		out = append(out, rdn)
	}
	return out
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
