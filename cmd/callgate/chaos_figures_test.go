package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chaosPos is a position as a client tracks it: (epoch, event_id).
// Epochs are compared as numbers here, to check that they only grow; a
// client compares them for equality only.
type chaosPos struct{ epoch, seq int64 }

func (p chaosPos) less(q chaosPos) bool {
	return p.epoch < q.epoch || p.epoch == q.epoch && p.seq < q.seq
}

func (p chaosPos) String() string { return fmt.Sprintf("%d/%d", p.epoch, p.seq) }

// parseChaosPos reads a frame's epoch (absent: "0") and event_id.
func parseChaosPos(epoch, id string) (chaosPos, error) {
	if epoch == "" {
		epoch = "0"
	}
	e, err1 := strconv.ParseInt(epoch, 10, 64)
	n, err2 := strconv.ParseInt(id, 10, 64)
	if err1 != nil || err2 != nil {
		return chaosPos{}, fmt.Errorf("position %q/%q", epoch, id)
	}
	return chaosPos{e, n}, nil
}

// chaosKind is what a client saw.
type chaosKind int

const (
	// seenEvent: an event frame.
	seenEvent chaosKind = iota
	// seenSubscribed: a subscribed frame without recovered:false.
	seenSubscribed
	// seenNotRecovered: a subscribed frame with recovered:false.
	seenNotRecovered
	// seenReset: a reset frame.
	seenReset
)

// chaosSeen is one frame of one call, as a client saw it, in order.
type chaosSeen struct {
	kind chaosKind
	// pos is an event's position, or the position a subscribed or reset
	// frame sets.
	pos chaosPos
	// before is the client's position when a subscribed or reset frame
	// came.
	before chaosPos
	// marker names an event by its content (see chaosMarker).
	marker string
}

// chaosTold reports whether the frame tells the client that events may
// be lost.
func (s chaosSeen) told() bool { return s.kind == seenNotRecovered || s.kind == seenReset }

// chaosAck is a webhook answered 2xx, and what it said.
type chaosAck struct {
	call, marker string
	// pos is the position the answer gave; hasPos is false for the
	// status event of a call's registration, whose answer gives none.
	pos    chaosPos
	hasPos bool
	// duplicate: answered "duplicate" (an earlier attempt was stored).
	duplicate bool
	// retried: an earlier attempt failed (5xx, or no answer).
	retried bool
	// took is the answered attempt's time; total, from the first
	// attempt; quiet, whether no fault ran meanwhile.
	took, total time.Duration
	quiet       bool
}

// chaosFigures is what the chaos test counts.
type chaosFigures struct {
	deliveries int
	// lost: an acknowledged event a client following its call never
	// received, although it is stored (lostStored) or was dropped by
	// Redis without the client being told (lostUntold).
	lost, lostStored, lostUntold int
	// duplicated: an event received twice (the same position, or the
	// same acknowledged event at two stored positions).
	duplicated int
	// outOfOrder: an event whose position is not after the previous
	// one's (epochs only grow, event ids only grow within an epoch).
	outOfOrder int
	// gaps: an event that does not follow the client's position (as the
	// last event, subscribed or reset frame set it) without a
	// recovered:false or reset frame in between.
	gaps int
	// foreign: an event never posted to its call.
	foreign int
	// misplaced: an acknowledged position that holds another event, in
	// the final history or in another acknowledgement.
	misplaced int

	// redisLost: acknowledged events Redis itself dropped (absent from
	// the final history); redisLostSeen: clients that had received one
	// before; told: clients that had not, told by recovered:false or a
	// reset.
	redisLost, redisLostSeen, told int
	// notRecovered and resets: the frames received; conservative: those
	// of them across which the client missed no acknowledged event.
	notRecovered, resets, conservative int
	// twice: events published twice (an unacknowledged publication
	// Redis dropped, then the sender's retry); twiceSeen: clients that
	// received both publications.
	twice, twiceSeen int

	// problems describes the first failures found.
	problems []string
}

func (f *chaosFigures) problem(format string, args ...any) {
	if len(f.problems) < 20 {
		f.problems = append(f.problems, fmt.Sprintf(format, args...))
	}
}

// chaosHistory is every call's final history: position -> marker.
type chaosHistory map[string]map[chaosPos]string

// chaosFollower is what one client saw of one call.
type chaosFollower struct {
	client string
	call   string
	seen   []chaosSeen
}

