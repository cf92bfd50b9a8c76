package gateway

import "time"

// pinger pings every connection of one transport once per period, a
// slice of them at a time, so that no connection needs a timer of its
// own: sockets get a WebSocket ping every 9/10 of PongWait, streams a
// keepalive comment every StreamKeepalive.
func (s *Server) pinger(period time.Duration, streams bool) {
	const slots = 8
	t := time.NewTicker(max(period/slots, time.Millisecond))
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
			if c.slot%slots == slot && (c.stream != nil) == streams {
				batch = append(batch, c)
			}
		}
		s.mu.Unlock()
		for _, c := range batch {
			f := pingFrame
			if streams {
				f = keepaliveComment
			}
			c.enqueueFrame(outFrame{data: f, control: true})
		}
		clear(batch)
		batch = batch[:0]
	}
}
