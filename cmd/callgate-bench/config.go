package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bounds that keep every run finite.
const (
	maxDuration = 10 * time.Minute
	maxEvents   = 10_000_000
)

// config is one run of the load generator.
type config struct {
	Targets       []string
	APIKey        string
	WebhookSecret string
	Token         string
	JWTSecret     string
	JWTAudience   string

	Scenario     string
	Subscribers  int
	Calls        int
	Connections  int
	Rate         float64
	Duration     time.Duration
	MaxEvents    int
	Publishers   int
	PayloadBytes int
	SourceIPs    []net.IP
	PIDs         []int
	FirstEvent   bool
	Redis        string

	JSON       bool
	CPUProfile string
	Progress   time.Duration

	Drain        time.Duration
	SetupTimeout time.Duration
	Concurrency  int
	FrameRate    float64
}

var scenarios = []string{"fanout", "calls", "idle", "churn"}

// scenarioHelp describes each scenario for --help.
var scenarioHelp = map[string]string{
	"fanout": `fanout: one call, many subscribers.
  Registers one call, connects --subscribers sockets (default 100) that all
  subscribe to it, then posts live transcript webhooks at --rate per second
  (0: as fast as the gateway accepts them, with --publishers in flight) for
  --duration or until --max-events were published. Every subscriber must
  receive every event once: deliveries = events x subscribers.
  Measures deliveries/s and publish-to-receive latency, the fan-out cost.`,
	"calls": `calls: many calls, a few subscribers each.
  Registers --calls calls (default 100) with --subscribers sockets each
  (default 2; one socket per subscription), then posts webhooks spread
  round-robin over the calls at --rate per second (0: as fast as accepted).
  Every subscriber must receive every event of its call once.
  Measures the per-call path: Redis channels, history, one socket per call.
  The calls are registered in-progress ("steady": each webhook publishes
  one event). With --first-event they are left initiated and each gets
  one webhook, its first live event: the gateway moves the call to
  in-progress and publishes a status event before the transcript, in the
  same step, and each subscriber receives both (the latency is the
  transcript's). That posts at most --calls webhooks: give as many calls
  as --rate x --duration, e.g. --calls 2000 --rate 200 --duration 10s.`,
	"idle": `idle: many quiet connections.
  Registers --connections calls (default 1000), concurrently, then opens
  --connections sockets each subscribed to its own call and holds them for
  --duration. Reports the connections still open at the end and, with
  --pids, the gateways' resident memory before connecting and at the end,
  and memory per connection: (after - before) / connections.`,
	"churn": `churn: calls start and end.
  Opens a pool of --connections sockets (default 20) over --calls calls
  (default: as many as connections). Each socket repeats subscribe, wait for
  subscribed, unsubscribe, wait for unsubscribed: pairs at --rate per second
  in all (0: as fast as answered), each socket staying under 90% of
  --frame-rate, so at most connections x frame-rate x 0.45 pairs/s: use a
  larger pool, or a gateway with a higher --max-frame-rate, to go faster.
  Measures subscribe and unsubscribe reply latency and pairs/s.`,
}

