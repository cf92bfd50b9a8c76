package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/internal/wstest"
)

// TestOrgSetEndsOpenSubscriptions: a socket of org beta follows a call
// without an org; the API then gives the call to acme. On every instance,
// the beta socket's subscription ends at once with a documented frame,
// and not one more of acme's events reaches it; acme's socket goes on.
func TestOrgSetEndsOpenSubscriptions(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	a := secureInstance(t, srv, prefix)
	b := secureInstance(t, srv, prefix)
	const sid = "EL_taken"
	a.saveCall(calls.Update{CallSID: sid, Status: calls.StatusInProgress})
	var betas []*wstest.Client
	for _, in := range []*instance{a, b} {
		c, _, _ := in.dialWith(token(t, "beta-user", "beta"))
		c.MustSubscribe("s", sid)
		betas = append(betas, c)
	}
	owner, _, _ := b.dialWith(token(t, "acme-user", "acme"))
	owner.MustSubscribe("s", sid)
	a.mustPublish("/webhooks/transcription", transcript(sid, "public", 1))
	for _, c := range append(slices.Clone(betas), owner) {
		c.Expect("event")
	}

	a.saveCall(calls.Update{CallSID: sid, Org: "acme"})
	for i, c := range betas {
		if f := c.Expect("unsubscribed"); f.CallSID != sid || f.Reason != "forbidden" {
			t.Fatalf("beta socket %d: %s", i, f.Raw)
		}
	}
	a.mustPublish("/webhooks/transcription", transcript(sid, "acme's secret", 2))
	if f := owner.Expect("event"); f.Event != "transcript" {
		t.Fatalf("acme's socket: %s", f.Raw)
	}
	for i, c := range betas {
		c.Send(map[string]string{"type": "ping", "id": "p"})
		if f := c.Expect("pong"); f.ID != "p" {
			t.Fatalf("beta socket %d after its subscription ended: %s", i, f.Raw)
		}
		if f := c.Subscribe("again", sid); f.Code != gateway.CodeCallNotFound {
			t.Fatalf("beta socket %d subscribing again: %s", i, f.Raw)
		}
	}
}

// TestRefreshToAnotherOrgRechecks: an auth refresh whose token names
// another org (same user) ends the subscriptions the new org may not see,
// keeps the ones it may, and closes a topic socket the new org may not
// read with 4003.
func TestRefreshToAnotherOrgRechecks(t *testing.T) {
	srv := redistest.Start(t)
	in := secureInstance(t, srv, redistest.Prefix(t), func(c *config) { c.TopicOrgs = []string{"workflows=acme"} })
	in.saveCall(calls.Update{CallSID: "EL_acme", Org: "acme", Status: calls.StatusInProgress})
	in.saveCall(calls.Update{CallSID: "EL_public", Status: calls.StatusInProgress})
	c, _, _ := in.dialWith(token(t, "mover", "acme"))
	c.MustSubscribe("1", "EL_acme")
	c.MustSubscribe("2", "EL_public")
	c.Send(map[string]string{"type": "auth", "token": token(t, "mover", "globex")})
	c.Expect("authenticated")
	if f := c.Expect("unsubscribed"); f.CallSID != "EL_acme" || f.Reason != "forbidden" {
		t.Fatalf("after the refresh: %s", f.Raw)
	}
	in.mustPublish("/webhooks/transcription", transcript("EL_acme", "acme only", 1))
	in.mustPublish("/webhooks/transcription", transcript("EL_public", "for all", 1))
	if f := c.Expect("event"); f.CallSID != "EL_public" {
		t.Fatalf("got %s", f.Raw)
	}

	topicURL := in.wsURL("/ws/workflows")
	tc, status, _, err := wstest.DialStatus(t, topicURL, map[string][]string{"Authorization": {"Bearer " + token(t, "mover", "acme")}})
	if err != nil {
		t.Fatalf("topic socket: %d %v", status, err)
	}
	tc.Welcome()
	tc.Send(map[string]string{"type": "auth", "token": token(t, "mover", "globex")})
	tc.Expect("authenticated")
	if code := wstest.CloseCode(tc.Closed()); code != gateway.CloseForbidden {
		t.Fatalf("topic socket after a refresh to another org: close %d, want %d", code, gateway.CloseForbidden)
	}
}

// TestHiddenAndMissingCallsTakeTheSameTime: a call of another org and a
// call that does not exist answer with the same frame, and must not tell
// themselves apart by timing either: the two do the same work. The test
// interleaves probes of both from one socket and compares the medians of
// their round trips. Before, a hidden call was answered from memory in
// about half the time of an unknown one.
func TestHiddenAndMissingCallsTakeTheSameTime(t *testing.T) {
	srv := redistest.Start(t)
	in := secureInstance(t, srv, redistest.Prefix(t), func(c *config) {
		c.MaxFrameRate, c.MaxFrameBurst = 1e6, 1e6 // the probes come as fast as answered
	})
	const rounds = 150
	for i := range rounds {
		in.saveCall(calls.Update{CallSID: fmt.Sprintf("EL_hidden_%d", i), Org: "acme"})
	}
	// The owner's socket has this instance resolve every hidden call
	// first, as a busy instance would have.
	owner, _, _ := in.dialWith(token(t, "owner", "acme"))
	for i := range rounds {
		owner.MustSubscribe("o", fmt.Sprintf("EL_hidden_%d", i))
		owner.Send(map[string]string{"type": "unsubscribe", "id": "u", "call": fmt.Sprintf("EL_hidden_%d", i)})
		owner.Expect("unsubscribed")
	}
	prober, _, _ := in.dialWith(token(t, "prober", "beta"))
	probe := func(id string) time.Duration {
		start := time.Now()
		f := prober.Subscribe("p", id)
		d := time.Since(start)
		if f.Code != gateway.CodeCallNotFound || f.Message != "no call has that call_sid or conversation_id" {
			t.Fatalf("probe %s: %s", id, f.Raw)
		}
		return d
	}
	var hidden, missing []time.Duration
	for i := range rounds {
		h, m := fmt.Sprintf("EL_hidden_%d", i), fmt.Sprintf("EL_missing_%d_%d", i, rand.Int())
		if rand.IntN(2) == 0 {
			hidden = append(hidden, probe(h))
			missing = append(missing, probe(m))
		} else {
			missing = append(missing, probe(m))
			hidden = append(hidden, probe(h))
		}
	}
	mh, mm := median(hidden), median(missing)
	t.Logf("median round trip: hidden call %s, missing call %s (%d rounds each)", mh, mm, rounds)
	// Noise on a shared machine moves both alike: they are interleaved.
	// A gap like the one found (the hidden ones in half the time) is far
	// outside a third either way.
	if ratio := float64(mh) / float64(mm); ratio < 0.67 || ratio > 1.5 {
		t.Fatalf("hidden and missing calls are told apart by timing: medians %s and %s", mh, mm)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
