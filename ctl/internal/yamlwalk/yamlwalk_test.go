package yamlwalk

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sockagent/sockagent/ctl/diag"
)

func root(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

func messages(w *Walker) string {
	var b strings.Builder
	for _, e := range w.List {
		fmt.Fprintf(&b, "%d:%d %s\n", e.Pos.Line, e.Pos.Col, e.Msg)
	}
	return b.String()
}

// TestMapping: keys that are not plain words, merge keys and duplicates are reported where
// they are and left out; the rest come in file order; aliases are followed.
func TestMapping(t *testing.T) {
	w := &Walker{Problems: Problems{Path: "f.yaml"}, Limit: MaxNodes}
	n := root(t, "base: &b {x: 1}\nk: 1\n[a]: 2\n<<: *b\nk: 3\nv: *b\n")
	es, ok := w.Mapping(n, "the top", "{k: 1}")
	if !ok || len(es) != 3 || es[0].Key != "base" || es[1].Key != "k" || es[1].Value.Value != "1" || es[2].Key != "v" {
		t.Fatalf("entries %+v, %v", es, ok)
	}
	if v := w.Node(es[2].Value); v == nil || v.Kind != yaml.MappingNode || v.Line != 1 {
		t.Errorf("the alias *b: %+v, want the anchored map of line 1", v)
	}
	want := "3:1 a key of the top must be a plain word, not a list\n" +
		"4:1 merge keys (<<) are not supported; write the keys out\n" +
		"5:1 duplicate key \"k\" in the top (first at line 2)\n"
	if got := messages(w); got != want {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
	if _, ok := w.Mapping(root(t, "[1, 2]"), "agents", "{h1: ...}"); ok {
		t.Error("a list read as a map")
	}
	if got := w.List[len(w.List)-1].Msg; got != "agents must be a map such as {h1: ...}, not a list" {
		t.Errorf("not a map: %q", got)
	}
}

// TestNodeBudget: Limit nodes are walked, the next is refused and reported once; aliases
// count as the nodes they name, every time.
func TestNodeBudget(t *testing.T) {
	n := root(t, "a: &x 1\nb: *x\nc: *x\n")
	w := &Walker{Problems: Problems{Path: "f.yaml"}, Limit: 5}
	for i, c := range n.Content[:5] {
		if w.Node(c) == nil {
			t.Fatalf("node %d of a budget of 5 refused", i+1)
		}
	}
	if w.Over || len(w.List) != 0 {
		t.Fatalf("over %v, problems %v within the budget", w.Over, w.List)
	}
	if w.Node(n.Content[5]) != nil || w.Node(n.Content[0]) != nil || !w.Over || w.Nodes != 7 {
		t.Fatalf("past the budget: over %v, nodes %d", w.Over, w.Nodes)
	}
	if len(w.List) != 1 || w.List[0].Msg != "the file has more than 200000 YAML nodes once aliases are followed; make it smaller" || w.List[0].Pos != (diag.Pos{Line: 1, Col: 4}) {
		t.Errorf("problems %+v, want one, at the 6th node (the alias's anchored node, 1:4)", w.List)
	}
	// An alias that names itself (a loop no parser makes, but a node tree can hold) ends.
	loop := &yaml.Node{Kind: yaml.AliasNode}
	loop.Alias = loop
	if w := (&Walker{Limit: MaxNodes}); w.Node(loop) != nil || w.Node(nil) != nil {
		t.Error("an alias loop or nil gave a node")
	}
}

// TestKind names each kind of node as messages do.
func TestKind(t *testing.T) {
	for src, want := range map[string]string{"{a: 1}": "a map", "[1]": "a list", "~": "empty", "x": `"x"`, `""`: `""`} {
		if got := Kind(root(t, src)); got != want {
			t.Errorf("Kind(%s) = %s, want %s", src, got, want)
		}
	}
}

// TestErr: problems in file order, each once, at most MaxProblems, the last one counting them.
func TestErr(t *testing.T) {
	var p Problems
	if p.Err() != nil {
		t.Fatal("no problems, an error")
	}
	p.Path = "f.yaml"
	p.Add(diag.Pos{Line: 2, Col: 1}, "second")
	p.Add(diag.Pos{Line: 1, Col: 5}, "first %d", 1)
	p.Add(diag.Pos{Line: 2, Col: 1}, "second")
	var errs *diag.Errors
	if err := p.Err(); !errors.As(err, &errs) || len(errs.List) != 2 || errs.List[0].Msg != "first 1" || errs.List[1].Msg != "second" || errs.List[0].Path != "f.yaml" {
		t.Fatalf("%v", err)
	}
	for i := range 60 {
		p.Add(diag.Pos{Line: 10 + i, Col: 1}, "p%d", i)
	}
	if err := p.Err(); !errors.As(err, &errs) || len(errs.List) != MaxProblems ||
		errs.List[MaxProblems-1].Msg != "too many problems (62 in all); fix these and run again" ||
		errs.List[MaxProblems-1].Pos != errs.List[MaxProblems-2].Pos {
		t.Fatalf("%d problems, last %+v", len(errs.List), errs.List[len(errs.List)-1])
	}
}
