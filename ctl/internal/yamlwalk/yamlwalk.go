// Package yamlwalk walks the YAML node trees of sockctl's files (scenarios and the matrix files
// they and `sockctl matrix` read): it follows aliases within a budget of nodes, reads
// mappings, and collects problems at the positions of the nodes they are about, to be
// reported together, in file order (diag.Errors).
package yamlwalk

import (
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/sockagent/sockagent/ctl/diag"
)

// MaxNodes bounds the YAML nodes a file may have once aliases (*name) are followed, so that a
// file of nested aliases cannot make a parser walk for ever.
const MaxNodes = 200_000

// MaxProblems bounds the problems reported for one file.
const MaxProblems = 50

// maxAliasHops bounds the aliases followed to reach one node.
const maxAliasHops = 100

// Problems collects the problems found in one file.
type Problems struct {
	Path string
	List []diag.Error
}

// Add records a problem at at.
func (p *Problems) Add(at diag.Pos, format string, args ...any) {
	p.List = append(p.List, diag.Error{Path: p.Path, Pos: at, Msg: fmt.Sprintf(format, args...)})
}

// Err returns the problems in file order, each once, at most MaxProblems of them (the last
// saying how many there were), as a *diag.Errors; nil when there are none.
func (p *Problems) Err() error {
	if len(p.List) == 0 {
		return nil
	}
	list := slices.Clone(p.List)
	slices.SortStableFunc(list, func(a, b diag.Error) int {
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line - b.Pos.Line
		}
		return a.Pos.Col - b.Pos.Col
	})
	list = slices.Compact(list)
	if n := len(list); n > MaxProblems {
		list = append(list[:MaxProblems-1], diag.Error{Path: p.Path, Pos: list[MaxProblems-2].Pos,
			Msg: fmt.Sprintf("too many problems (%d in all); fix these and run again", n)})
	}
	return &diag.Errors{List: list}
}

// Walker walks one file's nodes, counting them against Limit.
type Walker struct {
	Problems
	Limit int  // the nodes it may walk; 0 is MaxNodes
	Nodes int  // the nodes walked so far
	Over  bool // the budget is spent (reported once, at the node that spent it)
}

// Pos is n's position.
func Pos(n *yaml.Node) diag.Pos { return diag.Pos{Line: n.Line, Col: n.Column} }

// Node follows n's aliases to the node they name and counts it; nil when the budget is spent,
// or when the aliases go round.
func (w *Walker) Node(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < maxAliasHops; i++ {
		n = n.Alias
	}
	if n == nil || n.Kind == yaml.AliasNode {
		return nil
	}
	limit := w.Limit
	if limit <= 0 {
		limit = MaxNodes
	}
	if w.Nodes++; w.Nodes > limit {
		if !w.Over {
			w.Add(Pos(n), "the file has more than %d YAML nodes once aliases are followed; make it smaller", MaxNodes)
		}
		w.Over = true
		return nil
	}
	return n
}

// Entry is one key: value of a mapping.
type Entry struct {
	Key     string
	KeyNode *yaml.Node
	Value   *yaml.Node
}

// Kind names what n is for a message: "a map", "a list", "empty", or its value quoted.
func Kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	}
	if n.Tag == "!!null" {
		return "empty"
	}
	return fmt.Sprintf("%q", n.Value)
}

// Mapping returns the entries of the mapping n, reporting keys that are not plain words,
// merge keys (<<) and duplicates, each left out. When n is not a mapping it says so (what must
// be a map such as example) and returns false.
func (w *Walker) Mapping(n *yaml.Node, what, example string) ([]Entry, bool) {
	n = w.Node(n)
	if n == nil {
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		w.Add(Pos(n), "%s must be a map such as %s, not %s", what, example, Kind(n))
		return nil, false
	}
	var out []Entry
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := w.Node(n.Content[i])
		if k == nil {
			return nil, false
		}
		switch line, dup := seen[k.Value]; {
		case k.Kind != yaml.ScalarNode:
			w.Add(Pos(k), "a key of %s must be a plain word, not %s", what, Kind(k))
		case k.Value == "<<":
			w.Add(Pos(k), "merge keys (<<) are not supported; write the keys out")
		case dup:
			w.Add(Pos(k), "duplicate key %q in %s (first at line %d)", k.Value, what, line)
		default:
			seen[k.Value] = k.Line
			out = append(out, Entry{Key: k.Value, KeyNode: k, Value: n.Content[i+1]})
		}
	}
	return out, true
}