// analyseChaos counts, from what each client saw, what the webhooks'
// answers acknowledged and what Redis holds in the end.
func analyseChaos(followers []chaosFollower, acks []chaosAck, hist chaosHistory) chaosFigures {
	var f chaosFigures
	byCall := map[string][]chaosAck{}
	for _, a := range acks {
		byCall[a.call] = append(byCall[a.call], a)
	}
	// Where each event was stored in the end, and which acknowledged
	// positions hold another event.
	stored := map[string]map[string][]chaosPos{}
	for call, h := range hist {
		stored[call] = map[string][]chaosPos{}
		for p, m := range h {
			stored[call][m] = append(stored[call][m], p)
		}
	}
	for call, as := range byCall {
		at := map[chaosPos]string{}
		for _, a := range as {
			if !a.hasPos {
				continue
			}
			if m, ok := at[a.pos]; ok && m != a.marker {
				f.misplaced++
				f.problem("%s: %q and %q were both acknowledged at %s", call, m, a.marker, a.pos)
			}
			at[a.pos] = a.marker
			if m, ok := hist[call][a.pos]; ok && m != a.marker {
				f.misplaced++
				f.problem("%s: %q was acknowledged at %s, which holds %q in the end", call, a.marker, a.pos, m)
			}
		}
	}

	// Every position each event was published at, as anyone saw it.
	published := map[string]map[string]map[chaosPos]bool{}
	note := func(call, marker string, p chaosPos) {
		if published[call] == nil {
			published[call] = map[string]map[chaosPos]bool{}
		}
		if published[call][marker] == nil {
			published[call][marker] = map[chaosPos]bool{}
		}
		published[call][marker][p] = true
	}
	for call, as := range byCall {
		for _, a := range as {
			if a.hasPos {
				note(call, a.marker, a.pos)
			}
		}
	}
	for call, ms := range stored {
		for m, ps := range ms {
			for _, p := range ps {
				note(call, m, p)
			}
		}
	}

	for _, fl := range followers {
		posted := map[string]bool{}
		for _, a := range byCall[fl.call] {
			posted[a.marker] = true
		}
		received := map[string][]chaosPos{}
		seenAt := map[chaosPos]bool{}
		cover := coverOf(fl.seen)
		needed := make([]bool, len(fl.seen))
		var cur, prev chaosPos
		first := true
		for i, s := range fl.seen {
			switch s.kind {
			case seenEvent:
				f.deliveries++
				note(fl.call, s.marker, s.pos)
				switch {
				case !posted[s.marker]:
					f.foreign++
					f.problem("%s: %s: event %q at %s was never posted to this call", fl.client, fl.call, s.marker, s.pos)
				case seenAt[s.pos]:
					f.duplicated++
					f.problem("%s: %s: %s received twice (%q)", fl.client, fl.call, s.pos, s.marker)
				case !first && !prev.less(s.pos):
					f.outOfOrder++
					f.problem("%s: %s: %s (%q) after %s", fl.client, fl.call, s.pos, s.marker, prev)
				case s.pos == chaosPos{cur.epoch, cur.seq + 1},
					cur == chaosPos{} && s.pos.seq == 1,
					len(cover[i]) > 0 && cur.epoch < s.pos.epoch && s.pos.seq == 1:
					// The next event; the first of the call; the first
					// of a later epoch, announced.
				default:
					f.gaps++
					f.problem("%s: %s: %s (%q) follows position %s with nothing announced; frames before it: %s", fl.client, fl.call, s.pos, s.marker, cur, describeSeen(fl.seen[max(0, i-4):i]))
				}
				seenAt[s.pos] = true
				received[s.marker] = append(received[s.marker], s.pos)
				cur, prev, first = s.pos, s.pos, false
			case seenSubscribed:
				cur = s.pos
			case seenNotRecovered:
				f.notRecovered++
				cur = s.pos
			case seenReset:
				f.resets++
				cur = s.pos
			}
		}

		for _, a := range byCall[fl.call] {
			ps := received[a.marker]
			if len(ps) > 0 {
				distinct := map[chaosPos]bool{}
				kept := 0
				for _, p := range ps {
					if !distinct[p] {
						distinct[p] = true
						if hist[fl.call][p] == a.marker {
							kept++
						}
					}
				}
				switch {
				case len(distinct) < 2:
				case kept <= 1:
					f.twiceSeen++
				default:
					f.duplicated++
					f.problem("%s: %s: %q received at %d stored positions", fl.client, fl.call, a.marker, kept)
				}
				continue
			}
			if len(stored[fl.call][a.marker]) > 0 {
				f.lost++
				f.lostStored++
				f.problem("%s: %s: %q (acknowledged at %s) is stored at %v but never arrived", fl.client, fl.call, a.marker, a.pos, stored[fl.call][a.marker])
				continue
			}
			// Redis dropped it: the client must have been told, between
			// its last event before the position and its first after.
			if a.hasPos && toldAcross(fl.seen, cover, a.pos, needed) {
				f.told++
				continue
			}
			f.lost++
			f.lostUntold++
			f.problem("%s: %s: %q (acknowledged at %s) was dropped by Redis and the client was not told", fl.client, fl.call, a.marker, a.pos)
		}
		for i, s := range fl.seen {
			if s.told() && !needed[i] {
				f.conservative++
			}
		}
	}

	for call, as := range byCall {
		for _, a := range as {
			if len(stored[call][a.marker]) == 0 {
				f.redisLost++
			}
		}
		for m, ps := range published[call] {
			if len(ps) > 1 && posted(as, m) {
				f.twice++
			}
		}
	}
	for _, fl := range followers {
		for _, a := range byCall[fl.call] {
			if len(stored[fl.call][a.marker]) > 0 {
				continue
			}
			for _, s := range fl.seen {
				if s.kind == seenEvent && s.marker == a.marker {
					f.redisLostSeen++
					break
				}
			}
		}
	}
	return f
}

