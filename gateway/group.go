package gateway

import "sync"

// group runs goroutines that must be over when the server is: once
// closed it starts no more, and close waits for those running. Unlike a
// bare WaitGroup it may be asked to start one while it is being closed
// (a delivery that starts a catch-up during shutdown).
type group struct {
	mu     sync.Mutex // a leaf: nothing is taken under it
	closed bool
	wg     sync.WaitGroup
}

// Go runs f on a new goroutine unless the group is closed, and reports
// whether it did.
func (g *group) Go(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Go(f)
	return true
}

// close starts no more goroutines and waits for those running.
func (g *group) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}
