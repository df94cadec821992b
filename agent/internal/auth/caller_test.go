package auth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"net/url"
	"reflect"
	"slices"
	"testing"

	"github.com/sockagent/sockagent/agent/internal/engine"
	"github.com/sockagent/sockagent/agent/policy"
)

func oid(t *testing.T, s string) asn1.ObjectIdentifier {
	t.Helper()
	var o asn1.ObjectIdentifier
	for _, part := range splitDots(s) {
		o = append(o, part)
	}
	return o
}

func splitDots(s string) []int {
	var out []int
	n := 0
	for _, r := range s + "." {
		if r == '.' {
			out = append(out, n)
			n = 0
			continue
		}
		n = n*10 + int(r-'0')
	}
	return out
}

// rawSubject is the DER of an RDN sequence, as a certificate carries its subject.
func rawSubject(t *testing.T, rdns pkix.RDNSequence) []byte {
	t.Helper()
	der, err := asn1.Marshal(rdns)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestCertSubject: RDNs come in RFC 4514 order (the reverse of the certificate's),
// multi-valued RDNs keep every attribute in signed order, known types get their short names
// and others stay dotted OIDs, a value that is not a string is kept as "#" and its DER.
func TestCertSubject(t *testing.T) {
	t.Parallel()
	cn, ou := oid(t, "2.5.4.3"), oid(t, "2.5.4.11")
	raw := rawSubject(t, pkix.RDNSequence{
		{{Type: oid(t, "2.5.4.6"), Value: "US"}},
		{{Type: oid(t, "1.2.3.4"), Value: "custom"}},
		{{Type: cn, Value: "svc"}, {Type: ou, Value: "ops"}},
		{{Type: oid(t, "2.5.4.5"), Value: 5}},
	})
	// The parsed form differs, so the test tells which one was read.
	cert := &x509.Certificate{RawSubject: raw, Subject: pkix.Name{CommonName: "parsed"}}
	want := policy.Subject{
		{{Type: "SERIALNUMBER", Value: "#020105"}},
		{{Type: "CN", Value: "svc"}, {Type: "OU", Value: "ops"}},
		{{Type: "1.2.3.4", Value: "custom"}},
		{{Type: "C", Value: "US"}},
	}
	if got := CertSubject(cert); !reflect.DeepEqual(got, want) {
		t.Errorf("CertSubject = %v, want %v", got, want)
	}
}

// TestCertSubjectTypeNames: every attribute type with an RFC 4514 name gets it.
func TestCertSubjectTypeNames(t *testing.T) {
	t.Parallel()
	for dotted, name := range map[string]string{
		"2.5.4.3": "CN", "2.5.4.5": "SERIALNUMBER", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST",
		"2.5.4.9": "STREET", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.17": "POSTALCODE",
		"0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID", "2.5.4.4": "2.5.4.4",
	} {
		cert := &x509.Certificate{RawSubject: rawSubject(t, pkix.RDNSequence{{{Type: oid(t, dotted), Value: "v"}}})}
		if got := CertSubject(cert); !reflect.DeepEqual(got, policy.Subject{{{Type: name, Value: "v"}}}) {
			t.Errorf("%s: CertSubject = %v, want %s=v", dotted, got, name)
		}
	}
}

// TestCertSubjectFallback: a raw subject that does not parse, or has bytes after the
// sequence, gives way to the subject x509 parsed.
func TestCertSubjectFallback(t *testing.T) {
	t.Parallel()
	good := rawSubject(t, pkix.RDNSequence{{{Type: oid(t, "2.5.4.3"), Value: "raw"}}})
	want := policy.Subject{{{Type: "CN", Value: "parsed"}}, {{Type: "O", Value: "Org"}}}
	for name, raw := range map[string][]byte{
		"garbage":        {0xff, 0x00},
		"trailing bytes": append(slices.Clone(good), 0x00),
		"empty":          nil,
	} {
		cert := &x509.Certificate{RawSubject: raw, Subject: pkix.Name{CommonName: "parsed", Organization: []string{"Org"}}}
		if got := CertSubject(cert); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: CertSubject = %v, want %v", name, got, want)
		}
	}
}

// TestCertCaller: the ID is "cert:" and the escaped subject; SANs list DNS, IP, URI and
// e-mail names in that order.
func TestCertCaller(t *testing.T) {
	t.Parallel()
	u, _ := url.Parse("spiffe://lab/agent")
	cert := &x509.Certificate{
		RawSubject:     rawSubject(t, pkix.RDNSequence{{{Type: oid(t, "2.5.4.10"), Value: "Lab"}}, {{Type: oid(t, "2.5.4.3"), Value: "a,b"}}}),
		DNSNames:       []string{"a.lab", "b.lab"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("fd00::1")},
		URIs:           []*url.URL{u},
		EmailAddresses: []string{"ops@lab"},
	}
	c := CertCaller(cert)
	if c.ID != `cert:CN=a\,b,O=Lab` || c.Kind != "cert" || c.Token != "" {
		t.Errorf("CertCaller = %+v", c)
	}
	if want := []string{"a.lab", "b.lab", "10.0.0.1", "fd00::1", "spiffe://lab/agent", "ops@lab"}; !slices.Equal(c.SANs, want) {
		t.Errorf("SANs = %q, want %q", c.SANs, want)
	}
	if !reflect.DeepEqual(c.Subject, policy.Subject{{{Type: "CN", Value: "a,b"}}, {{Type: "O", Value: "Lab"}}}) {
		t.Errorf("Subject = %v", c.Subject)
	}
}

// TestBearer: one "Bearer SECRET" header, the scheme in any case, white space around both
// parts trimmed; anything else says why.
func TestBearer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		vals        []string
		secret, why string
	}{
		{[]string{"Bearer s3cret"}, "s3cret", ""},
		{[]string{"  bearer   s3cret  "}, "s3cret", ""},
		{[]string{"BEARER s3cret"}, "s3cret", ""},
		{nil, "", "no authorization header"},
		{[]string{}, "", "no authorization header"},
		{[]string{"Bearer a", "Bearer b"}, "", "more than one authorization header"},
		{[]string{"Basic s3cret"}, "", "authorization header is not Bearer"},
		{[]string{"Bearers3cret"}, "", "authorization header is not Bearer"},
		{[]string{"Bearer"}, "", "empty bearer token"},
		{[]string{"Bearer    "}, "", "empty bearer token"},
	} {
		secret, why := Bearer(tc.vals)
		if secret != tc.secret || why != tc.why {
			t.Errorf("Bearer(%q) = %q, %q; want %q, %q", tc.vals, secret, why, tc.secret, tc.why)
		}
	}
}

