//go:build !linux

package lab

import (
	"errors"
	"os/exec"
	"syscall"
)

// A lab needs Linux network namespaces; elsewhere the package builds but does nothing.

var errNotLinux = errors.New("salab needs Linux (network namespaces)")

func detach(*exec.Cmd, bool)           {}
func alive(int) bool                   { return false }
func signal(int, syscall.Signal) error { return errNotLinux }
func cmdline(int) []string             { return nil }
