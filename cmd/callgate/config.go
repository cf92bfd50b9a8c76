package main

// The configuration: every flag with its CALLGATE_* variable, default and
// check, in one file (past 400 lines) so that the list reads as the
// README's table does.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/slots"
	"github.com/callgate/callgate/topics"
)

// config is everything callgate is started with. Each field is a flag and
// a CALLGATE_* environment variable of the same name; a flag on the command
// line wins over the variable.
type config struct {
	Dev      bool
	Addr     string
	RedisURL string
	// RedisCluster and RedisSentinel select the distributed modes; at
	// most one of the three Redis settings is given.
	RedisCluster           string
	RedisSentinel          string
	RedisClusterPartitions int
	RedisWaitReplicas      int
	RedisWaitTimeout       time.Duration
	RedisPrefix            string
	WebhookSecrets         []string
	APIKeys                []string
	InstanceID             string
	LogLevel               slog.Level
	LogFormat              string
	AllowedOrigins         []string
	Topics                 []string
	MaxTopicBytes          int64
	TopicOrgs              []string
	// Viewer serves the live call viewer at /viewer/; on by default
	// with --dev.
	Viewer bool

	DebugAddr             string
	HTTPReadHeaderTimeout time.Duration
	HTTPReadTimeout       time.Duration
	HTTPWriteTimeout      time.Duration
	HTTPIdleTimeout       time.Duration
	WebhookMaxAge         time.Duration
	WebhookMaxSkew        time.Duration

	JWTSecrets       []string
	JWTPublicKeyFile string
	JWTJWKSURL       string
	JWTAudience      string
	JWTIssuer        string
	AllowAnonymous   bool
	AuthTimeout      time.Duration
	TokenWarning     time.Duration
	MaxConnections   int
	MaxConnsPerUser  int
	MaxFrameRate     float64
	MaxFrameBurst    int

	MaxFrameBytes     int64
	SendQueue         int
	SendQueueBytes    int
	MaxSubscriptions  int
	PongWait          time.Duration
	MaxBody           int64
	MaxPostCallBody   int64
	WebhookBodyBudget int64
	CallTTL           time.Duration
	DedupTTL          time.Duration
	HistoryEvents     int64
	HistoryTTL        time.Duration
	CallCacheTTL      time.Duration
	UnsubscribeLinger time.Duration
	ShutdownTimeout   time.Duration
}

// devAddr is where --dev listens unless --addr is given.
const devAddr = "127.0.0.1:8080"

// listValue is a comma-separated flag.
type listValue struct{ p *[]string }

func (l listValue) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l listValue) Set(s string) error {
	*l.p = nil
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l.p = append(*l.p, v)
		}
	}
	return nil
}

// levelValue is a log level flag.
type levelValue struct{ p *slog.Level }

