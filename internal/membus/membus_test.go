package membus_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/callgate/callgate/internal/bustest"
	"github.com/callgate/callgate/internal/membus"
)

// TestConformance holds the in-memory bus to the behaviours of the Redis
// bus.
func TestConformance(t *testing.T) {
	var buses []*membus.Bus
	bustest.Run(t, bustest.Env{
		Start: func(t *testing.T, h bustest.Hooks) (bustest.Bus, <-chan bustest.Message) {
			b := membus.New()
			b.OnLost = h.OnLost
			if h.OnReconnect != nil {
				b.OnReconnect = func(_ context.Context, chs []string) { h.OnReconnect(chs) }
			}
			buses = append(buses, b)
			msgs := make(chan bustest.Message, 4096)
			done := make(chan struct{})
			go func() {
				defer close(done)
				b.Run(context.Background(), func(ch string, p []byte) { msgs <- bustest.Message{Channel: ch, Payload: string(p)} })
			}()
			t.Cleanup(func() { b.Close(); <-done })
			return b, msgs
		},
		Publish: func(t *testing.T, ch, payload string) {
			for _, b := range buses {
				b.Publish(ch, []byte(payload))
			}
		},
		Subscribed: func(t *testing.T, ch string) int {
			n := 0
			for _, b := range buses {
				n += min(b.Refs(ch), 1)
			}
			return n
		},
		Break: func(t *testing.T) {
			for _, b := range buses {
				b.Break()
			}
		},
		Channel: func(t *testing.T, i int) string { return fmt.Sprintf("%s:%d", t.Name(), i) },
	})
}
