package scenario

import (
	"fmt"
	"strings"
)

// labelArgs are the arguments a label shows, in this order.
var labelArgs = [...]string{"network", "socket", "behaviour", "address", "mode", "local_address", "direction", "duration"}

// labelAt is the place of each of labelArgs.
var labelAt = func() map[string]int {
	m := map[string]int{}
	for i, k := range labelArgs {
		m[k] = i
	}
	return m
}()

func label(s *Step) string {
	switch {
	case s.Name != "":
		return s.Name
	case s.Parallel != nil:
		return fmt.Sprintf("parallel (%s)", plural(len(s.Parallel), "step"))
	case s.Repeat != nil:
		return fmt.Sprintf("repeat %dx (%s)", s.Repeat.Count, plural(len(s.Repeat.Steps), "step"))
	case s.Matrix != nil:
		return matrixLabel(s.Matrix)
	}
	// The action and the values of labelArgs, space-separated, made in one allocation, each
	// given argument looked up once: the runner labels every step of a run.
	var at [len(labelArgs)]string
	var given [len(labelArgs)]bool
	n := len(s.Action)
	for k, v := range s.Args {
		if i, ok := labelAt[k]; ok {
			at[i], given[i] = v.Raw, true
			n += 1 + len(v.Raw)
		}
	}
	if n == len(s.Action) { // (n counts a space per argument shown: none here)
		return s.Action
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(s.Action)
	for i := range labelArgs {
		if given[i] {
			b.WriteByte(' ')
			b.WriteString(at[i])
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
