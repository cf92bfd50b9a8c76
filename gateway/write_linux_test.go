package gateway

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSetUserTimeout: the kernel holds the bound a stream's socket gets.
func TestSetUserTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := streamUserTimeout(&Config{StreamKeepalive: 15 * time.Second, WriteWait: 10 * time.Second})
	setUserTimeout(raw, want)
	var got int
	raw.Control(func(fd uintptr) {
		got, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	})
	if err != nil || time.Duration(got)*time.Millisecond != want || want != 55*time.Second {
		t.Fatalf("TCP_USER_TIMEOUT %d ms (%v), want %v = 55 s", got, err, want)
	}
}
