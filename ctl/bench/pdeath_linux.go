package bench

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes cmd's process get SIGKILL when the thread that started it ends, so a
// crashed or killed run leaves no child (agent, iperf3) behind.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
