package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/redistest"
)

// BenchmarkLiveWebhook measures the webhook ingest path end to end: a
// signed live-event webhook posted over loopback HTTP to a running
// instance, which verifies and decodes it, finds the call, and publishes
// the event through Redis (numbered, deduplicated, stored in history).
// in-flight is how many webhooks are posted at once. The HTTP client runs
// in the same process and its CPU counts. On miniredis by default;
// CALLGATE_TEST_REDIS=real measures against redis-server.
func BenchmarkLiveWebhook(b *testing.B) {
	for _, inFlight := range []int{1, 16} {
		b.Run(fmt.Sprintf("in-flight=%d", inFlight), func(b *testing.B) {
			srv := redistest.Start(b)
			in := startInstance(b, srv, redistest.Prefix(b), "bench", func(c *config) { c.LogLevel = slog.LevelError })
			in.saveCall(calls.Update{CallSID: "EL_bench", Status: calls.StatusInProgress})
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: inFlight}}
			defer client.CloseIdleConnections()
			var next atomic.Int64
			post := func() bool {
				n := next.Add(1)
				if n > int64(b.N) {
					return false
				}
				body := fmt.Appendf(nil, `{"call_sid":"EL_bench","event":{"type":"agent_response",`+
					`"agent_response_event":{"agent_response":"Thanks for calling, how can I help?","event_id":%d}}}`, n)
				req, err := http.NewRequest(http.MethodPost, in.url+"/webhooks/transcription", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return false
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(calls.SignatureHeader, calls.Sign([]byte(testSecret), time.Now(), body))
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return false
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("webhook %d: %s", n, resp.Status)
					return false
				}
				return true
			}
			b.ResetTimer()
			var wg sync.WaitGroup
			for range inFlight {
				wg.Go(func() {
					for post() {
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "webhooks/s")
		})
	}
}
