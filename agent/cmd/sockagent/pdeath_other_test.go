//go:build !linux

package main

import "os/exec"

// dieWithTest does nothing here: only Linux has a parent-death signal; the tests' cleanups
// kill their children.
func dieWithTest(*exec.Cmd) {}
