package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/callgate/callgate/gateway"
)

// metrics is one instance's Prometheus registry. Each instance has its own
// (tests run several in one process).
type metrics struct {
	reg      *prometheus.Registry
	webhooks *prometheus.CounterVec
	latency  prometheus.Histogram
}

func newMetrics(a *app) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callgate_webhook_requests_total",
		Help: "Webhook requests by endpoint and HTTP status code.",
	}, []string{"endpoint", "code"})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "callgate_publish_to_socket_seconds",
		Help: "Time from an event's publication (its time field) to its write to a socket.",
		// 250 µs to about 8 s.
		Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
	})
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	// One series per transport: WebSockets, and Server-Sent Events
	// streams.
	connections := func(transport string, f func(gateway.Stats) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "callgate_connections",
			Help:        "Open client connections, by transport: websocket or sse (Server-Sent Events).",
			ConstLabels: prometheus.Labels{"transport": transport},
		}, func() float64 { return float64(f(a.gw.Stats())) })
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.webhooks, m.latency,
		connections("websocket", func(s gateway.Stats) int64 { return s.Connections - s.Streams }),
		connections("sse", func(s gateway.Stats) int64 { return s.Streams }),
		gauge("callgate_subscriptions", "Call subscriptions of open connections.",
			func() float64 { return float64(a.gw.Stats().Subscriptions) }),
		gauge("callgate_redis_channels", "Redis channels this instance is subscribed to.",
			func() float64 { return float64(a.bus.Channels()) }),
		counter("callgate_events_published_total", "Events published by this instance (repeated deliveries not counted).",
			func() float64 { return float64(a.events.Published()) }),
		counter("callgate_events_delivered_total", "Event and state frames queued to sockets.",
			func() float64 { return float64(a.gw.Stats().Delivered) }),
		counter("callgate_events_dropped_total", "Frames not queued: the socket's queue was full, or the frame was malformed.",
			func() float64 { return float64(a.gw.Stats().Dropped) }),
		counter("callgate_send_queue_overflows_total", "Sockets disconnected because their send queue overflowed.",
			func() float64 { return float64(a.gw.Stats().Overflows) }),
		gauge("callgate_webhook_unverified_bytes", "Bytes of webhook bodies held now before their signature is checked (--webhook-body-budget bounds it).",
			func() float64 { return float64(a.calls.WebhookBytesHeld()) }),
		counter("callgate_webhook_busy_total", "Webhooks answered 503 busy because --webhook-body-budget was full.",
			func() float64 { return float64(a.calls.WebhooksBusy()) }),
		counter("callgate_redis_reconnects_total", "Times the Redis subscriber connection was restored after a failure.",
			func() float64 { return float64(a.bus.Reconnects()) }),
		counter("callgate_bus_messages_total", "Messages received from Redis Pub/Sub: call events and topic states.",
			func() float64 { return float64(a.gw.Stats().BusMessages) }),
		counter("callgate_bus_messages_followed_total", "Messages received from Redis Pub/Sub on a channel that a local connection followed; the total divided by this is how many messages the instance received for each one it needed.",
			func() float64 { return float64(a.gw.Stats().BusFollowed) }),
	)
	return m
}

// observeLatency records a publish-to-socket latency.
func (m *metrics) observeLatency(d time.Duration) { m.latency.Observe(d.Seconds()) }

// countWebhooks is middleware that counts requests to /webhooks/ by
// endpoint and status.
func (m *metrics) countWebhooks(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if path := c.Path(); strings.HasPrefix(path, "/webhooks/") {
			status := c.Response().Status
			if he, ok := err.(*echo.HTTPError); ok && !c.Response().Committed {
				status = he.Code
			}
			m.webhooks.WithLabelValues(path, strconv.Itoa(status)).Inc()
		}
		return err
	}
}

// handler serves /metrics.
func (m *metrics) handler() echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}
