package scenario

import (
	"errors"
	"testing"
)

// FuzzParse: Parse never panics; it returns either a file or a non-empty *Errors with
// positions; a file's steps can be labelled and resolved. Seeds are in
// testdata/fuzz/FuzzParse (they run as a plain test).
func FuzzParse(f *testing.F) {
	f.Add([]byte("agents: {a: local}\nsteps: [{on: a, sleep: {duration: 1s}}]\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.yaml", data)
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T %v, want *Errors", err, err)
			}
			if file != nil {
				t.Fatal("a file and an error")
			}
			if len(errs.List) == 0 || len(errs.List) > maxErrors {
				t.Fatalf("%d problems", len(errs.List))
			}
			for _, e := range errs.List {
				if e.Pos.Line < 1 || e.Pos.Col < 1 || e.Msg == "" {
					t.Fatalf("problem without a position or message: %+v", e)
				}
			}
			return
		}
		if file == nil || len(file.Agents) == 0 || len(file.Steps) == 0 {
			t.Fatalf("valid file without agents or steps: %+v", file)
		}
		look := func(ref string) (string, error) { return "x", nil }
		var walk func([]*Step)
		walk = func(steps []*Step) {
			for _, s := range steps {
				_ = s.Label()
				switch {
				case s.Parallel != nil:
					walk(s.Parallel)
				case s.Repeat != nil:
					if s.Repeat.Count < 1 || s.Repeat.Count > MaxRepeat {
						t.Fatalf("repeat count %d", s.Repeat.Count)
					}
					walk(s.Repeat.Steps)
				default:
					if s.Action == "" {
						t.Fatalf("step without action at %v", s.Pos)
					}
					if r, err := Resolve("fuzz.yaml", s.Args, look); err == nil {
						_, _, _ = r.Data()
						_, _ = r.Uint("max_bytes")
						_, _ = r.Duration("timeout")
					}
					if s.Expect != nil {
						if r, err := Resolve("fuzz.yaml", s.Expect, look); err == nil {
							_ = Check(&r, Outcome{})
						}
					}
				}
			}
		}
		walk(file.Steps)
	})
}

// FuzzExpand: Expand never panics, and text without "$" comes back unchanged.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{"", "plain", "${a.b}", "$$", "${", "${${i}}", "$}${x${y}z}$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := Expand(raw, func(ref string) (string, error) { return "<" + ref + ">", nil })
		if err == nil && !containsDollar(raw) && got != raw {
			t.Fatalf("Expand(%q) = %q", raw, got)
		}
	})
}

func containsDollar(s string) bool {
	for i := range len(s) {
		if s[i] == '$' {
			return true
		}
	}
	return false
}
