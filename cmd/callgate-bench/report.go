package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Result is everything a run measured; --json prints it as is.
type Result struct {
	Scenario string   `json:"scenario"`
	RunID    string   `json:"run_id"`
	Targets  []string `json:"targets"`
	Settings Settings `json:"settings"`

	// Seconds is the measured phase: publishing and draining (fanout,
	// calls), connecting and holding (idle), churning (churn).
	Seconds        float64 `json:"seconds"`
	PublishSeconds float64 `json:"publish_seconds,omitempty"`
	ConnectSeconds float64 `json:"connect_seconds,omitempty"`

	Connections Connections `json:"connections"`
	Webhooks    *Webhooks   `json:"webhooks,omitempty"`
	Deliveries  *Deliveries `json:"deliveries,omitempty"`
	Churn       *Churn      `json:"churn,omitempty"`

	Processes []ProcResult `json:"processes,omitempty"`
	// Redis is what the Redis servers of --redis used.
	Redis *RedisResult `json:"redis,omitempty"`
	// Bus is what the gateways received from Redis Pub/Sub (fanout,
	// calls).
	Bus *BusResult `json:"bus,omitempty"`
	// Machine is what all of the machine's CPUs did meanwhile.
	Machine              *Machine `json:"machine,omitempty"`
	CPUMicrosPerDelivery float64  `json:"cpu_us_per_delivery,omitempty"`
	CPUMicrosPerPair     float64  `json:"cpu_us_per_pair,omitempty"`
	RSSPerConnectionKB   float64  `json:"rss_per_connection_kb,omitempty"`
	// BenchCPUSeconds is this tool's own CPU time in the measured phase:
	// near the machine's capacity, the client was the limit.
	BenchCPUSeconds float64 `json:"bench_cpu_seconds"`

	Errors       int64            `json:"errors"`
	ErrorsByKind map[string]int64 `json:"errors_by_kind,omitempty"`
	ErrorSamples []string         `json:"error_samples,omitempty"`
	HTTPStatus   map[string]int64 `json:"http_status,omitempty"`
	ServerCloses map[string]int64 `json:"server_closes,omitempty"`
	ServerErrors map[string]int64 `json:"server_errors,omitempty"`
}

// Machine is the use of the machine's CPUs during the measured phase.
type Machine struct {
	CPUs int `json:"cpus"`
	// BusyPercent is the share of CPU time not idle, all processes.
	BusyPercent float64 `json:"busy_percent"`
	// StealPercent is the share of CPU time a hypervisor gave to other
	// guests: a run with much of it measured a slower machine.
	StealPercent float64 `json:"steal_percent"`
}

// Settings echo the run's configuration.
type Settings struct {
	Subscribers int `json:"subscribers,omitempty"`
	Calls       int `json:"calls,omitempty"`
	Connections int `json:"connections,omitempty"`
	// Rate is per second; 0 for as fast as answered.
	Rate         *float64 `json:"rate,omitempty"`
	Duration     string   `json:"duration"`
	MaxEvents    int      `json:"max_events,omitempty"`
	Publishers   int      `json:"publishers,omitempty"`
	PayloadBytes int      `json:"payload_bytes,omitempty"`
	SourceIPs    int      `json:"source_ips,omitempty"`
	// FirstEvent: the calls were registered initiated, and each webhook
	// was its call's first live event.
	FirstEvent bool `json:"first_event,omitempty"`
}

// Connections are the run's sockets.
type Connections struct {
	Opened int64 `json:"opened"`
	Failed int64 `json:"failed"`
	// Subscribed sockets followed their call for the whole run.
	Subscribed      int   `json:"subscribed"`
	SubscribeFailed int64 `json:"subscribe_failed"`
	OpenAtEnd       int   `json:"open_at_end"`
	// Connect is from dialing to the welcome frame; Subscribe from
	// sending subscribe to the subscribed answer.
	Connect   Latency `json:"connect"`
	Subscribe Latency `json:"subscribe"`
}

