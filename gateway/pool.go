package gateway

import "time"

// handlerPool runs functions on goroutines that outlive one call, so that
// the stacks they grew are reused; as many run as are needed at once, and
// each exits after idle with nothing to do.
type handlerPool struct {
	jobs chan func()
	idle time.Duration
}

func newHandlerPool(idle time.Duration) *handlerPool {
	return &handlerPool{jobs: make(chan func()), idle: idle}
}

// run runs f on an idle goroutine of the pool, or a new one.
func (p *handlerPool) run(f func()) {
	select {
	case p.jobs <- f:
	default:
		go p.work(f)
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
		}
	}
}
