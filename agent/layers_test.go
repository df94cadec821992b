package agent_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestEngineImportsNoGRPC proves with go list that the engine and the contract link neither
// gRPC nor the generated API nor package agent, and that the contract is a leaf (the standard
// library only): the layering is the compiler's, not a convention.
func TestEngineImportsNoGRPC(t *testing.T) {
	t.Parallel()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, tc := range []struct {
		pkg       string
		forbidden []string
		leaf      bool
	}{
		{"github.com/sockagent/sockagent/agent/internal/engine", []string{"google.golang.org/grpc", "google.golang.org/protobuf", "github.com/sockagent/sockagent/gen/", "github.com/sockagent/sockagent/agent\n"}, false},
		{"github.com/sockagent/sockagent/agent/contract", nil, true},
		// Authentication decides from plain values, so its tests need no server.
		{"github.com/sockagent/sockagent/agent/internal/auth", []string{"google.golang.org/grpc", "google.golang.org/protobuf", "github.com/sockagent/sockagent/gen/", "github.com/sockagent/sockagent/agent\n"}, false},
		{"github.com/sockagent/sockagent/agent/policy", []string{"google.golang.org/grpc", "github.com/sockagent/sockagent/gen/"}, false},
	} {
		out, err := exec.Command(goBin, "list", "-deps", "-test=false", tc.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", tc.pkg, err, out)
		}
		deps := string(out)
		for _, f := range tc.forbidden {
			for _, d := range strings.Split(deps, "\n") {
				if strings.HasPrefix(d+"\n", f) {
					t.Errorf("%s depends on %s", tc.pkg, d)
				}
			}
		}
		if tc.leaf {
			for _, d := range strings.Split(strings.TrimSpace(deps), "\n") {
				if strings.Contains(d, ".") && d != tc.pkg {
					t.Errorf("%s is not a leaf: it depends on %s", tc.pkg, d)
				}
			}
		}
	}
}

var (
	mainPkg  = regexp.MustCompile(`(?m)^package main$`)
	initFunc = regexp.MustCompile(`(?m)^func init\(\) \{`)
)

// TestNoInitInLibraries: importing a library package of the module changes no process-wide
// state, so none has an init function; process-wide options (bufpool.Install, the open-file
// limit) are the mains' to set. A package under a cmd/ directory is part of its program (only
// that main imports it: sockctl's oneproc sets GOMAXPROCS before the others initialise).
func TestNoInitInLibraries(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "gen" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if mainPkg.Match(src) || strings.Contains(filepath.ToSlash(path), "/cmd/") {
			return nil
		}
		if initFunc.Match(src) {
			t.Errorf("%s: a library package has an init function", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