// Webhooks are the live events posted.
type Webhooks struct {
	Published int64   `json:"published"`
	Requests  int64   `json:"requests"`
	Retries   int64   `json:"retries"`
	Failed    int64   `json:"failed"`
	PerSecond float64 `json:"accepted_per_second"`
	// Latency is from sending a webhook's last attempt to its answer.
	Latency Latency `json:"latency"`
	// HTTPCall is, for the webhooks whose event a subscriber received,
	// from the start of the first attempt to the 200 answer; Stages split
	// it at the event's publish time (the frame's "time", the gateway's
	// clock).
	HTTPCall Latency `json:"http_call"`
	Stages   []Stage `json:"stages,omitempty"`
}

// Stage is one part of a path, and its share of the whole by their means.
type Stage struct {
	Name         string  `json:"name"`
	SharePercent float64 `json:"share_percent"`
	Latency      Latency `json:"latency"`
}

// Deliveries are the events subscribers received.
type Deliveries struct {
	// Expected counts, for each subscriber, the events published to its
	// call after it was subscribed.
	Expected   int64   `json:"expected"`
	Delivered  int64   `json:"delivered"`
	Lost       int64   `json:"lost"`
	Duplicated int64   `json:"duplicated"`
	Reordered  int64   `json:"reordered"`
	PerSecond  float64 `json:"per_second"`
	// Latency is from each event's publish time to its receipt.
	Latency Latency `json:"latency"`
	// FromHTTPStart is from the start of the HTTP call of the event's
	// webhook (its first attempt) to the event's receipt, for every
	// subscriber; Stages split it at the event's publish time.
	FromHTTPStart Latency `json:"from_http_start"`
	Stages        []Stage `json:"stages,omitempty"`
	// Untimed counts the transcripts received that could not be matched
	// to their webhook (an event_id or epoch no answer named).
	Untimed int64 `json:"untimed"`
	// StatusEvents counts the status events received: with --first-event,
	// one before each call's transcript, for each subscriber.
	StatusEvents int64 `json:"status_events"`
}

// RedisResult is the CPU time the Redis servers used in the measured phase
// (INFO cpu), and, on a cluster, the Pub/Sub messages its bus carried.
type RedisResult struct {
	Cluster           bool        `json:"cluster"`
	Nodes             []RedisNode `json:"nodes,omitempty"`
	MasterCPUSeconds  float64     `json:"master_cpu_seconds"`
	ReplicaCPUSeconds float64     `json:"replica_cpu_seconds"`
	// MasterMicrosPer and ReplicaMicrosPer are the CPU time per Per: a
	// webhook accepted (fanout, calls), or a pair (churn).
	Per              string  `json:"per,omitempty"`
	MasterMicrosPer  float64 `json:"master_cpu_us_per"`
	ReplicaMicrosPer float64 `json:"replica_cpu_us_per"`
	// ClusterBusPublish and ClusterBusPublishShard are the Pub/Sub
	// messages the cluster's nodes sent each other for PUBLISH (to every
	// node) and SPUBLISH (to the shard's replicas).
	ClusterBusPublish      int64  `json:"cluster_bus_publish,omitempty"`
	ClusterBusPublishShard int64  `json:"cluster_bus_publish_shard,omitempty"`
	Error                  string `json:"error,omitempty"`
}

