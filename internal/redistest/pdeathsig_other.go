//go:build !linux

package redistest

import "os/exec"

// dieWithParent does nothing where the kernel cannot kill a child with its
// parent: a test process that is killed leaves its Redis servers running.
func dieWithParent(*exec.Cmd) {}
