package gateway

import "time"

// pinger pings every connection once per ping period (9/10 of PongWait), a slice of them at a
// time, so that no connection needs a timer of its own.
func (s *Server) pinger() {
	const slots = 8
	t := time.NewTicker(max(s.cfg.pingPeriod()/slots, time.Millisecond))
	defer t.Stop()
	var batch []*conn
	for slot := uint32(0); ; slot = (slot + 1) % slots {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		for c := range s.conns {
			if c.slot%slots == slot {
				batch = append(batch, c)
			}
		}
		s.mu.Unlock()
		for _, c := range batch {
			c.enqueueFrame(outFrame{data: pingFrame, control: true})
		}
		clear(batch)
		batch = batch[:0]
	}
}
