package auth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/sockagent/sockagent/agent/internal/engine"
	"github.com/sockagent/sockagent/agent/policy"
)

// Credentials are what the transport proved about an RPC, and what it sent.
type Credentials struct {
	// Cert is the verified client certificate (the leaf of the first verified chain); nil
	// without one.
	Cert *x509.Certificate
	// UID is the user the kernel says runs the peer of a UNIX socket, when UIDKnown.
	UID      int
	UIDKnown bool
	// Authorization are the values of the RPC's "authorization" header.
	Authorization []string
	// Exempt: the RPC needs no token (health, which load balancers probe without one).
	Exempt bool
}

// Result is the outcome of Authenticate.
type Result struct {
	// Caller is who calls: a certificate wins over a token, a token over a uid; Anonymous
	// otherwise.
	Caller engine.Caller
	// Gen is the token set that authenticated the caller's token; nil when no token did.
	Gen *Tokens
	// Why says, for the log only (never for the client), why the RPC is refused; "" when it
	// is let in.
	Why string
}

// Refused reports whether the RPC must be refused as unauthenticated.
func (r Result) Refused() bool { return r.Why != "" }

// Authenticate names the caller of an RPC from its credentials, checking its bearer token
// against toks. A verified client certificate makes a "cert" caller; a valid bearer token a
// "token" caller; with both, the certificate names the caller and Token records the token's
// name; a uid known from a UNIX socket makes a "uid" caller. When toks is not nil, every RPC
// but an exempt one needs a valid token, even from a caller with a certificate; toks nil
// asks for none.
func Authenticate(toks *Tokens, cr Credentials) Result {
	c, hasCert := engine.Anonymous, cr.Cert != nil
	switch {
	case hasCert:
		c = CertCaller(cr.Cert)
	case cr.UIDKnown:
		c = UIDCaller(cr.UID)
	}
	if toks == nil {
		return Result{Caller: c}
	}
	secret, why := Bearer(cr.Authorization)
	name, ok := "", false
	if why == "" {
		if name, ok = toks.Match(secret); !ok {
			why = "unknown token"
		}
	}
	if !ok {
		if cr.Exempt {
			return Result{Caller: c}
		}
		return Result{Caller: c, Why: why}
	}
	if hasCert {
		c.Token = name
		return Result{Caller: c, Gen: toks}
	}
	return Result{Caller: engine.Caller{ID: "token:" + name, Kind: "token", Token: name}, Gen: toks}
}

// Bearer returns the secret of an "authorization: Bearer SECRET" header given its values, or
// why there is none.
func Bearer(vals []string) (secret, why string) {
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

// UIDCaller is the caller of an RPC over a UNIX socket whose peer runs as user uid.
func UIDCaller(uid int) engine.Caller {
	return engine.Caller{ID: "uid:" + strconv.Itoa(uid), Kind: "uid"}
}

// CertCaller is the caller a verified client certificate names: ID "cert:" + its whole
// subject in RFC 4514 form, every value escaped (policy.Subject.String), so that no value
// poses as another attribute and distinct subjects are distinct callers; Subject holds the
// parsed attributes that "subject:" and "cert:" policy patterns match; SANs its DNS, IP, URI
// and e-mail names.
func CertCaller(cert *x509.Certificate) engine.Caller {
	subject := CertSubject(cert)
	var sans []string
	sans = append(sans, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		sans = append(sans, ip.String())
	}
	for _, u := range cert.URIs {
		sans = append(sans, u.String())
	}
	sans = append(sans, cert.EmailAddresses...)
	return engine.Caller{ID: "cert:" + subject.String(), Kind: "cert", Subject: subject, SANs: sans}
}

// dnTypes are the RFC 4514 names of attribute types; others are written as dotted OIDs.
var dnTypes = map[string]string{
	"2.5.4.3": "CN", "2.5.4.5": "SERIALNUMBER", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST",
	"2.5.4.9": "STREET", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.17": "POSTALCODE",
	"0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
}

// CertSubject is the certificate's subject with its RDNs as signed (multi-valued ones kept),
// in RFC 4514 order (the reverse of the certificate's).
func CertSubject(cert *x509.Certificate) policy.Subject {
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
