package lab

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// detach puts the child in a session of its own, so no terminal signal (Ctrl-C) meant for
// salab reaches it, and it outlives this process. An attached child gets SIGKILL when the
// thread that started it ends instead (`ip netns exec` execs the agent, which keeps the
// parent-death signal).
func detach(cmd *exec.Cmd, attached bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if attached {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "PID (COMM) STATE ...": COMM may hold spaces and parentheses; STATE follows the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return false
	}
	return data[i+2] != 'Z' && data[i+2] != 'X'
}

func signal(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }

// cmdline returns the arguments pid was started with.
func cmdline(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}