// RedisNode is one Redis server's CPU time.
type RedisNode struct {
	Addr       string  `json:"addr"`
	Role       string  `json:"role"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

// BusResult is what the gateways received from Redis Pub/Sub, from their
// /metrics: messages received, those on a channel a local connection
// followed (needed), and received per needed (1.0: nothing received in
// vain).
type BusResult struct {
	Targets     []BusTarget `json:"targets,omitempty"`
	Received    int64       `json:"received"`
	Followed    int64       `json:"followed"`
	PerFollowed float64     `json:"received_per_followed"`
	Error       string      `json:"error,omitempty"`
}

// BusTarget is one gateway's part of a BusResult.
type BusTarget struct {
	Target      string  `json:"target"`
	Received    int64   `json:"received"`
	Followed    int64   `json:"followed"`
	PerFollowed float64 `json:"received_per_followed"`
}

// Churn is the subscribe/unsubscribe scenario's outcome.
type Churn struct {
	Pairs       int64   `json:"pairs"`
	PerSecond   float64 `json:"per_second"`
	Subscribe   Latency `json:"subscribe"`
	Unsubscribe Latency `json:"unsubscribe"`
	Errors      int64   `json:"errors"`
}

// ProcResult is what one gateway process used in the measured phase.
type ProcResult struct {
	PID         int     `json:"pid"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	CPUPercent  float64 `json:"cpu_percent"`
	RSSBeforeKB int64   `json:"rss_before_kb"`
	RSSAfterKB  int64   `json:"rss_after_kb"`
	RSSPeakKB   int64   `json:"rss_peak_kb"`
	Error       string  `json:"error,omitempty"`
}

func (b *bench) newResult() *Result {
	c := b.cfg
	s := Settings{Duration: c.Duration.String(), SourceIPs: len(c.SourceIPs)}
	switch c.Scenario {
	case "fanout", "calls":
		s.Subscribers, s.Calls, s.Publishers, s.PayloadBytes = c.Subscribers, c.Calls, c.Publishers, c.PayloadBytes
		s.Rate, s.MaxEvents, s.FirstEvent = &c.Rate, c.MaxEvents, c.FirstEvent
	case "idle":
		s.Connections = c.Connections
	case "churn":
		s.Connections, s.Calls = c.Connections, c.Calls
		s.Rate, s.MaxEvents = &c.Rate, c.MaxEvents
	}
	return &Result{Scenario: c.Scenario, RunID: b.runID, Targets: c.Targets, Settings: s}
}