// TestUIDCaller: a peer's uid names the caller "uid:N".
func TestUIDCaller(t *testing.T) {
	t.Parallel()
	if c := UIDCaller(0); !reflect.DeepEqual(c, engine.Caller{ID: "uid:0", Kind: "uid"}) {
		t.Errorf("UIDCaller(0) = %+v", c)
	}
	if c := UIDCaller(1000); !reflect.DeepEqual(c, engine.Caller{ID: "uid:1000", Kind: "uid"}) {
		t.Errorf("UIDCaller(1000) = %+v", c)
	}
}

// TestAuthenticate: the whole decision, one row per combination of what the transport proved
// and what the RPC sent.
func TestAuthenticate(t *testing.T) {
	t.Parallel()
	toks := mustTokens(t, "alice:alice-secret\nbob:bob-secret\n")
	cert := &x509.Certificate{RawSubject: rawSubject(t, pkix.RDNSequence{{{Type: oid(t, "2.5.4.3"), Value: "svc"}}})}
	certCaller := engine.Caller{ID: "cert:CN=svc", Kind: "cert", Subject: policy.Subject{{{Type: "CN", Value: "svc"}}}}
	certAlice := certCaller
	certAlice.Token = "alice"
	alice := engine.Caller{ID: "token:alice", Kind: "token", Token: "alice"}
	bob := engine.Caller{ID: "token:bob", Kind: "token", Token: "bob"}
	uid := engine.Caller{ID: "uid:1000", Kind: "uid"}
	hdr := func(secret string) []string { return []string{"Bearer " + secret} }
	for _, tc := range []struct {
		name string
		toks *Tokens
		cr   Credentials
		want Result
	}{
		{"no tokens, nothing", nil, Credentials{}, Result{Caller: engine.Anonymous}},
		{"no tokens, cert", nil, Credentials{Cert: cert}, Result{Caller: certCaller}},
		{"no tokens, uid", nil, Credentials{UID: 1000, UIDKnown: true}, Result{Caller: uid}},
		{"no tokens, uid 0 unknown", nil, Credentials{UID: 1000}, Result{Caller: engine.Anonymous}},
		{"no tokens, cert wins over uid", nil, Credentials{Cert: cert, UID: 1000, UIDKnown: true}, Result{Caller: certCaller}},
		{"no tokens, a header is ignored", nil, Credentials{Authorization: hdr("alice-secret")}, Result{Caller: engine.Anonymous}},
		{"token", toks, Credentials{Authorization: hdr("alice-secret")}, Result{Caller: alice, Gen: toks}},
		{"last token", toks, Credentials{Authorization: hdr("bob-secret")}, Result{Caller: bob, Gen: toks}},
		{"token wins over uid", toks, Credentials{UID: 1000, UIDKnown: true, Authorization: hdr("alice-secret")}, Result{Caller: alice, Gen: toks}},
		{"cert and token", toks, Credentials{Cert: cert, Authorization: hdr("alice-secret")}, Result{Caller: certAlice, Gen: toks}},
		{"exempt with a token", toks, Credentials{Exempt: true, Authorization: hdr("alice-secret")}, Result{Caller: alice, Gen: toks}},
		{"no header", toks, Credentials{}, Result{Caller: engine.Anonymous, Why: "no authorization header"}},
		{"cert without token", toks, Credentials{Cert: cert}, Result{Caller: certCaller, Why: "no authorization header"}},
		{"uid without token", toks, Credentials{UID: 1000, UIDKnown: true}, Result{Caller: uid, Why: "no authorization header"}},
		{"unknown token", toks, Credentials{Authorization: hdr("mallory")}, Result{Caller: engine.Anonymous, Why: "unknown token"}},
		{"cert, unknown token", toks, Credentials{Cert: cert, Authorization: hdr("mallory")}, Result{Caller: certCaller, Why: "unknown token"}},
		{"not bearer", toks, Credentials{Authorization: []string{"Basic alice-secret"}}, Result{Caller: engine.Anonymous, Why: "authorization header is not Bearer"}},
		{"exempt without header", toks, Credentials{Exempt: true}, Result{Caller: engine.Anonymous}},
		{"exempt, uid", toks, Credentials{Exempt: true, UID: 7, UIDKnown: true}, Result{Caller: engine.Caller{ID: "uid:7", Kind: "uid"}}},
		{"exempt, unknown token", toks, Credentials{Exempt: true, Authorization: hdr("mallory")}, Result{Caller: engine.Anonymous}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Authenticate(tc.toks, tc.cr)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Authenticate = %+v, want %+v", got, tc.want)
			}
			if got.Refused() != (tc.want.Why != "") {
				t.Errorf("Refused() = %v with Why %q", got.Refused(), got.Why)
			}
		})
	}
}