// describeSeen writes frames as a client saw them, for a failure's
// message.
func describeSeen(seen []chaosSeen) string {
	var b strings.Builder
	for _, s := range seen {
		switch s.kind {
		case seenEvent:
			fmt.Fprintf(&b, "[event %s %q]", s.pos, s.marker)
		case seenSubscribed:
			fmt.Fprintf(&b, "[subscribed at %s, had %s]", s.pos, s.before)
		case seenNotRecovered:
			fmt.Fprintf(&b, "[subscribed recovered:false at %s, had %s]", s.pos, s.before)
		case seenReset:
			fmt.Fprintf(&b, "[reset to %s, had %s]", s.pos, s.before)
		}
	}
	return b.String()
}

func posted(as []chaosAck, marker string) bool {
	return slices.ContainsFunc(as, func(a chaosAck) bool { return a.marker == marker })
}

// coverOf returns, for each event of seen and for the end (index
// len(seen)), the frames that announced that events may be missing just
// before it: the reset frames since the previous event, and the
// subscribed frame of the connection it came on when that said
// recovered:false (a resume replays what the store holds across epochs,
// with no other frame: the recovered:false covers the whole replay, and
// the live events that follow are announced by resets).
func coverOf(seen []chaosSeen) [][]int {
	cover := make([][]int, len(seen)+1)
	session := -1 // the connection's subscribed frame, if recovered:false
	var resets []int
	for i, s := range seen {
		switch s.kind {
		case seenSubscribed:
			session = -1
		case seenNotRecovered:
			session = i
		case seenReset:
			resets = append(resets, i)
		case seenEvent:
			cover[i] = coverNow(session, resets)
			resets = nil
		}
	}
	cover[len(seen)] = coverNow(session, resets)
	return cover
}

func coverNow(session int, resets []int) []int {
	c := slices.Clone(resets)
	if session >= 0 {
		c = append(c, session)
	}
	return c
}

// toldAcross reports whether the client was told that events may be
// missing where it went past p: before the first event after p (or the
// end), by a frame that came while it had not reached p. It marks those
// frames in needed.
func toldAcross(seen []chaosSeen, cover [][]int, p chaosPos, needed []bool) bool {
	after := len(seen)
	for i, s := range seen {
		if s.kind == seenEvent && p.less(s.pos) {
			after = i
			break
		}
	}
	found := false
	for _, i := range cover[after] {
		if seen[i].before.less(p) {
			needed[i] = true
			found = true
		}
	}
	return found
}

// chaosMarker names an event by its content: "status" for the status
// event of a call's registration, the first three words of a transcript
// ("mk <call_sid> <n>"), or the text itself.
func chaosMarker(event, text string) string {
	if event == "status" {
		return "status"
	}
	w := strings.SplitN(text, " ", 4)
	if len(w) >= 3 && w[0] == "mk" {
		return strings.Join(w[:3], " ")
	}
	return text
}

// percentile returns the p-th percentile of ds, which it sorts.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)]
}