// parseConfig reads the command line. It returns flag.ErrHelp after
// printing the usage to stdout when asked for help.
func parseConfig(args []string, stdout io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("callgate-bench", flag.ContinueOnError)
	// Parse errors are returned, and reported once by the caller.
	fs.SetOutput(io.Discard)
	targets := fs.String("targets", "http://127.0.0.1:8080", "gateway base URLs, comma-separated; sockets, webhooks and API calls are spread round-robin")
	fs.StringVar(&c.APIKey, "api-key", "", "API key for POST /api/calls (none: the gateway runs --dev without keys)")
	fs.StringVar(&c.WebhookSecret, "webhook-secret", "", "secret to sign webhooks with (none: unsigned, for --dev)")
	fs.StringVar(&c.Token, "token", "", "client token sent as Authorization: Bearer on every socket")
	fs.StringVar(&c.JWTSecret, "jwt-secret", "", "HS256 secret to mint one client token per socket (sub callgate-bench-<run>-<n>)")
	fs.StringVar(&c.JWTAudience, "jwt-audience", "", "aud claim of minted tokens")
	fs.StringVar(&c.Scenario, "scenario", "fanout", "fanout, calls, idle or churn")
	fs.IntVar(&c.Subscribers, "subscribers", 0, "fanout: subscribers of the call [100]; calls: subscribers per call [2]")
	fs.IntVar(&c.Calls, "calls", 0, "calls: number of calls [100]; churn: calls the pool subscribes to [--connections]")
	fs.IntVar(&c.Connections, "connections", 0, "idle: sockets, each on its own call [1000]; churn: socket pool [20]")
	fs.Float64Var(&c.Rate, "rate", 0, "fanout, calls: webhooks per second; churn: subscribe/unsubscribe pairs per second; 0: as fast as answered")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to publish (fanout, calls), hold (idle) or churn; at most "+maxDuration.String())
	fs.IntVar(&c.MaxEvents, "max-events", 100_000, fmt.Sprintf("stop after this many webhooks published (churn: pairs); at most %d", maxEvents))
	fs.IntVar(&c.Publishers, "publishers", 8, "webhooks in flight at once")
	fs.IntVar(&c.PayloadBytes, "payload-bytes", 64, "length of each transcript text in bytes")
	sourceIPs := fs.String("source-ips", "", "local addresses to dial sockets from, rotating: 127.0.0.1-127.0.0.20 or a comma-separated list of addresses and ranges")
	pids := fs.String("pids", "", "gateway process ids, comma-separated: report their CPU time and memory")
	fs.BoolVar(&c.FirstEvent, "first-event", false, "calls: register the calls initiated, so that each webhook is its call's first live event (a status event, then the transcript); one webhook per call")
	fs.StringVar(&c.Redis, "redis", "", "the gateways' Redis, host:port or redis://[user:password@]host:port (any node of a cluster): report its CPU time (INFO cpu) per webhook or pair; on a cluster, its masters' and its replicas'")
	fs.BoolVar(&c.JSON, "json", false, "print the summary as JSON on stdout")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file, to see whether it limits the figures")
	fs.DurationVar(&c.Progress, "progress", time.Second, "interval of progress lines on stderr; 0: none")
	fs.DurationVar(&c.Drain, "drain", 5*time.Second, "how long to wait for deliveries still in flight once publishing stopped")
	fs.DurationVar(&c.SetupTimeout, "setup-timeout", 2*time.Minute, "bound on registering calls and connecting sockets")
	fs.IntVar(&c.Concurrency, "concurrency", 64, "calls registered and sockets opened at once during setup")
	fs.Float64Var(&c.FrameRate, "frame-rate", 20, "the gateways' --max-frame-rate: each socket sends at most 90% of it")
	fs.Usage = func() {}

	// -h and --help are not defined: Parse stops at them with ErrHelp,
	// after the flags before them, such as --scenario.
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, fs, c.Scenario)
		return c, flag.ErrHelp
	}
	if err != nil {
		return c, fmt.Errorf("%w (see --help)", err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	var errs []error
	if c.Targets, err = parseTargets(*targets); err != nil {
		errs = append(errs, err)
	}
	if c.SourceIPs, err = parseSourceIPs(*sourceIPs); err != nil {
		errs = append(errs, err)
	}
	if c.PIDs, err = parsePIDs(*pids); err != nil {
		errs = append(errs, err)
	}
	c.fillDefaults()
	if err := c.validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// fillDefaults sets the scenario's defaults for counts left at 0.
func (c *config) fillDefaults() {
	switch c.Scenario {
	case "fanout":
		c.Subscribers = cmp0(c.Subscribers, 100)
		c.Calls = 1
	case "calls":
		c.Subscribers = cmp0(c.Subscribers, 2)
		c.Calls = cmp0(c.Calls, 100)
	case "idle":
		c.Connections = cmp0(c.Connections, 1000)
	case "churn":
		c.Connections = cmp0(c.Connections, 20)
		c.Calls = cmp0(c.Calls, c.Connections)
	}
}

func cmp0(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func (c *config) validate() error {
	var errs []error
	known := false
	for _, s := range scenarios {
		known = known || s == c.Scenario
	}
	if !known {
		errs = append(errs, fmt.Errorf("--scenario %q: want one of %s", c.Scenario, strings.Join(scenarios, ", ")))
	}
	if c.Duration <= 0 || c.Duration > maxDuration {
		errs = append(errs, fmt.Errorf("--duration %v: want more than 0 and at most %v", c.Duration, maxDuration))
	}
	if c.MaxEvents <= 0 || c.MaxEvents > maxEvents {
		errs = append(errs, fmt.Errorf("--max-events %d: want 1 to %d", c.MaxEvents, maxEvents))
	}
	for _, p := range []struct {
		name string
		v    int
	}{
		{"subscribers", c.Subscribers}, {"calls", c.Calls}, {"connections", c.Connections},
		{"publishers", c.Publishers}, {"concurrency", c.Concurrency},
	} {
		if p.v < 0 {
			errs = append(errs, fmt.Errorf("--%s must not be negative", p.name))
		}
	}
	if c.Publishers == 0 || c.Concurrency == 0 {
		errs = append(errs, errors.New("--publishers and --concurrency must be positive"))
	}
	if c.PayloadBytes < 1 || c.PayloadBytes > 512<<10 {
		errs = append(errs, fmt.Errorf("--payload-bytes %d: want 1 to %d", c.PayloadBytes, 512<<10))
	}
	if c.Rate < 0 {
		errs = append(errs, errors.New("--rate must not be negative"))
	}
	if c.FrameRate <= 0 {
		errs = append(errs, errors.New("--frame-rate must be positive"))
	}
	if c.Progress < 0 || c.Drain < 0 || c.SetupTimeout <= 0 {
		errs = append(errs, errors.New("--progress and --drain must not be negative, --setup-timeout must be positive"))
	}
	if c.FirstEvent && c.Scenario != "calls" {
		errs = append(errs, errors.New("--first-event is for --scenario calls"))
	}
	if c.Redis != "" {
		if _, err := parseRedisAddr(c.Redis); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Token != "" && c.JWTSecret != "" {
		errs = append(errs, errors.New("give --token or --jwt-secret, not both"))
	}
	if c.Subscribers*max(c.Calls, 1) > 1_000_000 || c.Connections > 1_000_000 {
		errs = append(errs, errors.New("at most 1,000,000 sockets"))
	}
	return errors.Join(errs...)
}

func parseTargets(s string) ([]string, error) {
	var out []string
	for t := range strings.SplitSeq(s, ",") {
		t = strings.TrimRight(strings.TrimSpace(t), "/")
		if t == "" {
			continue
		}
		u, err := url.Parse(t)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--targets: %q is not a base URL like http://127.0.0.1:8080", t)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, errors.New("--targets: give at least one base URL")
	}
	return out, nil
}

// parseSourceIPs reads addresses and inclusive ranges like
// 127.0.0.1-127.0.0.20 (IPv4 ranges only).
func parseSourceIPs(s string) ([]net.IP, error) {
	var out []net.IP
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a := net.ParseIP(strings.TrimSpace(lo))
		if a == nil {
			return nil, fmt.Errorf("--source-ips: %q is not an address", lo)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b := net.ParseIP(strings.TrimSpace(hi))
		a4, b4 := a.To4(), b.To4()
		if a4 == nil || b4 == nil {
			return nil, fmt.Errorf("--source-ips: %q is not a range of IPv4 addresses", part)
		}
		from, to := ip4(a4), ip4(b4)
		if to < from || to-from >= 1<<16 {
			return nil, fmt.Errorf("--source-ips: %q: want a first address below the last, at most 65536 addresses", part)
		}
		for v := from; v <= to; v++ {
			out = append(out, net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)))
		}
	}
	return out, nil
}

func ip4(b net.IP) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func parsePIDs(s string) ([]int, error) {
	var out []int
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--pids: %q is not a process id", p)
		}
		out = append(out, n)
	}
	return out, nil
}

