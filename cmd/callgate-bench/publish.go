package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"

	"github.com/callgate/callgate/calls"
)

// maxAttempts bounds the tries of one webhook or API request that the
// gateway answers 503 (or not at all).
const maxAttempts = 5

// answer is the part of a gateway answer the run reads.
type answer struct {
	Status  string `json:"status"`
	EventID string `json:"event_id"`
	Epoch   string `json:"epoch"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// post sends body to path on the next target and decodes the answer.
// It retries what the gateway asks to retry: 503, 502, 504 and requests
// that got no answer.
func (b *bench) post(ctx context.Context, path string, body []byte, header func(set func(key, value string))) (int, answer, int, error) {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		status, a, err := b.postOnce(ctx, path, body, header)
		retry := err != nil || status == http.StatusServiceUnavailable ||
			status == http.StatusBadGateway || status == http.StatusGatewayTimeout
		if !retry || attempt == maxAttempts || ctx.Err() != nil {
			return status, a, attempt, err
		}
		if err == nil {
			b.count(b.httpStatus, strconv.Itoa(status))
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return status, a, attempt, ctx.Err()
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (b *bench) postOnce(ctx context.Context, path string, body []byte, header func(set func(key, value string))) (int, answer, error) {
	if err := ctx.Err(); err != nil {
		return 0, answer{}, err
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(b.target(b.nextHTTP.Add(1)) + path)
	req.Header.SetMethod(http.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	header(req.Header.Set)
	deadline := time.Now().Add(httpTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := b.http.DoDeadline(req, resp, deadline); err != nil {
		return 0, answer{}, err
	}
	var a answer
	if err := json.Unmarshal(resp.Body(), &a); err != nil {
		a.Message = fmt.Sprintf("%.200s", resp.Body())
	}
	return resp.StatusCode(), a, nil
}

// register creates every call concurrently: in-progress, or initiated
// with --first-event.
func (b *bench) register(ctx context.Context, cs []*callState) error {
	var failed atomic.Int64
	var first error
	var once sync.Once
	forEach(ctx, len(cs), b.cfg.Concurrency, func(i int) {
		call := map[string]string{"call_sid": cs[i].sid, "status": "in-progress"}
		if b.cfg.FirstEvent {
			delete(call, "status")
		}
		body, _ := json.Marshal(call)
		status, a, _, err := b.post(ctx, "/api/calls", body, func(set func(string, string)) {
			if b.cfg.APIKey != "" {
				set("Authorization", "Bearer "+b.cfg.APIKey)
			}
		})
		if err == nil && status != http.StatusCreated && status != http.StatusOK {
			b.count(b.httpStatus, strconv.Itoa(status))
			err = fmt.Errorf("%d %s: %s", status, a.Code, a.Message)
		}
		if err != nil {
			failed.Add(1)
			once.Do(func() { first = fmt.Errorf("register call %s: %w", cs[i].sid, err) })
		}
	})
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("registering %d calls: %w", len(cs), err)
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d calls not registered; first: %w", n, len(cs), first)
	}
	return nil
}

// webhookBody is a live agent_response event of call with the ElevenLabs
// event_id source.
func (b *bench) webhookBody(call string, source int64) []byte {
	body, _ := json.Marshal(map[string]any{
		"call_sid": call,
		"event": map[string]any{
			"type": "agent_response",
			"agent_response_event": map[string]any{
				"agent_response": b.text,
				"event_id":       source,
			},
		},
	})
	return body
}

// webhook posts one live event to call and records the event the gateway
// published for it, and when its HTTP call started: once signed, just
// before the first attempt goes to the HTTP client.
func (b *bench) webhook(ctx context.Context, c *callState) {
	body := b.webhookBody(c.sid, c.source.Add(1))
	sent := time.Now()
	var start, tried time.Time
	status, a, attempts, err := b.post(ctx, "/webhooks/transcription", body, func(set func(string, string)) {
		b.webhooksSent.Add(1)
		if b.cfg.WebhookSecret != "" {
			set(calls.SignatureHeader, calls.Sign([]byte(b.cfg.WebhookSecret), time.Now(), body))
		}
		tried = time.Now()
		if start.IsZero() {
			start = tried
		}
	})
	answered := time.Now()
	if attempts > 1 {
		b.webhookRetry.Add(int64(attempts - 1))
	}
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			b.fail("webhook failed", "call %s: %v", c.sid, err)
		}
		b.webhookFailed.Add(1)
		return
	}
	if status != http.StatusOK {
		b.count(b.httpStatus, strconv.Itoa(status))
		b.fail("webhook refused", "call %s: %d %s: %s", c.sid, status, a.Code, a.Message)
		b.webhookFailed.Add(1)
		return
	}
	id, perr := strconv.ParseInt(a.EventID, 10, 64)
	epoch, eerr := int64(0), error(nil)
	if a.Epoch != "" {
		epoch, eerr = strconv.ParseInt(a.Epoch, 10, 64)
	}
	switch {
	case perr != nil || id <= 0 || eerr != nil || epoch < 0:
		b.fail("webhook answer", "call %s: status %q, event_id %q, epoch %q", c.sid, a.Status, a.EventID, a.Epoch)
		b.webhookFailed.Add(1)
		return
	case a.Status == "duplicate" && attempts == 1:
		// Our event ids are unique: the gateway saw this one before.
		b.fail("webhook answer", "call %s: first delivery answered duplicate", c.sid)
	case a.Status != "published" && a.Status != "duplicate":
		b.fail("webhook answer", "call %s: status %q", c.sid, a.Status)
		b.webhookFailed.Add(1)
		return
	}
	// A duplicate after a retry is the first delivery's event: published.
	b.webhookH.Record(answered.Sub(tried))
	c.answered(id, epoch, start, answered)
	c.record(id, sent)
	b.published.Add(1)
}

// publish posts webhooks round-robin over cs with --publishers in flight,
// at --rate per second (0: as fast as they are answered), until stop or
// --max-events were sent; with --first-event, one per call at most.
// Requests in flight at stop finish under ctx.
func (b *bench) publish(ctx context.Context, cs []*callState, stop <-chan struct{}) {
	limit := int64(b.cfg.MaxEvents)
	if b.cfg.FirstEvent {
		limit = min(limit, int64(len(cs)))
	}
	var limiter *rate.Limiter
	if b.cfg.Rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(b.cfg.Rate), max(1, int(b.cfg.Rate/100)))
	}
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-waitCtx.Done():
		}
	}()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range b.cfg.Publishers {
		wg.Go(func() {
			for waitCtx.Err() == nil {
				if limiter != nil && limiter.Wait(waitCtx) != nil {
					return
				}
				n := next.Add(1)
				if n > limit {
					return
				}
				b.webhook(ctx, cs[(n-1)%int64(len(cs))])
			}
		})
	}
	wg.Wait()
}
