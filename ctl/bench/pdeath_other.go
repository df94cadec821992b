//go:build !linux

package bench

import "os/exec"

// dieWithParent does nothing here: only Linux has a parent-death signal; the context that
// runs the child stops it on every path that returns.
func dieWithParent(*exec.Cmd) {}