func (l levelValue) String() string {
	if l.p == nil {
		return "info"
	}
	return strings.ToLower(l.p.String())
}
func (l levelValue) Set(s string) error { return l.p.UnmarshalText([]byte(s)) }

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return "CALLGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// flagSet defines every flag, each setting its field of c.
func flagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("callgate", flag.ContinueOnError)
	fs.BoolVar(&c.Dev, "dev", false, "development mode: embedded Redis unless --redis-url is given; webhooks unsigned and API open unless secrets are given; text logs")
	fs.StringVar(&c.Addr, "addr", ":8080", "listen address (with --dev the default is "+devAddr+": this machine only)")
	fs.StringVar(&c.RedisURL, "redis-url", "", "one Redis server, e.g. redis://:password@redis:6379/0 (this, --redis-cluster or --redis-sentinel is required without --dev)")
	fs.StringVar(&c.RedisCluster, "redis-cluster", "", "Redis Cluster seed nodes, e.g. redis://user:pass@10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000")
	fs.StringVar(&c.RedisSentinel, "redis-sentinel", "", "Redis Sentinel, e.g. redis://user:pass@10.0.0.1:26379?master_name=mymaster&addr=10.0.0.2:26379")
	fs.IntVar(&c.RedisClusterPartitions, "redis-cluster-partitions", 64, "with --redis-cluster: how many hash-slot partitions calls are spread over (the same on every instance, set once)")
	fs.IntVar(&c.RedisWaitReplicas, "redis-wait-replicas", 0, "answer a webhook only once this many replicas have its event (Redis WAIT); 0 does not wait")
	fs.DurationVar(&c.RedisWaitTimeout, "redis-wait-timeout", time.Second, "how long --redis-wait-replicas waits before the webhook is answered 503")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", "callgate", "prefix of every Redis key and channel, to share a Redis between deployments")
	fs.Var(listValue{&c.WebhookSecrets}, "webhook-secret", "webhook signing secret(s), comma-separated to rotate (required without --dev)")
	fs.Var(listValue{&c.APIKeys}, "api-key", "API key(s) for /api, comma-separated to rotate (required without --dev)")
	fs.StringVar(&c.InstanceID, "instance-id", "", "name of this instance in logs and welcome frames (default: host name and a random suffix)")
	fs.Var(levelValue{&c.LogLevel}, "log-level", "log level: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "", "log format: json or text (default json, text with --dev)")
	fs.Var(listValue{&c.AllowedOrigins}, "allowed-origins", "browser origins allowed to open sockets, comma-separated (default: any)")
	c.Topics = slices.Clone(topics.DefaultNames)
	fs.Var(listValue{&c.Topics}, "topics", "state topics served at /ws/<name> and /api/topics/<name>, comma-separated")
	fs.Int64Var(&c.MaxTopicBytes, "max-topic-bytes", topics.DefaultMaxBytes, "largest topic state in bytes")
	fs.Var(listValue{&c.TopicOrgs}, "topic-orgs", "topics readable only by tokens of one org, as topic=org, comma-separated")
	fs.BoolVar(&c.Viewer, "viewer", false, "serve the live call viewer page at /viewer/ (on by default with --dev)")
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060); keep it private")
	fs.DurationVar(&c.HTTPReadHeaderTimeout, "http-read-header-timeout", 10*time.Second, "time to read a request's headers (slowloris)")
	fs.DurationVar(&c.HTTPReadTimeout, "http-read-timeout", 2*time.Minute, "time to read a whole request, body included (post-call bodies are large)")
	fs.DurationVar(&c.HTTPWriteTimeout, "http-write-timeout", 2*time.Minute, "time to write a response; sockets are not affected")
	fs.DurationVar(&c.HTTPIdleTimeout, "http-idle-timeout", 2*time.Minute, "how long an idle keep-alive HTTP connection is kept")
	fs.DurationVar(&c.WebhookMaxAge, "webhook-max-age", 30*time.Minute, "oldest webhook signature timestamp accepted")
	fs.DurationVar(&c.WebhookMaxSkew, "webhook-max-skew", 5*time.Minute, "how far in the future a webhook signature timestamp may be")
	fs.Var(listValue{&c.JWTSecrets}, "jwt-secret", "HS256 secret(s) that sign client tokens, comma-separated to rotate")
	fs.StringVar(&c.JWTPublicKeyFile, "jwt-public-keys", "", "PEM file of RSA/ECDSA public keys that verify RS256/ES256 client tokens")
	fs.StringVar(&c.JWTJWKSURL, "jwt-jwks-url", "", "JWKS URL of the keys that verify RS256/ES256 client tokens (refreshed every 15m)")
	fs.StringVar(&c.JWTAudience, "jwt-audience", "", "required aud of client tokens (default: not checked)")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", "", "required iss of client tokens (default: not checked)")
	fs.BoolVar(&c.AllowAnonymous, "allow-anonymous", false, "let sockets without a token in as anonymous (they see only calls without an org)")
	fs.DurationVar(&c.AuthTimeout, "auth-timeout", 10*time.Second, "how long a socket without a token has to send its auth frame")
	fs.DurationVar(&c.TokenWarning, "token-expiry-warning", time.Minute, "how long before its token expires a socket gets token_expiring")
	fs.IntVar(&c.MaxConnections, "max-connections", 10000, "open sockets per instance; past it upgrades get 503")
	fs.IntVar(&c.MaxConnsPerUser, "max-connections-per-user", 50, "open sockets per user per instance")
	fs.Float64Var(&c.MaxFrameRate, "max-frame-rate", 20, "client frames per second per socket (token bucket); past it close 4029")
	fs.IntVar(&c.MaxFrameBurst, "max-frame-burst", 50, "client frames a socket may send at once before --max-frame-rate applies")
	fs.Int64Var(&c.MaxFrameBytes, "max-frame-bytes", 64<<10, "largest client frame; larger ones close the socket with 1009")
	fs.IntVar(&c.SendQueue, "send-queue", 256, "frames queued per socket before a slow client is disconnected (close 4008)")
	fs.IntVar(&c.SendQueueBytes, "send-queue-bytes", 8<<20, "bytes queued per socket before a slow client is disconnected (close 4008); a replay from history larger than this goes out in pieces")
	fs.IntVar(&c.MaxSubscriptions, "max-subscriptions", 100, "calls one socket may follow")
	fs.DurationVar(&c.PongWait, "pong-wait", 60*time.Second, "how long a silent socket is kept; the server pings at 9/10 of it")
	fs.Int64Var(&c.MaxBody, "max-body", 1<<20, "largest API request and live webhook body in bytes")
	fs.Int64Var(&c.MaxPostCallBody, "max-post-call-body", 64<<20, "largest post-call webhook body in bytes (recordings are large)")
	fs.Int64Var(&c.WebhookBodyBudget, "webhook-body-budget", calls.DefaultWebhookBodyBudget, "bytes of webhook bodies held at once before their signature is checked; past it webhooks get 503 busy")
	fs.DurationVar(&c.CallTTL, "call-ttl", 7*24*time.Hour, "how long a call record is kept after its last change")
	fs.DurationVar(&c.DedupTTL, "dedup-ttl", 24*time.Hour, "how long a webhook delivery is remembered to drop its repeats")
	fs.Int64Var(&c.HistoryEvents, "history-events", 1000, "events kept per call for clients that resume (approximate)")
	fs.DurationVar(&c.HistoryTTL, "history-ttl", 24*time.Hour, "how long a call's event history is kept after the call is done or failed")
	fs.DurationVar(&c.CallCacheTTL, "call-cache-ttl", 2*time.Second, "how long live webhooks may reuse a call record of a call in progress read before; 0 reads it every time")
	fs.DurationVar(&c.UnsubscribeLinger, "unsubscribe-linger", 2*time.Second, "how long the instance stays subscribed in Redis to a call no local client follows any more, so that clients coming back need no new SUBSCRIBE; 0 unsubscribes at once")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long shutdown waits for sockets to close")
	return fs
}

