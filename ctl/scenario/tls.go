package scenario

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/internal/yamlwalk"
)

// A `tls:` map on dial, probe (clients) and listen (a server) steps:
//
//	dial:   {network: tcp, address: ..., tls: {ca: pki/ca.pem, server_name: localhost, cert: c.pem, key: c-key.pem, alpn: [h2], min_version: "1.3"}}
//	listen: {network: tcp, address: ..., tls: {cert: server.pem, key: server-key.pem, ca: clients-ca.pem}}
//	probe:  {network: tcp, address: ..., mode: tls, tls: {ca: pki/ca.pem}}
//
// Files are read by sockctl, relative to the scenario file's directory, and sent as PEM; a
// file that does not exist, or is larger than the agent accepts, is a FILE:LINE:COL error
// before any RPC. Its keys are kept in Args as "tls.KEY" ("tls" itself marks the map);
// alpn is a list (or one name) kept joined by commas.

// tlsKeys are the keys of a client's and of a listener's tls map.
var (
	tlsClientKeys = []string{"server_name", "ca", "cert", "key", "alpn", "min_version", "insecure_skip_verify"}
	tlsServerKeys = []string{"cert", "key", "ca", "alpn", "min_version"}
	tlsFileKeys   = []string{"ca", "cert", "key"}
	tlsVersions   = []string{"1.0", "1.1", "1.2", "1.3"}
)

// TLS is a step's tls map, its files resolved against the scenario file's directory.
type TLS struct {
	ServerName    string
	CA, Cert, Key string // paths; "" when not given
	ALPN          []string
	MinVersion    string
	Insecure      bool
}

// TLS returns the step's tls map, or nil when it has none.
func (r Resolved) TLS() (*TLS, error) {
	if !r.Has("tls") {
		return nil, nil
	}
	dir := filepath.Dir(r.Path)
	file := func(key string) string {
		f := r.String("tls." + key)
		if f != "" && !filepath.IsAbs(f) {
			f = filepath.Join(dir, f)
		}
		return f
	}
	t := &TLS{ServerName: r.String("tls.server_name"), CA: file("ca"), Cert: file("cert"), Key: file("key"), MinVersion: r.String("tls.min_version")}
	if a := r.String("tls.alpn"); a != "" {
		t.ALPN = strings.Split(a, ",")
	}
	if r.Has("tls.insecure_skip_verify") {
		v, err := parseBool(r.String("tls.insecure_skip_verify"))
		if err != nil {
			return nil, r.bad("tls.insecure_skip_verify", "%v", err)
		}
		t.Insecure = v
	}
	return t, nil
}

// tlsArgs reads the tls map of an action into args.
func (p *parser) tlsArgs(action string, e entry, args Args) {
	keys := tlsClientKeys
	if action == "listen" {
		keys = tlsServerKeys
	}
	what := action + ".tls"
	entries, ok := p.Mapping(e.Value, what, "{ca: ca.pem}")
	if !ok {
		return
	}
	args["tls"] = Scalar{Pos: yamlwalk.Pos(e.KeyNode)}
	for _, te := range entries {
		if !slices.Contains(keys, te.Key) {
			p.unknown(te, what, keys, strings.Join(keys, ", "))
			continue
		}
		var s Scalar
		if te.Key == "alpn" {
			s, ok = p.alpn(what, te.Value)
		} else {
			s, ok = p.scalarOf(what+"."+te.Key, te.Key, te.Value)
		}
		if !ok {
			continue
		}
		args["tls."+te.Key] = s
		p.tlsLiteral(what, te.Key, s)
	}
	_, cert := args["tls.cert"]
	_, key := args["tls.key"]
	switch {
	case action == "listen" && (!cert || !key):
		p.add(yamlwalk.Pos(e.KeyNode), "%s needs cert and key (PEM files; ca, when given, requires client certificates)", what)
	case cert != key:
		p.add(yamlwalk.Pos(e.KeyNode), "%s: a client certificate needs both cert and key", what)
	}
}

// alpn reads alpn: a list of protocol names, or one.
func (p *parser) alpn(what string, n *yaml.Node) (Scalar, bool) {
	n = p.Node(n)
	if n == nil {
		return Scalar{}, false
	}
	if n.Kind != yaml.SequenceNode {
		return p.scalarOf(what+".alpn", "alpn", n)
	}
	names := make([]string, 0, len(n.Content))
	for _, it := range n.Content {
		s, ok := p.scalarOf(what+".alpn", "alpn", it)
		if !ok {
			return Scalar{}, false
		}
		if s.Raw == "" || strings.Contains(s.Raw, ",") {
			p.add(s.Pos, "%s.alpn: %q is not a protocol name (h2, http/1.1)", what, s.Raw)
			return Scalar{}, false
		}
		names = append(names, s.Raw)
	}
	return Scalar{Raw: strings.Join(names, ","), Pos: yamlwalk.Pos(n)}, true
}

// tlsLiteral checks a tls value without ${...} references: versions, booleans, and that
// files exist and fit what the agent accepts.
func (p *parser) tlsLiteral(what, key string, s Scalar) {
	if strings.Contains(s.Raw, "${") {
		return
	}
	raw := strings.ReplaceAll(s.Raw, "$$", "$")
	var err error
	switch key {
	case "min_version":
		if !slices.Contains(tlsVersions, raw) {
			err = fmt.Errorf("want one of %s, got %q", strings.Join(tlsVersions, ", "), raw)
		}
	case "insecure_skip_verify":
		_, err = parseBool(raw)
	case "ca", "cert", "key":
		err = checkPEMFile(filepath.Dir(p.Path), raw)
	}
	if err != nil {
		p.add(s.Pos, "%s.%s: %v", what, key, err)
	}
}

// checkPEMFile checks that a tls file exists, relative to dir, and is not larger than the
// agent accepts.
func checkPEMFile(dir, name string) error {
	if name == "" {
		return fmt.Errorf("empty; name a PEM file (relative to the scenario file)")
	}
	if !filepath.IsAbs(name) {
		name = filepath.Join(dir, name)
	}
	fi, err := os.Stat(name)
	switch {
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", name)
	case fi.Size() > contract.MaxPEMBytes:
		return fmt.Errorf("%s has %d bytes, more than the agent accepts (%d)", name, fi.Size(), contract.MaxPEMBytes)
	}
	return nil
}
