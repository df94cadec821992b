package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestTLSInsecureSkipVerify(t *testing.T) {
	t.Parallel()
	if err := Default().Default.CheckInsecureSkipVerify(); err == nil {
		t.Fatal("the built-in default allows insecure_skip_verify; it must refuse it")
	} else {
		var d *Denied
		if !errors.As(err, &d) || d.Rule != "tls.insecure_skip_verify" || d.RuleSet != "default" || !d.NoMatch {
			t.Fatalf("refusal %#v, want rule tls.insecure_skip_verify of set default", err)
		}
		for _, want := range []string{"tls insecure_skip_verify not allowed", "root_cas_pem", "tls: {insecure_skip_verify: true}"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q lacks %q", err, want)
			}
		}
	}
	p := mustParse(t, `
default:
  tls: {insecure_skip_verify: True}
rule_sets:
  - {name: inherits, callers: ["token:a"]}
  - {name: strict, callers: ["token:b"], tls: {insecure_skip_verify: false}}
  - {name: other, callers: ["token:c"], limits: {sockets: 3}}
`)
	for _, tc := range []struct {
		token string
		allow bool
	}{{"a", true}, {"b", false}, {"c", true}, {"zzz", true}} {
		err := p.For(Identity{ID: "token:" + tc.token}).CheckInsecureSkipVerify()
		if (err == nil) != tc.allow {
			t.Errorf("token:%s: err %v, want allowed %v", tc.token, err, tc.allow)
		}
	}
	strict := mustParse(t, "rule_sets:\n  - {name: lab, callers: [\"token:lab\"], tls: {insecure_skip_verify: true}}\n")
	if strict.For(Identity{ID: "token:lab"}).CheckInsecureSkipVerify() != nil {
		t.Error("rule set lab allows it, but it was refused")
	}
	if err := strict.For(Identity{ID: "token:x"}).CheckInsecureSkipVerify(); err == nil || !strings.Contains(err.Error(), `(rule set "default")`) {
		t.Errorf("the file's default set (inheriting the built-in) gave %v, want a refusal of set default", err)
	}
}

func TestTLSParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, src, want string }{
		{"not a bool", "default:\n  tls: {insecure_skip_verify: yes}\n", `p.yaml:2:31: default.tls.insecure_skip_verify: want true or false, not "yes"`},
		{"number", "default:\n  tls: {insecure_skip_verify: 1}\n", `p.yaml:2:31: default.tls.insecure_skip_verify: want true or false, not "1"`},
		{"unknown key", "rule_sets:\n  - name: x\n    callers: [a]\n    tls: {skip: true}\n", `p.yaml:4:11: rule_sets[0].tls: unknown key "skip"; known keys: insecure_skip_verify`},
		{"not a mapping", "default:\n  tls: true\n", `p.yaml:2:8: default.tls: want a mapping`},
		{"twice", "default:\n  tls: {insecure_skip_verify: true, insecure_skip_verify: false}\n", `p.yaml:2:37: default.tls: key "insecure_skip_verify" given twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("p.yaml", []byte(tc.src))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T), want a *ParseError", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}