// TestChaosFigures checks the chaos test's own accounting on made-up
// runs: what Redis dropped and the client was told of is no loss, what
// it was not told of is one, a retry that published again is counted
// apart, and a reset that skipped nothing is conservative.
func TestChaosFigures(t *testing.T) {
	ev := func(e, n int64, m string) chaosSeen {
		return chaosSeen{kind: seenEvent, pos: chaosPos{e, n}, marker: m}
	}
	sub := func(k chaosKind, be, bn, e, n int64) chaosSeen {
		return chaosSeen{kind: k, before: chaosPos{be, bn}, pos: chaosPos{e, n}}
	}
	ack := func(m string, e, n int64) chaosAck {
		return chaosAck{call: "C", marker: m, pos: chaosPos{e, n}, hasPos: true}
	}
	// Epoch 7 held a..e; d (7/4) and e (7/5) were acknowledged, then
	// dropped by a failover; the sender's retry of f, whose first attempt
	// (7/6) got no answer, published it again as 9/1; g followed.
	hist := chaosHistory{"C": {{7, 1}: "a", {7, 2}: "b", {7, 3}: "c", {9, 1}: "f", {9, 2}: "g"}}
	acks := []chaosAck{ack("a", 7, 1), ack("b", 7, 2), ack("c", 7, 3), ack("d", 7, 4), ack("e", 7, 5), ack("f", 9, 1), ack("g", 9, 2)}

	cases := []struct {
		name string
		seen []chaosSeen
		want func(f chaosFigures) bool
	}{
		{"live through the failover: had everything, one conservative reset", []chaosSeen{
			sub(seenSubscribed, 0, 0, 0, 0), ev(7, 1, "a"), ev(7, 2, "b"), ev(7, 3, "c"), ev(7, 4, "d"), ev(7, 5, "e"), ev(7, 6, "f"),
			sub(seenReset, 7, 6, 9, 0), ev(9, 1, "f"), ev(9, 2, "g"),
		}, func(f chaosFigures) bool {
			return f.lost == 0 && f.resets == 1 && f.conservative == 1 && f.twice == 1 && f.twiceSeen == 1 && f.told == 0 && f.gaps == 0
		}},
		{"resumed after the failover: told recovered:false", []chaosSeen{
			sub(seenSubscribed, 0, 0, 0, 0), ev(7, 1, "a"), ev(7, 2, "b"), ev(7, 3, "c"),
			sub(seenNotRecovered, 7, 3, 7, 3), ev(9, 1, "f"), ev(9, 2, "g"),
		}, func(f chaosFigures) bool {
			return f.lost == 0 && f.told == 2 && f.notRecovered == 1 && f.conservative == 0 && f.gaps == 0
		}},
		{"resumed before the failover: the replay crosses into the new epoch", []chaosSeen{
			sub(seenSubscribed, 0, 0, 0, 0), ev(7, 1, "a"),
			sub(seenNotRecovered, 7, 1, 7, 1), ev(7, 2, "b"), ev(7, 3, "c"), ev(9, 1, "f"), ev(9, 2, "g"),
		}, func(f chaosFigures) bool {
			return f.lost == 0 && f.told == 2 && f.notRecovered == 1 && f.conservative == 0 && f.gaps == 0
		}},
		{"reset, then a reconnect before the next event", []chaosSeen{
			sub(seenSubscribed, 0, 0, 0, 0), ev(7, 1, "a"), ev(7, 2, "b"), ev(7, 3, "c"),
			sub(seenReset, 7, 3, 9, 0), sub(seenSubscribed, 9, 0, 9, 0), ev(9, 1, "f"), ev(9, 2, "g"),
		}, func(f chaosFigures) bool {
			return f.lost == 0 && f.told == 2 && f.resets == 1 && f.conservative == 0 && f.gaps == 0
		}},
		{"a later session: an epoch change needs a reset again", []chaosSeen{
			sub(seenSubscribed, 0, 0, 0, 0), ev(7, 1, "a"),
			sub(seenNotRecovered, 7, 1, 7, 1), ev(7, 2, "b"),
			sub(seenSubscribed, 7, 2, 7, 2), ev(7, 3, "c"), ev(9, 1, "f"), ev(9, 2, "g"),
		}, func(f chaosFigures) bool {
			return f.lost == 2 && f.lostUntold == 2 && f.gaps == 1 && f.conservative == 1
		}},
		{"skipped to the new epoch untold", []chaosSeen{
			sub(seenSubscribed, 0, 0, 0, 0), ev(7, 1, "a"), ev(7, 2, "b"), ev(7, 3, "c"), ev(9, 1, "f"), ev(9, 2, "g"),
		}, func(f chaosFigures) bool {
			return f.lost == 2 && f.lostUntold == 2 && f.gaps == 1
		}},
		{"a stored event missing, a duplicate, out of order", []chaosSeen{
			sub(seenSubscribed, 0, 0, 0, 0), ev(7, 1, "a"), ev(7, 1, "a"), ev(7, 3, "c"), ev(7, 2, "b"),
			sub(seenReset, 7, 2, 9, 0), ev(9, 2, "g"),
		}, func(f chaosFigures) bool {
			return f.lost == 1 && f.lostStored == 1 && f.duplicated == 1 && f.outOfOrder == 1 && f.told == 2
		}},
	}
	for _, c := range cases {
		f := analyseChaos([]chaosFollower{{client: "x", call: "C", seen: c.seen}}, acks, hist)
		if f.redisLost != 2 || f.misplaced != 0 || !c.want(f) {
			t.Errorf("%s: %+v", c.name, f)
		}
	}

	// An acknowledged position reused for another event is misplaced.
	bad := append(slices.Clone(acks), ack("h", 9, 2))
	if f := analyseChaos(nil, bad, hist); f.misplaced != 2 {
		t.Errorf("reused position: misplaced %d, want 2 (%v)", f.misplaced, f.problems)
	}
}
