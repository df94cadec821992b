package scenario

import (
	"github.com/sockagent/sockagent/ctl/diag"
	"github.com/sockagent/sockagent/ctl/internal/yamlwalk"
)

// maxErrors bounds the problems Parse reports.
const maxErrors = yamlwalk.MaxProblems

// problems collects validation errors of one file (yamlwalk.Problems).
type problems struct{ yamlwalk.Problems }

func (p *problems) add(pos Pos, format string, args ...any) { p.Add(pos, format, args...) }

func (p *problems) err() error { return p.Err() }

// Suggest returns the candidate closest to s when it is close enough to be a typo of it, or
// "": the "did you mean" of every sockctl file format.
func Suggest(s string, candidates []string) string { return diag.Suggest(s, candidates) }
