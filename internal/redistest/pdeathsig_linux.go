package redistest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill cmd's process when the thread that
// started it, and so the test process, ends.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
