package gateway

import "time"

// handlerPool runs functions on goroutines that outlive one call, so that
// the stacks they grew are reused; as many run as are needed at once, and
// each exits after idle with nothing to do, or when the pool stops.
type handlerPool struct {
	jobs    chan func()
	idle    time.Duration
	quit    chan struct{} // closed by stop
	workers group
}

func newHandlerPool(idle time.Duration) *handlerPool {
	return &handlerPool{jobs: make(chan func()), idle: idle, quit: make(chan struct{})}
}

// run runs f on an idle goroutine of the pool, or a new one; once the
// pool has stopped, on the caller's.
func (p *handlerPool) run(f func()) {
	select {
	case p.jobs <- f:
	default:
		if !p.workers.Go(func() { p.work(f) }) {
			f()
		}
	}
}

func (p *handlerPool) work(f func()) {
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		f()
		t.Reset(p.idle)
		select {
		case f = <-p.jobs:
		case <-t.C:
			return
		case <-p.quit:
			return
		}
	}
}

// stop ends the idle workers and waits for the busy ones to finish what
// they run. Called once, by Shutdown.
func (p *handlerPool) stop() {
	close(p.quit)
	p.workers.close()
}
