//go:build linux

package gateway

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovecs is Linux's limit on buffers per writev (IOV_MAX).
const maxIovecs = 1024

// sysScratch is a writer's reusable iovec array.
type sysScratch struct {
	iov []unix.Iovec
}

// writeNow writes as much of bufs to the socket as it takes without
// waiting, with one writev per 1024 buffers, and returns how many bytes
// that was. A nil raw (not a system socket) writes nothing.
func (s *sysScratch) writeNow(raw syscall.RawConn, bufs [][]byte) (int, error) {
	if raw == nil {
		return 0, nil
	}
	written := 0
	i, off := 0, 0 // the next byte to write is bufs[i][off]
	for {
		for i < len(bufs) && off == len(bufs[i]) {
			i, off = i+1, 0
		}
		if i == len(bufs) {
			return written, nil
		}
		iov := s.iov[:0]
		for j, o := i, off; j < len(bufs) && len(iov) < maxIovecs; j, o = j+1, 0 {
			b := bufs[j][o:]
			if len(b) == 0 {
				continue
			}
			v := unix.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			iov = append(iov, v)
		}
		s.iov = iov
		var (
			n     int
			errno syscall.Errno
		)
		err := raw.Write(func(fd uintptr) bool {
			r, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
			n, errno = int(r), e
			return true // never wait: a full socket is finished elsewhere
		})
		clear(iov) // drop references to the frames
		switch {
		case err != nil:
			return written, err
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			return written, nil
		case errno != 0:
			return written, errno
		}
		if n == 0 {
			return written, nil // let the blocking writer sort it out
		}
		written += n
		for n > 0 {
			if rest := len(bufs[i]) - off; n >= rest {
				n -= rest
				i, off = i+1, 0
			} else {
				off += n
				n = 0
			}
		}
	}
}

// setUserTimeout bounds how long data written to the socket may stay
// unacknowledged before the kernel drops the connection
// (TCP_USER_TIMEOUT): a client that vanished without closing is then
// noticed at the next write that goes unanswered. A nil raw does
// nothing.
func setUserTimeout(raw syscall.RawConn, d time.Duration) {
	if raw == nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
}
