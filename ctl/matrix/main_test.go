package matrix

import (
	"testing"

	"go.uber.org/goleak"

	goldenfile "github.com/sockagent/sockagent/ctl/internal/golden"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// golden compares got with testdata/name (go test -update rewrites it).
func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, "testdata/"+name, got)
}

func mustParse(t *testing.T, src string) *File {
	t.Helper()
	f, err := Parse("m.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return f
}
