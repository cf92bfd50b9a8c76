//go:build !linux

package gateway

// awaitReadable returns at once where the socket is not peeked at: the
// frame reader's reads wait instead, on the goroutine that handles the
// connection's frames, which an idle connection then holds.
func (c *conn) awaitReadable() error { return nil }
