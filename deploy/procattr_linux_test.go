package deploy

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel send sig to cmd's process when the test
// process dies, so a killed or timed-out test leaves nothing running.
func dieWithTest(cmd *exec.Cmd, sig syscall.Signal) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: sig}
}