const usageHead = `callgate-bench generates load against callgate gateways and measures what
clients see: deliveries per second, publish-to-receive latency, lost and
duplicated events, connect and subscribe times, and, with --pids, the
gateways' CPU time and memory.

Usage: callgate-bench --scenario fanout|calls|idle|churn [flags]

It registers its own calls (POST /api/calls, ids callgate-bench-<run>-<n>),
opens sockets on /ws/calls/transcriptions, subscribes with "since":"0", and
posts signed live transcript webhooks to /webhooks/transcription.

Latency is measured twice for each transcript a subscriber receives: from
the event's "time" (its publish time, the gateway's clock), and from the
start of its webhook's HTTP call (this tool's clock; the webhook is
matched by the call and the event_id and epoch of its 200 answer). The
second is split at the publish time: the gateway's work before the
publish, then publish to socket; the webhooks' own time to their answer
is split the same way. Run it on the gateways' machine, or one with the
same clock. Lost events are those a subscriber did not receive --drain
after publishing stopped, by event_id; the exit status is 1 when any
event was lost or duplicated, 2 for a bad command line, 3 when the run
could not be set up.

With --redis, it reports the CPU time of the gateways' Redis over the
measured phase (from INFO cpu: Redis tells masters from replicas, which
/proc cannot, and reports microseconds, /proc hundredths of a second),
per webhook accepted or pair. With fanout and calls it reads the
counters callgate_bus_messages_total and
callgate_bus_messages_followed_total of every target's /metrics before
and after: messages each instance received from Redis, for each one its
local subscribers needed (give the instances as --targets for that, not
a load balancer).
`

