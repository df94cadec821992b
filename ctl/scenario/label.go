package scenario

import (
	"fmt"
	"strings"
)

// labelArgs are the arguments a label shows, in this order.
var labelArgs = []string{"network", "socket", "behaviour", "address", "mode", "local_address", "direction", "duration"}

func label(s *Step) string {
	switch {
	case s.Name != "":
		return s.Name
	case s.Parallel != nil:
		return fmt.Sprintf("parallel (%s)", plural(len(s.Parallel), "step"))
	case s.Repeat != nil:
		return fmt.Sprintf("repeat %dx (%s)", s.Repeat.Count, plural(len(s.Repeat.Steps), "step"))
	}
	// The action and the values of labelArgs, space-separated, made in one allocation: the
	// runner labels every step of a run.
	n := len(s.Action)
	for _, k := range labelArgs {
		if v, ok := s.Args[k]; ok {
			n += 1 + len(v.Raw)
		}
	}
	if n == len(s.Action) {
		return s.Action
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(s.Action)
	for _, k := range labelArgs {
		if v, ok := s.Args[k]; ok {
			b.WriteByte(' ')
			b.WriteString(v.Raw)
		}
	}
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
