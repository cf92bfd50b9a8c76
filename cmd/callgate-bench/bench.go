package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/valyala/fasthttp"
)

// bench is one run: its configuration, clients and measurements. Every
// counter is safe for concurrent use.
type bench struct {
	cfg    config
	runID  string
	out    io.Writer // progress lines
	http   *fasthttp.Client
	dialer *websocket.Dialer
	text   string // transcript text of every webhook

	nextSource atomic.Uint64
	nextHTTP   atomic.Uint64

	connectH, subscribeH, unsubscribeH, latencyH, webhookH hist
	// Deliveries timed from the start of their webhook's HTTP call: to
	// the receipt, and to the publish time.
	fromStartH, startToPublishH hist
	// Webhooks whose event a subscriber received: from the start of the
	// HTTP call to the answer, and that split at the publish time.
	callH, callToPublishH, publishToAnswerH hist

	open          atomic.Int64 // sockets open now
	opened        atomic.Int64 // sockets ever opened
	connectErrors atomic.Int64
	subErrors     atomic.Int64
	unsubErrors   atomic.Int64

	delivered atomic.Int64 // transcript events received, repeats not counted
	// deliveredSignal wakes the drain after a delivery while draining is
	// set (see awaitDeliveries).
	deliveredSignal chan struct{}
	draining        atomic.Bool
	duplicated      atomic.Int64 // events received again by the same subscriber
	reordered       atomic.Int64 // events received after a later one
	missing         atomic.Int64 // event ids skipped and not received (yet)
	statuses        atomic.Int64 // status events received
	untimed         atomic.Int64 // transcripts not matched to their webhook's start

	webhooksSent  atomic.Int64 // requests, retries included
	published     atomic.Int64 // events the gateway published for us
	webhookRetry  atomic.Int64
	webhookFailed atomic.Int64 // events given up on
	pairs         atomic.Int64

	mu           sync.Mutex
	httpStatus   map[string]int64 // webhook and API answers other than 200/201, by status
	serverCloses map[string]int64 // sockets closed by the server, by close code
	serverErrors map[string]int64 // error frames, by code
	errCount     map[string]int64 // everything that went wrong, by kind
	errSamples   []string
}

// httpTimeout bounds one HTTP request to a gateway.
const httpTimeout = 30 * time.Second

// maxErrSamples bounds the error messages kept for the report.
const maxErrSamples = 20

func newBench(cfg config, out io.Writer) *bench {
	var id [4]byte
	_, _ = rand.Read(id[:])
	b := &bench{
		cfg:          cfg,
		runID:        hex.EncodeToString(id[:]),
		out:          out,
		httpStatus:   map[string]int64{},
		serverCloses: map[string]int64{},
		// One pending wake-up is enough: the drain checks the count
		// again after each.
		deliveredSignal: make(chan struct{}, 1),
		serverErrors:    map[string]int64{},
		errCount:        map[string]int64{},
	}
	idle := max(cfg.Publishers, cfg.Concurrency) * 2
	// fasthttp's client takes a fraction of net/http's CPU per request,
	// which leaves more of a shared machine to the gateways measured.
	b.http = &fasthttp.Client{
		MaxConnsPerHost:               idle,
		MaxConnWaitTimeout:            httpTimeout,
		MaxIdleConnDuration:           30 * time.Second,
		ReadTimeout:                   httpTimeout,
		WriteTimeout:                  httpTimeout,
		MaxResponseBodySize:           64 << 10,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		Dial: func(addr string) (net.Conn, error) {
			return fasthttp.DialTimeout(addr, 10*time.Second)
		},
	}
	b.dialer = &websocket.Dialer{
		NetDialContext:   b.dialSocket,
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   2048,
		WriteBufferSize:  1024,
		WriteBufferPool:  &sync.Pool{},
	}
	const filler = "callgate bench transcript segment, "
	b.text = strings.Repeat(filler, cfg.PayloadBytes/len(filler)+1)[:cfg.PayloadBytes]
	return b
}

// dialSocket opens a socket's TCP connection from the next --source-ips
// address, if any.
func (b *bench) dialSocket(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if ips := b.cfg.SourceIPs; len(ips) > 0 {
		d.LocalAddr = &net.TCPAddr{IP: ips[b.nextSource.Add(1)%uint64(len(ips))]}
	}
	return d.DialContext(ctx, network, addr)
}

// target picks the base URL of request or socket n.
func (b *bench) target(n uint64) string { return b.cfg.Targets[n%uint64(len(b.cfg.Targets))] }

// fail records something that went wrong.
func (b *bench) fail(kind, format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errCount[kind]++
	if len(b.errSamples) < maxErrSamples {
		b.errSamples = append(b.errSamples, kind+": "+fmt.Sprintf(format, args...))
	}
}

func (b *bench) count(m map[string]int64, key string) {
	b.mu.Lock()
	m[key]++
	b.mu.Unlock()
}

func (b *bench) errors() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	for _, v := range b.errCount {
		n += v
	}
	return n
}

// token returns the Authorization header value for socket n, if any.
func (b *bench) token(n int) (string, error) {
	switch {
	case b.cfg.Token != "":
		return "Bearer " + b.cfg.Token, nil
	case b.cfg.JWTSecret != "":
		now := time.Now()
		claims := jwt.MapClaims{
			// One subject per socket: the gateway limits sockets per user.
			"sub": fmt.Sprintf("callgate-bench-%s-%d", b.runID, n),
			"iat": now.Unix(),
			"exp": now.Add(maxDuration + b.cfg.SetupTimeout + time.Hour).Unix(),
		}
		if b.cfg.JWTAudience != "" {
			claims["aud"] = b.cfg.JWTAudience
		}
		t, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(b.cfg.JWTSecret))
		if err != nil {
			return "", err
		}
		return "Bearer " + t, nil
	}
	return "", nil
}

// callState is one call the run registered and publishes to.
type callState struct {
	sid string
	// source numbers the ElevenLabs event_id of each webhook: unique per
	// call, or the gateway drops the repeat.
	source atomic.Int64

	mu        sync.Mutex
	published []publishedEvent

	// epoch is the epoch of the first answer to a webhook (unknownEpoch
	// until then), and times the times of the call's events in it.
	epoch atomic.Int64
	times *eventTimes
}

// publishedEvent is an event the gateway published for a webhook, and
// when the webhook was first sent.
type publishedEvent struct {
	id   int64
	sent time.Time
}

func (c *callState) record(id int64, sent time.Time) {
	c.mu.Lock()
	c.published = append(c.published, publishedEvent{id, sent})
	c.mu.Unlock()
}

// events returns the published events, by event_id.
func (c *callState) events() []publishedEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]publishedEvent(nil), c.published...)
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (b *bench) newCalls(n int) []*callState {
	calls := make([]*callState, n)
	// Webhooks go round-robin over the calls, and each call may have a
	// status event besides: twice that leaves room.
	perCall := int64(b.cfg.MaxEvents/max(n, 1)+1) * 2
	for i := range calls {
		calls[i] = &callState{sid: fmt.Sprintf("callgate-bench-%s-%d", b.runID, i), times: newEventTimes(perCall)}
		calls[i].epoch.Store(unknownEpoch)
	}
	return calls
}

// forEach runs f for 0..n-1 with at most limit at once, until ctx ends.
func forEach(ctx context.Context, n, limit int, f func(i int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}