// helpHint ends the report of a command line that could not be parsed, in
// place of the whole usage, which would push the error off the screen.
const helpHint = "callgate -h lists every flag."

// parseConfig reads flags from args and variables from getenv, and checks
// the result. -h prints the usage to stderr and returns flag.ErrHelp.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flagSet(&c)
	// Parse errors are returned, not printed, and a value that does not
	// parse is reported with what was expected.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.VisitAll(func(f *flag.Flag) { f.Value = explained{f.Value} })

	set := map[string]bool{}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, stderr)
			return c, err
		}
		return c, fmt.Errorf("%w\n%s", err, helpHint)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), helpHint)
	}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || envErr != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	// --dev serves an open API and takes unsigned webhooks: only this
	// machine reaches it unless --addr (or CALLGATE_ADDR) says otherwise.
	if c.Dev && !set["addr"] && getenv(envName("addr")) == "" {
		c.Addr = devAddr
	}
	if c.Dev && !set["viewer"] && getenv(envName("viewer")) == "" {
		c.Viewer = true
	}
	if c.InstanceID == "" {
		host, _ := os.Hostname()
		c.InstanceID = fmt.Sprintf("%s-%04x", host, time.Now().UnixNano()&0xffff)
	}
	if c.LogFormat == "" {
		c.LogFormat = "json"
		if c.Dev {
			c.LogFormat = "text"
		}
	}
	return c, c.validate()
}

// validateRedis checks the Redis settings: at most one mode, each URL as
// go-redis reads it.
func (c config) validateRedis() []error {
	var errs []error
	given := 0
	for _, v := range []string{c.RedisURL, c.RedisCluster, c.RedisSentinel} {
		if v != "" {
			given++
		}
	}
	if given > 1 {
		errs = append(errs, errors.New("give one of --redis-url, --redis-cluster and --redis-sentinel, not several"))
	}
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			errs = append(errs, fmt.Errorf("--redis-url: want redis://[user:password@]host:port[/db] or rediss://… (%v)", err))
		}
	}
	if c.RedisCluster != "" {
		if _, err := redis.ParseClusterURL(c.RedisCluster); err != nil {
			errs = append(errs, fmt.Errorf("--redis-cluster: want redis://[user:password@]host:port?addr=host:port&addr=… or rediss://… (%v)", err))
		}
	}
	if c.RedisSentinel != "" {
		if o, err := redis.ParseFailoverURL(c.RedisSentinel); err != nil {
			errs = append(errs, fmt.Errorf("--redis-sentinel: want redis://[user:password@]host:port?master_name=name&addr=host:port… or rediss://… (%v)", err))
		} else if o.MasterName == "" {
			errs = append(errs, errors.New("--redis-sentinel: the URL needs master_name=<the primary's name at the sentinels>"))
		}
	}
	if c.RedisClusterPartitions < 1 || c.RedisClusterPartitions > slots.MaxPartitions {
		errs = append(errs, fmt.Errorf("--redis-cluster-partitions (%s) must be 1 to %d", envName("redis-cluster-partitions"), slots.MaxPartitions))
	}
	if c.RedisWaitReplicas < 0 {
		errs = append(errs, fmt.Errorf("--redis-wait-replicas (%s) must not be negative", envName("redis-wait-replicas")))
	}
	if c.RedisWaitTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--redis-wait-timeout (%s) must be positive", envName("redis-wait-timeout")))
	}
	return errs
}

