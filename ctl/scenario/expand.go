package scenario

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sockagent/sockagent/ctl/internal/yamlwalk"
)

// maxRefDepth bounds the nesting of ${...} inside ${...}.
const maxRefDepth = 8

// part is a piece of a value: literal text, or a ${...} reference whose name is itself made
// of parts (so "${c${i}.local_port}" works).
type part struct {
	lit   string
	ref   []part
	isRef bool
}

// parseTemplate splits raw into literal text and ${...} references. "$$" is a literal "$";
// a "$" not followed by "{" or "$" is literal too.
func parseTemplate(raw string) ([]part, error) {
	parts, _, err := parseParts(raw, 0, 0)
	return parts, err
}

func parseParts(s string, i, depth int) ([]part, int, error) {
	var parts []part
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, part{lit: lit.String()})
			lit.Reset()
		}
	}
	for i < len(s) {
		c := s[i]
		switch {
		case depth > 0 && c == '}':
			flush()
			return parts, i, nil
		case c == '$' && i+1 < len(s) && s[i+1] == '$':
			lit.WriteByte('$')
			i += 2
		case c == '$' && i+1 < len(s) && s[i+1] == '{':
			if depth >= maxRefDepth {
				return nil, 0, errors.New(`"${" nested too deeply`)
			}
			inner, j, err := parseParts(s, i+2, depth+1)
			if err != nil {
				return nil, 0, err
			}
			flush()
			parts = append(parts, part{ref: inner, isRef: true})
			i = j + 1
		default:
			lit.WriteByte(c)
			i++
		}
	}
	if depth > 0 {
		return nil, 0, errors.New(`unterminated "${": close it with "}", or write "$$" for a literal "$"`)
	}
	flush()
	return parts, i, nil
}

func expand(raw string, lookup Lookup) (string, error) {
	if !strings.Contains(raw, "$") {
		return raw, nil
	}
	parts, err := parseTemplate(raw)
	if err != nil {
		return "", err
	}
	return evalParts(parts, lookup)
}

func evalParts(parts []part, lookup Lookup) (string, error) {
	var b strings.Builder
	for _, p := range parts {
		if !p.isRef {
			b.WriteString(p.lit)
			continue
		}
		ref, err := evalParts(p.ref, lookup)
		if err != nil {
			return "", err
		}
		if ref == "" {
			return "", errors.New(`empty "${}": write ${ALIAS.field}, ${AGENT.host}, ${vars.NAME}, ${env.NAME} or ${i}`)
		}
		v, err := lookup(ref)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

func resolve(path string, args Args, lookup Lookup) (Resolved, error) {
	r := Resolved{Path: path, Args: make(Args, len(args))}
	probs := problems{yamlwalk.Problems{Path: path}}
	for k, v := range args {
		x, err := expand(v.Raw, lookup)
		if err != nil {
			probs.add(v.Pos, "%s: %v", k, err)
			continue
		}
		r.Args[k] = Scalar{Raw: x, Pos: v.Pos}
	}
	if err := probs.err(); err != nil {
		return Resolved{}, err
	}
	return r, nil
}

// bad is the error of a resolved value that does not parse.
func (r Resolved) bad(key, format string, args ...any) error {
	return Error{Path: r.Path, Pos: r.Args[key].Pos, Msg: key + ": " + fmt.Sprintf(format, args...)}
}
