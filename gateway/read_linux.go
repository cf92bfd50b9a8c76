//go:build linux

package gateway

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// awaitReadable waits, reading nothing, until the client has sent
// something or closed its side, or the read deadline passed. It returns
// at once while the connection's reader holds bytes, and for a socket
// without a system handle, whose reads then wait themselves.
func (c *conn) awaitReadable() error {
	if c.raw == nil || c.buffered() {
		return nil
	}
	return c.raw.Read(peek)
}

// peek reports whether socket fd has something to read: a byte, the end
// of the client's side, or an error. false makes RawConn.Read wait until
// the socket is readable and ask again.
func peek(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if errno != unix.EINTR {
			return errno != unix.EAGAIN
		}
	}
}
