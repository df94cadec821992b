package scenario

import (
	"fmt"
	"slices"

	"github.com/sockagent/sockagent/ctl/diag"
)

// maxErrors bounds the problems Parse reports.
const maxErrors = 50

// problems collects validation errors of one file.
type problems struct {
	path string
	list []Error
}

func (p *problems) add(pos Pos, format string, args ...any) {
	p.list = append(p.list, Error{Path: p.path, Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// err returns the problems sorted by position, at most maxErrors of them, as a *Errors, or
// nil when there are none.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	list := slices.Clone(p.list)
	slices.SortStableFunc(list, func(a, b Error) int {
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line - b.Pos.Line
		}
		return a.Pos.Col - b.Pos.Col
	})
	list = slices.CompactFunc(list, func(a, b Error) bool { return a == b })
	if len(list) > maxErrors {
		n := len(list)
		list = list[:maxErrors-1]
		list = append(list, Error{Path: p.path, Pos: list[len(list)-1].Pos,
			Msg: fmt.Sprintf("too many problems (%d in all); fix these and run again", n)})
	}
	return &Errors{List: list}
}

// Suggest returns the candidate closest to s when it is close enough to be a typo of it, or
// "": the "did you mean" of every sockctl file format.
func Suggest(s string, candidates []string) string { return diag.Suggest(s, candidates) }