const usageExamples = `Examples, against one gateway started with --dev (no keys, no tokens):

  go run ./cmd/callgate --dev --addr 127.0.0.1:8080 --log-level warn &
  callgate-bench --scenario fanout --subscribers 500 --duration 10s
  callgate-bench --scenario calls --calls 200 --rate 500
  callgate-bench --scenario calls --calls 2000 --rate 200 --duration 10s --first-event
  callgate-bench --scenario idle --connections 2000 --pids $(pgrep -nx callgate)
  callgate-bench --scenario churn --connections 50

Against a cluster of three instances on one Redis, with secrets and JWTs:

  callgate-bench --targets http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 \
    --api-key local-api-key --webhook-secret local-webhook-secret --jwt-secret s3cret \
    --scenario calls --calls 1000 --rate 200 --pids 4101,4102,4103 --json

On a Redis Cluster, give any node to --redis to sum its masters' CPU time:

  callgate-bench --targets http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 \
    --api-key local-api-key --webhook-secret local-webhook-secret \
    --scenario calls --calls 2000 --rate 0 --publishers 64 --redis 127.0.0.1:7001

Through a load balancer, give its one URL: --targets http://127.0.0.1:8080.

For measurements, run the gateways on a real Redis (--redis-url) and with
--log-level warn: the embedded Redis of --dev runs inside the gateway
process, so its CPU time and memory count as the gateway's.

Limits to keep in mind: a gateway takes --max-connections sockets (10000 by
default) and --max-connections-per-user per token subject (50; minted tokens
have one subject per socket, anonymous sockets are not counted); each
socket, client and server, is an open file; and one source address reaches
one gateway port through about 28,000 ephemeral ports, fewer while closed
sockets sit in TIME_WAIT: spread large runs with --source-ips.
`

func printUsage(w io.Writer, fs *flag.FlagSet, scenario string) {
	fmt.Fprint(w, usageHead)
	fmt.Fprintln(w)
	if h, ok := scenarioHelp[scenario]; ok && scenarioGiven(fs) {
		fmt.Fprintln(w, "Scenario "+h)
		fmt.Fprintln(w)
		fmt.Fprintln(w, "The other scenarios are "+otherScenarios(scenario)+"; --help alone describes them all.")
	} else {
		fmt.Fprintln(w, "Scenarios:")
		fmt.Fprintln(w)
		for _, s := range scenarios {
			fmt.Fprintln(w, scenarioHelp[s])
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Flags (defaults in brackets depend on the scenario):")
	fmt.Fprintln(w)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintln(w)
	fmt.Fprint(w, usageExamples)
}

func scenarioGiven(fs *flag.FlagSet) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "scenario" })
	return given
}

func otherScenarios(s string) string {
	var out []string
	for _, o := range scenarios {
		if o != s {
			out = append(out, o)
		}
	}
	return strings.Join(out, ", ")
}