// finish adds the counters every scenario shares.
func (b *bench) finish(r *Result) {
	r.Connections.Opened = b.opened.Load()
	r.Connections.Failed = b.connectErrors.Load()
	r.Connections.SubscribeFailed = b.subErrors.Load()
	r.Connections.Connect = b.connectH.Summary()
	r.Connections.Subscribe = b.subscribeH.Summary()
	if r.Churn != nil {
		r.Churn.Subscribe = r.Connections.Subscribe
	}
	if r.Scenario == "fanout" || r.Scenario == "calls" {
		pub := b.published.Load()
		w := &Webhooks{
			Published: pub,
			Requests:  b.webhooksSent.Load(),
			Retries:   b.webhookRetry.Load(),
			Failed:    b.webhookFailed.Load(),
			Latency:   b.webhookH.Summary(),
			HTTPCall:  b.callH.Summary(),
			Stages: stages(&b.callH, []namedHist{
				{"http start -> publish", &b.callToPublishH},
				{"publish -> 200 answer", &b.publishToAnswerH},
			}),
		}
		if r.PublishSeconds > 0 {
			w.PerSecond = round3(float64(pub) / r.PublishSeconds)
		}
		r.Webhooks = w
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.errCount {
		r.Errors += n
	}
	r.ErrorsByKind = nonEmpty(b.errCount)
	r.ErrorSamples = slices.Clone(b.errSamples)
	r.HTTPStatus = nonEmpty(b.httpStatus)
	r.ServerCloses = nonEmpty(b.serverCloses)
	r.ServerErrors = nonEmpty(b.serverErrors)
}

type namedHist struct {
	name string
	h    *hist
}

// stages summarizes parts, each with its share of whole by their means;
// nil when whole is empty.
func stages(whole *hist, parts []namedHist) []Stage {
	if whole.Count() == 0 {
		return nil
	}
	var out []Stage
	for _, p := range parts {
		share := 0.0
		if m := whole.Mean(); m > 0 {
			share = math.Round(1000*float64(p.h.Mean())/float64(m)) / 10
		}
		out = append(out, Stage{Name: p.name, SharePercent: share, Latency: p.h.Summary()})
	}
	return out
}

func nonEmpty(m map[string]int64) map[string]int64 {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

func (r *Result) totalCPU() float64 {
	var s float64
	for _, p := range r.Processes {
		if p.Error == "" {
			s += p.CPUSeconds
		}
	}
	return s
}

// failed reports whether the run saw events lost or duplicated.
func (r *Result) failed() bool {
	return r.Deliveries != nil && (r.Deliveries.Lost > 0 || r.Deliveries.Duplicated > 0)
}

func writeJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeText prints the summary table.
func writeText(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	s := r.Settings
	fmt.Fprintf(tw, "callgate-bench %s, run %s, targets %s\n", r.Scenario, r.RunID, strings.Join(r.Targets, " "))
	var set []string
	for _, kv := range []struct {
		k string
		v int
	}{{"subscribers", s.Subscribers}, {"calls", s.Calls}, {"connections", s.Connections}, {"publishers", s.Publishers}, {"payload bytes", s.PayloadBytes}, {"source ips", s.SourceIPs}} {
		if kv.v > 0 {
			set = append(set, fmt.Sprintf("%s %d", kv.k, kv.v))
		}
	}
	if s.Rate != nil {
		rate := "max"
		if *s.Rate > 0 {
			rate = fmt.Sprintf("%g/s", *s.Rate)
		}
		set = append(set, "rate "+rate)
	}
	set = append(set, "duration "+s.Duration)
	if s.MaxEvents > 0 {
		set = append(set, fmt.Sprintf("max events %d", s.MaxEvents))
	}
	if s.FirstEvent {
		set = append(set, "first event of each call")
	}
	fmt.Fprintf(tw, "%s\n\n", strings.Join(set, ", "))

	row("measured", "%.3f s", r.Seconds)
	if r.PublishSeconds > 0 {
		row("publishing", "%.3f s", r.PublishSeconds)
	}
	if r.ConnectSeconds > 0 {
		row("connecting", "%.3f s", r.ConnectSeconds)
	}
	c := r.Connections
	row("connections", "%d opened, %d failed, %d open at end", c.Opened, c.Failed, c.OpenAtEnd)
	row("connect", "%s", latencyText(c.Connect))
	if r.Churn == nil {
		row("subscribed", "%d, %d failed", c.Subscribed, c.SubscribeFailed)
		if c.Subscribe.Count > 0 {
			row("subscribe", "%s", latencyText(c.Subscribe))
		}
	}
	if wh := r.Webhooks; wh != nil {
		row("webhooks", "%d published (%.1f/s), %d requests, %d retries, %d failed", wh.Published, wh.PerSecond, wh.Requests, wh.Retries, wh.Failed)
		row("webhook answer", "%s", latencyText(wh.Latency))
		if wh.HTTPCall.Count > 0 {
			row("  http start -> 200", "%s", latencyText(wh.HTTPCall))
			stageRows(row, wh.Stages)
		}
	}
	if d := r.Deliveries; d != nil {
		row("deliveries", "%d of %d expected (%.1f/s), %d status events", d.Delivered, d.Expected, d.PerSecond, d.StatusEvents)
		row("lost", "%d", d.Lost)
		row("duplicated", "%d (reordered %d)", d.Duplicated, d.Reordered)
		row("latency", "%s", latencyText(d.Latency))
		row("from http start", "%s", latencyText(d.FromHTTPStart))
		stageRows(row, d.Stages)
		if d.Untimed > 0 {
			row("  not timed", "%d (no webhook answer named them)", d.Untimed)
		}
	}
	if ch := r.Churn; ch != nil {
		row("pairs", "%d (%.1f/s), %d errors", ch.Pairs, ch.PerSecond, ch.Errors)
		row("subscribe", "%s", latencyText(ch.Subscribe))
		row("unsubscribe", "%s", latencyText(ch.Unsubscribe))
	}
	for _, p := range r.Processes {
		if p.Error != "" {
			row(fmt.Sprintf("pid %d", p.PID), "%s", p.Error)
			continue
		}
		row(fmt.Sprintf("pid %d", p.PID), "cpu %.2f s (%.0f%% of a core), rss %s -> %s (peak %s)",
			p.CPUSeconds, p.CPUPercent, mib(p.RSSBeforeKB), mib(p.RSSAfterKB), mib(p.RSSPeakKB))
	}
	if r.CPUMicrosPerDelivery > 0 {
		row("gateway cpu", "%.2f µs per delivery", r.CPUMicrosPerDelivery)
	}
	if r.CPUMicrosPerPair > 0 {
		row("gateway cpu", "%.1f µs per pair", r.CPUMicrosPerPair)
	}
	if rd := r.Redis; rd != nil {
		redisRows(row, rd)
	}
	if bus := r.Bus; bus != nil {
		busRows(row, bus)
	}
	if r.RSSPerConnectionKB != 0 {
		row("rss per connection", "%.1f KiB", r.RSSPerConnectionKB)
	}
	row("bench cpu", "%.2f s", r.BenchCPUSeconds)
	if m := r.Machine; m != nil {
		row("machine", "%d cpus, %.0f%% busy, %.1f%% stolen by the hypervisor", m.CPUs, m.BusyPercent, m.StealPercent)
	}
	row("errors", "%d", r.Errors)
	for _, m := range []struct {
		name string
		v    map[string]int64
	}{{"by kind", r.ErrorsByKind}, {"http status", r.HTTPStatus}, {"server closes", r.ServerCloses}, {"server errors", r.ServerErrors}} {
		if len(m.v) > 0 {
			row("  "+m.name, "%s", counts(m.v))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(w, "  %s\n", e)
	}
	return nil
}

func stageRows(row func(k, format string, args ...any), st []Stage) {
	for _, s := range st {
		row("  "+s.Name, "%s  (%.0f%% of the mean)", latencyText(s.Latency), s.SharePercent)
	}
}

func redisRows(row func(k, format string, args ...any), r *RedisResult) {
	if r.Error != "" {
		row("redis", "%s", r.Error)
		return
	}
	mode := "one server"
	if r.Cluster {
		mode = "cluster"
	}
	masters := 0
	for _, n := range r.Nodes {
		if n.Role == "master" {
			masters++
		}
	}
	per := func(v float64) string {
		if r.Per == "" {
			return ""
		}
		return fmt.Sprintf(", %.1f µs per %s", v, r.Per)
	}
	row("redis cpu", "%s: masters (%d) %.3f s%s", mode, masters, r.MasterCPUSeconds, per(r.MasterMicrosPer))
	if masters < len(r.Nodes) {
		row("", "replicas (%d) %.3f s%s", len(r.Nodes)-masters, r.ReplicaCPUSeconds, per(r.ReplicaMicrosPer))
	}
	for _, n := range r.Nodes {
		row("  "+n.Addr, "%s, cpu %.3f s", n.Role, n.CPUSeconds)
	}
	if r.Cluster {
		row("  cluster bus", "%d PUBLISH and %d SPUBLISH messages between nodes", r.ClusterBusPublish, r.ClusterBusPublishShard)
	}
}

func busRows(row func(k, format string, args ...any), b *BusResult) {
	if b.Error != "" {
		row("bus messages", "not read: %s", b.Error)
		return
	}
	row("bus messages", "%d received from Redis, %d needed by local subscribers: %.3f per needed", b.Received, b.Followed, b.PerFollowed)
	if len(b.Targets) > 1 {
		for _, t := range b.Targets {
			row("  "+t.Target, "%d received, %d needed: %.3f", t.Received, t.Followed, t.PerFollowed)
		}
	}
}

func latencyText(l Latency) string {
	if l.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms  (n=%d)", l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
}

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

func counts(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
