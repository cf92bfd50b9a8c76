package main

import (
	"bytes"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/valyala/fasthttp"
)

// The gateway's counters of bus messages (GET /metrics): received from
// Redis, and of those, on a channel a local connection followed.
const (
	metricBusMessages = "callgate_bus_messages_total"
	metricBusFollowed = "callgate_bus_messages_followed_total"
)

// busCounts are one gateway's bus counters.
type busCounts struct{ received, followed float64 }

// busWatch reads every target's bus counters at the start and end of a
// phase. It needs the targets to be the instances themselves: through a
// load balancer, each scrape reaches any instance.
type busWatch struct {
	b      *bench
	before []busCounts
	err    error
}

func (b *bench) startBusWatch() *busWatch {
	w := &busWatch{b: b}
	w.before, w.err = b.scrapeBus()
	return w
}

// finish reads the counters again and reports what each target received
// and needed since start; an error if a target does not export them.
func (w *busWatch) finish() *BusResult {
	after, err := w.b.scrapeBus()
	if err == nil {
		err = w.err
	}
	if err != nil {
		return &BusResult{Error: err.Error()}
	}
	r := &BusResult{}
	for i, t := range w.b.cfg.Targets {
		bt := BusTarget{
			Target:   t,
			Received: int64(after[i].received - w.before[i].received),
			Followed: int64(after[i].followed - w.before[i].followed),
		}
		bt.PerFollowed = ratio(bt.Received, bt.Followed)
		r.Targets = append(r.Targets, bt)
		r.Received += bt.Received
		r.Followed += bt.Followed
	}
	r.PerFollowed = ratio(r.Received, r.Followed)
	return r
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return round3(float64(a) / float64(b))
}

// scrapeBus reads the bus counters of every target.
func (b *bench) scrapeBus() ([]busCounts, error) {
	out := make([]busCounts, len(b.cfg.Targets))
	for i, t := range b.cfg.Targets {
		c, err := b.scrapeBusOf(t)
		if err != nil {
			return nil, fmt.Errorf("%s/metrics: %w", t, err)
		}
		out[i] = c
	}
	return out, nil
}

func (b *bench) scrapeBusOf(target string) (busCounts, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(target + "/metrics")
	// Text, not protobuf or OpenMetrics: that is what expfmt's parser reads.
	req.Header.Set("Accept", "text/plain")
	// Larger than the answers to webhooks that the client is sized for.
	c := &fasthttp.Client{ReadTimeout: 10 * time.Second, MaxResponseBodySize: 16 << 20}
	if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
		return busCounts{}, err
	}
	if resp.StatusCode() != http.StatusOK {
		return busCounts{}, fmt.Errorf("status %d", resp.StatusCode())
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(resp.Body()))
	if err != nil {
		return busCounts{}, err
	}
	var bc busCounts
	for name, v := range map[string]*float64{metricBusMessages: &bc.received, metricBusFollowed: &bc.followed} {
		f := families[name]
		if f == nil || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetCounter() == nil {
			return busCounts{}, fmt.Errorf("no counter %s (a gateway from before it, or not an instance)", name)
		}
		*v = f.GetMetric()[0].GetCounter().GetValue()
	}
	return bc, nil
}
