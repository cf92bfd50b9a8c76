//go:build !linux

package gateway

import (
	"syscall"
	"time"
)

// sysScratch is empty where there is no non-blocking writev.
type sysScratch struct{}

// writeNow writes nothing: every batch is written by a goroutine that may
// block.
func (*sysScratch) writeNow(syscall.RawConn, [][]byte) (int, error) { return 0, nil }

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not set.
func setUserTimeout(syscall.RawConn, time.Duration) {}
