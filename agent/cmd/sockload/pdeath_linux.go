package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes cmd's process die (SIGKILL from the kernel) when sockload does, so that
// a sockload killed mid-run, or a test that runs it and crashes, leaves no agent or soak
// client behind.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
