package main

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes cmd's process die when the test process does (SIGKILL from the kernel), so
// a crashed or killed test leaves no agent behind.
func dieWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
