package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// errSetup marks a run that could not start: calls not registered, or no
// socket connected.
var errSetup = errors.New("setup failed")

// run runs cfg's scenario and returns its results; progress lines go to
// progress. The run ends by itself: setup within --setup-timeout, then
// --duration (or --max-events), then --drain.
func run(ctx context.Context, cfg config, progress io.Writer) (*Result, error) {
	b := newBench(cfg, progress)
	defer b.http.CloseIdleConnections()
	// Registering and connecting have --setup-timeout each.
	ctx, cancel := context.WithTimeout(ctx, 2*cfg.SetupTimeout+cfg.Duration+cfg.Drain+time.Minute)
	defer cancel()
	p := b.startProgress()
	defer p.stop()
	var res *Result
	var err error
	switch cfg.Scenario {
	case "fanout", "calls":
		res, err = b.runEvents(ctx, p)
	case "idle":
		res, err = b.runIdle(ctx, p)
	case "churn":
		res, err = b.runChurn(ctx, p)
	default:
		return nil, fmt.Errorf("unknown scenario %q", cfg.Scenario)
	}
	if res != nil {
		b.finish(res)
	}
	return res, err
}

// connect opens sockets 0..n-1 and, when subscribe names a call for a
// socket, subscribes it. Sockets that fail are counted and left out.
func (b *bench) connect(ctx context.Context, n int, subscribe func(i int) *callState) []*sock {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.SetupTimeout)
	defer cancel()
	socks := make([]*sock, n)
	forEach(ctx, n, b.cfg.Concurrency, func(i int) {
		c := subscribe(i)
		s, err := b.dial(ctx, i, c)
		if err != nil {
			b.connectErrors.Add(1)
			b.fail("connect failed", "%v", err)
			return
		}
		if c != nil {
			start := time.Now()
			if err := s.request(ctx, "subscribe", c.sid, "subscribed"); err != nil {
				b.subErrors.Add(1)
				b.fail("subscribe failed", "socket %d: %v", i, err)
				s.close()
				return
			}
			s.subscribedAt = time.Now()
			b.subscribeH.Record(s.subscribedAt.Sub(start))
		}
		socks[i] = s
	})
	out := socks[:0]
	for _, s := range socks {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// closeAll closes every socket and waits for their readers.
func closeAll(socks []*sock) {
	forEach(context.Background(), len(socks), 256, func(i int) { socks[i].close() })
}

// setupCalls registers n new calls within the setup timeout.
func (b *bench) setupCalls(ctx context.Context, p *progress, n int) ([]*callState, error) {
	cs := b.newCalls(n)
	p.phase(fmt.Sprintf("registering %d calls", n))
	ctx, cancel := context.WithTimeout(ctx, b.cfg.SetupTimeout)
	defer cancel()
	if err := b.register(ctx, cs); err != nil {
		return nil, fmt.Errorf("%w: %w", errSetup, err)
	}
	return cs, nil
}

// runEvents runs fanout and calls: subscribers on calls, then webhooks,
// then a drain, then the accounting of every event by subscriber.
func (b *bench) runEvents(ctx context.Context, p *progress) (*Result, error) {
	cfg := b.cfg
	res := b.newResult()
	cs, err := b.setupCalls(ctx, p, cfg.Calls)
	if err != nil {
		return res, err
	}
	n := cfg.Calls * cfg.Subscribers
	p.phase(fmt.Sprintf("connecting %d subscribers", n))
	socks := b.connect(ctx, n, func(i int) *callState { return cs[i%len(cs)] })
	defer closeAll(socks)
	if len(socks) == 0 {
		return res, fmt.Errorf("%w: no subscriber connected", errSetup)
	}
	perCall := make(map[*callState]int64)
	for _, s := range socks {
		perCall[s.call]++
	}
	// expected is what the subscribers should have received by now.
	expected := func() int64 {
		var n int64
		for c, subs := range perCall {
			c.mu.Lock()
			n += int64(len(c.published)) * subs
			c.mu.Unlock()
		}
		return n
	}

	m, err := b.startMeasuring(ctx, true)
	if err != nil {
		return res, err
	}
	start := time.Now()
	p.phase("publishing")
	stop := make(chan struct{})
	timer := time.AfterFunc(cfg.Duration, func() { close(stop) })
	b.publish(ctx, cs, stop)
	timer.Stop()
	published := time.Now()

	p.phase("draining")
	b.awaitDeliveries(ctx, expected, cfg.Drain)
	end := time.Now()
	m.finish(ctx, res, "webhook", b.published.Load())
	res.Connections.OpenAtEnd = int(b.open.Load())
	p.phase("closing")
	closeAll(socks)
	// Every reader and every webhook has returned: the transcripts that
	// came before their webhook's answer can be timed now.
	for _, s := range socks {
		s.settle()
	}
	b.webhookStages(cs)

	res.PublishSeconds = round3(published.Sub(start).Seconds())
	res.Seconds = round3(end.Sub(start).Seconds())
	d := &Deliveries{}
	events := make(map[*callState][]publishedEvent, len(cs))
	for _, c := range cs {
		events[c] = c.events()
	}
	for _, s := range socks {
		for _, e := range events[s.call] {
			if e.sent.Before(s.subscribedAt) {
				continue
			}
			d.Expected++
			if !s.received(e.id) {
				d.Lost++
			}
		}
	}
	d.Delivered = b.delivered.Load()
	d.Duplicated = b.duplicated.Load()
	d.Reordered = b.reordered.Load()
	d.PerSecond = perSecond(d.Delivered, end.Sub(start))
	d.Latency = b.latencyH.Summary()
	d.FromHTTPStart = b.fromStartH.Summary()
	d.Stages = stages(&b.fromStartH, []namedHist{
		{"http start -> publish", &b.startToPublishH},
		{"publish -> socket read", &b.latencyH},
	})
	d.Untimed = b.untimed.Load()
	d.StatusEvents = b.statuses.Load()
	res.Deliveries = d
	res.Connections.Subscribed = len(socks)
	if total := res.totalCPU(); total > 0 && d.Delivered > 0 {
		res.CPUMicrosPerDelivery = round3(total * 1e6 / float64(d.Delivered))
	}
	return res, nil
}

// delivery wakes awaitDeliveries after a delivery was counted. The check
// of draining comes after the count, and awaitDeliveries sets draining
// before it reads the count: one of the two sees the other.
func (b *bench) delivery() {
	if b.draining.Load() {
		select {
		case b.deliveredSignal <- struct{}{}:
		default:
		}
	}
}

// awaitDeliveries waits until the subscribers have received the expected
// number of events, for at most drain: what has not arrived by then
// counts as lost.
func (b *bench) awaitDeliveries(ctx context.Context, expected func() int64, drain time.Duration) {
	b.draining.Store(true)
	defer b.draining.Store(false)
	timer := time.NewTimer(drain)
	defer timer.Stop()
	for b.delivered.Load() < expected() {
		select {
		case <-b.deliveredSignal:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// runIdle opens sockets each subscribed to its own call and holds them.
func (b *bench) runIdle(ctx context.Context, p *progress) (*Result, error) {
	cfg := b.cfg
	res := b.newResult()
	cs, err := b.setupCalls(ctx, p, cfg.Connections)
	if err != nil {
		return res, err
	}
	// Memory is measured from here: the calls' records are in place, so
	// the growth is the sockets' and subscriptions' own. The API's
	// keep-alive connections are not part of it.
	b.http.CloseIdleConnections()
	m, err := b.startMeasuring(ctx, false)
	if err != nil {
		return res, err
	}
	start := time.Now()
	p.phase(fmt.Sprintf("connecting %d sockets", len(cs)))
	socks := b.connect(ctx, len(cs), func(i int) *callState { return cs[i] })
	defer closeAll(socks)
	if len(socks) == 0 {
		return res, fmt.Errorf("%w: no socket connected", errSetup)
	}
	res.ConnectSeconds = round3(time.Since(start).Seconds())
	p.phase("holding")
	hold := time.NewTimer(cfg.Duration)
	select {
	case <-hold.C:
	case <-ctx.Done():
		hold.Stop()
	}
	open := 0
	for _, s := range socks {
		if s.alive() {
			open++
		}
	}
	m.finish(ctx, res, "", 0)
	res.Seconds = round3(time.Since(start).Seconds())
	res.Connections.Subscribed = len(socks)
	res.Connections.OpenAtEnd = open
	var grew int64
	ok := len(res.Processes) > 0
	for _, pr := range res.Processes {
		ok = ok && pr.Error == ""
		grew += pr.RSSAfterKB - pr.RSSBeforeKB
	}
	if ok && len(socks) > 0 {
		res.RSSPerConnectionKB = round3(float64(grew) / float64(len(socks)))
	}
	p.phase("closing")
	return res, nil
}

// runChurn subscribes and unsubscribes over a pool of sockets.
func (b *bench) runChurn(ctx context.Context, p *progress) (*Result, error) {
	cfg := b.cfg
	res := b.newResult()
	cs, err := b.setupCalls(ctx, p, cfg.Calls)
	if err != nil {
		return res, err
	}
	p.phase(fmt.Sprintf("connecting %d sockets", cfg.Connections))
	socks := b.connect(ctx, cfg.Connections, func(int) *callState { return nil })
	defer closeAll(socks)
	if len(socks) == 0 {
		return res, fmt.Errorf("%w: no socket connected", errSetup)
	}

	var all *rate.Limiter
	if cfg.Rate > 0 {
		all = rate.NewLimiter(rate.Limit(cfg.Rate), max(1, int(cfg.Rate/100)))
	}
	// A pair is two frames; each socket stays at 90% of the gateway's
	// frame rate limit.
	perSocket := rate.Limit(cfg.FrameRate * 0.9 / 2)
	m, err := b.startMeasuring(ctx, false)
	if err != nil {
		return res, err
	}
	start := time.Now()
	p.phase("churning")
	cctx, ccancel := context.WithTimeout(ctx, cfg.Duration)
	defer ccancel()
	var taken atomic.Int64
	var wg sync.WaitGroup
	for i, s := range socks {
		wg.Go(func() {
			mine := rate.NewLimiter(perSocket, 1)
			for k := 0; cctx.Err() == nil; k++ {
				if mine.Wait(cctx) != nil || all != nil && all.Wait(cctx) != nil {
					return
				}
				if taken.Add(1) > int64(cfg.MaxEvents) {
					return
				}
				c := cs[(i+k)%len(cs)]
				t0 := time.Now()
				if err := s.request(ctx, "subscribe", c.sid, "subscribed"); err != nil {
					b.subErrors.Add(1)
					b.fail("subscribe failed", "socket %d: %v", s.n, err)
					if !s.alive() {
						return
					}
					continue
				}
				t1 := time.Now()
				b.subscribeH.Record(t1.Sub(t0))
				if err := s.request(ctx, "unsubscribe", c.sid, "unsubscribed"); err != nil {
					b.unsubErrors.Add(1)
					b.fail("unsubscribe failed", "socket %d: %v", s.n, err)
					if !s.alive() {
						return
					}
					continue
				}
				b.unsubscribeH.Record(time.Since(t1))
				b.pairs.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	pairs := b.pairs.Load()
	m.finish(ctx, res, "pair", pairs)
	res.Seconds = round3(elapsed.Seconds())
	res.Connections.OpenAtEnd = int(b.open.Load())
	res.Churn = &Churn{
		Pairs:       pairs,
		PerSecond:   perSecond(pairs, elapsed),
		Unsubscribe: b.unsubscribeH.Summary(),
		Errors:      b.subErrors.Load() + b.unsubErrors.Load(),
	}
	if total := res.totalCPU(); total > 0 && pairs > 0 {
		res.CPUMicrosPerPair = round3(total * 1e6 / float64(pairs))
	}
	p.phase("closing")
	return res, nil
}

// measuring samples what a run measures besides its clients, over its
// measured phase: the --pids processes and the machine, this process's
// CPU time, the Redis of --redis, and the gateways' bus counters.
type measuring struct {
	proc  *procWatch
	redis *redisWatch
	bus   *busWatch
	cpu0  time.Duration
}

// startMeasuring takes the first samples; bus says whether to read the
// gateways' bus counters.
func (b *bench) startMeasuring(ctx context.Context, bus bool) (*measuring, error) {
	m := &measuring{proc: newProcWatch(b.cfg.PIDs)}
	if b.cfg.Redis != "" {
		w, err := startRedisWatch(ctx, b.cfg.Redis)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errSetup, err)
		}
		m.redis = w
	}
	if bus {
		m.bus = b.startBusWatch()
	}
	m.proc.start()
	m.cpu0 = selfCPU()
	return m, nil
}

// finish takes the last samples into res; Redis's CPU time is divided by
// n units (webhooks or pairs).
func (m *measuring) finish(ctx context.Context, res *Result, unit string, n int64) {
	res.Processes, res.Machine = m.proc.finish()
	res.BenchCPUSeconds = round3((selfCPU() - m.cpu0).Seconds())
	if m.redis != nil {
		res.Redis = m.redis.finish(ctx, unit, n)
	}
	if m.bus != nil {
		res.Bus = m.bus.finish()
	}
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return round3(float64(n) / d.Seconds())
}

// progress prints a line every --progress to the run's progress writer.
type progress struct {
	b     *bench
	start time.Time
	mu    sync.Mutex
	what  string
	since time.Time
	done  chan struct{}
	wg    sync.WaitGroup
}

func (b *bench) startProgress() *progress {
	p := &progress{b: b, start: time.Now(), since: time.Now(), done: make(chan struct{})}
	if b.cfg.Progress <= 0 || b.out == nil {
		return p
	}
	p.wg.Go(func() {
		t := time.NewTicker(b.cfg.Progress)
		defer t.Stop()
		var lastPub, lastDel, lastPairs int64
		last := time.Now()
		for {
			select {
			case <-p.done:
				return
			case now := <-t.C:
				pub, del, pairs := b.published.Load(), b.delivered.Load(), b.pairs.Load()
				secs := now.Sub(last).Seconds()
				p.mu.Lock()
				what := p.what
				p.mu.Unlock()
				line := fmt.Sprintf("[%6.1fs] %-22s conns %d", now.Sub(p.start).Seconds(), what, b.open.Load())
				switch b.cfg.Scenario {
				case "fanout", "calls":
					line += fmt.Sprintf("  published %d (%.0f/s)  delivered %d (%.0f/s)  lost so far %d  dup %d",
						pub, float64(pub-lastPub)/secs, del, float64(del-lastDel)/secs, b.missing.Load(), b.duplicated.Load())
				case "churn":
					line += fmt.Sprintf("  pairs %d (%.0f/s)", pairs, float64(pairs-lastPairs)/secs)
				}
				line += fmt.Sprintf("  errors %d", b.errors())
				fmt.Fprintln(b.out, line)
				lastPub, lastDel, lastPairs, last = pub, del, pairs, now
			}
		}
	})
	return p
}

func (p *progress) phase(what string) {
	p.mu.Lock()
	p.what, p.since = what, time.Now()
	p.mu.Unlock()
}

func (p *progress) stop() {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.wg.Wait()
}