// printUsage prints the usage of fs, whose values parseConfig wrapped.
func printUsage(fs *flag.FlagSet, w io.Writer) {
	fs.VisitAll(func(f *flag.Flag) {
		if e, ok := f.Value.(explained); ok {
			f.Value = e.Value // PrintDefaults tells types apart by the value's type
		}
	})
	fs.SetOutput(w)
	fmt.Fprintf(w, "Usage: callgate [flags]\n       callgate tail [flags] <call_sid or conversation_id>   (follow a call; callgate tail -h)\n\nEvery flag can also be set by its environment variable, e.g. --redis-url by CALLGATE_REDIS_URL.\n\n")
	fs.PrintDefaults()
}

// explained is a flag value whose parse error says what the value must
// look like, instead of the flag package's "parse error".
type explained struct{ flag.Value }

func (e explained) Set(s string) error {
	err := e.Value.Set(s)
	if err == nil {
		return nil
	}
	if want := expectedValue(e.Value); want != "" {
		return errors.New("want " + want)
	}
	return err
}

// IsBoolFlag keeps boolean flags usable without a value.
func (e explained) IsBoolFlag() bool {
	b, ok := e.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// expectedValue describes the values v accepts; "" if its own error says
// it.
func expectedValue(v flag.Value) string {
	if _, ok := v.(levelValue); ok {
		return "debug, info, warn or error"
	}
	g, ok := v.(flag.Getter)
	if !ok {
		return ""
	}
	switch g.Get().(type) {
	case time.Duration:
		return "a duration with a unit, like 90s, 5m or 1h30m"
	case bool:
		return "true or false (or 1 or 0)"
	case int, int64:
		return "a whole number"
	case float64:
		return "a number, like 20 or 0.5"
	}
	return ""
}

// hasTokenVerifier reports whether client tokens can be verified.
func (c config) hasTokenVerifier() bool {
	return len(c.JWTSecrets) > 0 || c.JWTPublicKeyFile != "" || c.JWTJWKSURL != ""
}

// topicOrg returns the org topic is restricted to, if any.
func (c config) topicOrg(topic string) string {
	for _, to := range c.TopicOrgs {
		if t, org, _ := strings.Cut(to, "="); t == topic {
			return org
		}
	}
	return ""
}

func (c config) validate() error {
	var errs []error
	if !c.Dev {
		if c.RedisURL == "" && c.RedisCluster == "" && c.RedisSentinel == "" {
			errs = append(errs, errors.New("--redis-url (CALLGATE_REDIS_URL), --redis-cluster (CALLGATE_REDIS_CLUSTER) or --redis-sentinel (CALLGATE_REDIS_SENTINEL) is required without --dev"))
		}
		if len(c.WebhookSecrets) == 0 {
			errs = append(errs, errors.New("--webhook-secret (CALLGATE_WEBHOOK_SECRET) is required without --dev"))
		}
		if len(c.APIKeys) == 0 {
			errs = append(errs, errors.New("--api-key (CALLGATE_API_KEY) is required without --dev"))
		}
		if !c.hasTokenVerifier() && !c.AllowAnonymous {
			errs = append(errs, errors.New("sockets must authenticate without --dev: give --jwt-secret, --jwt-public-keys or --jwt-jwks-url (or --allow-anonymous to accept unauthenticated sockets)"))
		}
	}
	errs = append(errs, c.validateRedis()...)
	if err := checkAddr("addr", c.Addr); err != nil {
		errs = append(errs, err)
	}
	if c.DebugAddr != "" {
		if err := checkAddr("debug-addr", c.DebugAddr); err != nil {
			errs = append(errs, err)
		}
	}
	if c.RedisPrefix == "" || strings.ContainsAny(c.RedisPrefix, " {}") {
		errs = append(errs, fmt.Errorf("--redis-prefix %q: want a non-empty prefix without spaces or braces", c.RedisPrefix))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("--log-format %q: want json or text", c.LogFormat))
	}
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" {
			errs = append(errs, fmt.Errorf("--allowed-origins: %q is not an origin like https://dash.example.com", o))
		}
	}
	seen := map[string]bool{}
	for _, t := range c.Topics {
		if !topics.ValidName(t) || seen[t] {
			errs = append(errs, fmt.Errorf("--topics: %q is not a valid topic name (1-64 of a-z 0-9 - _, not \"calls\", no repeats)", t))
		}
		seen[t] = true
	}
	for _, to := range c.TopicOrgs {
		topic, org, ok := strings.Cut(to, "=")
		if !ok || !slices.Contains(c.Topics, topic) || org == "" {
			errs = append(errs, fmt.Errorf("--topic-orgs: %q must be topic=org for a topic in --topics", to))
		}
	}
	if c.JWTJWKSURL != "" {
		if u, err := url.Parse(c.JWTJWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--jwt-jwks-url %q: want an http(s) URL", c.JWTJWKSURL))
		}
	}
	positive := []struct {
		name string
		v    int64
	}{
		{"max-frame-bytes", c.MaxFrameBytes}, {"send-queue", int64(c.SendQueue)}, {"send-queue-bytes", int64(c.SendQueueBytes)},
		{"max-subscriptions", int64(c.MaxSubscriptions)}, {"max-body", c.MaxBody},
		{"max-post-call-body", c.MaxPostCallBody}, {"pong-wait", int64(c.PongWait)},
		{"webhook-body-budget", c.WebhookBodyBudget},
		{"call-ttl", int64(c.CallTTL)}, {"dedup-ttl", int64(c.DedupTTL)},
		{"history-events", c.HistoryEvents}, {"history-ttl", int64(c.HistoryTTL)},
		{"shutdown-timeout", int64(c.ShutdownTimeout)}, {"max-topic-bytes", c.MaxTopicBytes},
		{"http-read-header-timeout", int64(c.HTTPReadHeaderTimeout)}, {"http-read-timeout", int64(c.HTTPReadTimeout)},
		{"http-write-timeout", int64(c.HTTPWriteTimeout)}, {"http-idle-timeout", int64(c.HTTPIdleTimeout)},
		{"webhook-max-age", int64(c.WebhookMaxAge)}, {"webhook-max-skew", int64(c.WebhookMaxSkew)},
		{"auth-timeout", int64(c.AuthTimeout)}, {"token-expiry-warning", int64(c.TokenWarning)},
		{"max-connections", int64(c.MaxConnections)}, {"max-connections-per-user", int64(c.MaxConnsPerUser)},
		{"max-frame-rate", int64(c.MaxFrameRate * 1000)}, {"max-frame-burst", int64(c.MaxFrameBurst)},
	}
	if c.CallCacheTTL < 0 {
		errs = append(errs, fmt.Errorf("--call-cache-ttl (%s) must not be negative", envName("call-cache-ttl")))
	}
	if c.UnsubscribeLinger < 0 {
		errs = append(errs, fmt.Errorf("--unsubscribe-linger (%s) must not be negative", envName("unsubscribe-linger")))
	}
	if c.WebhookBodyBudget < max(c.MaxBody, c.MaxPostCallBody) {
		errs = append(errs, fmt.Errorf("--webhook-body-budget (%s) must be at least --max-post-call-body and --max-body, or the largest webhooks could never be read", envName("webhook-body-budget")))
	}
	for _, p := range positive {
		if p.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s (%s) must be positive", p.name, envName(p.name)))
		}
	}
	return errors.Join(errs...)
}

// checkAddr checks the listen address of flag name: host:port or :port,
// with a port from 0 to 65535 and a host that is an IP address or a host
// name, so that a bad one is reported with the rest of the configuration
// rather than when the listener starts.
func checkAddr(name, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err == nil && host != "" && !validHost(host) {
		err = errors.New("bad host")
	}
	if err != nil {
		return fmt.Errorf("--%s %q: want host:port or :port, with an IP address or host name and a port from 0 to 65535", name, addr)
	}
	return nil
}

// validHost reports whether h is an IP address (an IPv6 one may carry a
// zone) or a host name of dot-separated labels of letters, digits and
// hyphens.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
