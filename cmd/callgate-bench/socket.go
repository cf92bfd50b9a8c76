package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/internal/wire"
)

// replyWait bounds the wait for one reply of the gateway.
const replyWait = 10 * time.Second

// sock is one client socket. A goroutine reads it from dial until it
// closes; the goroutine that dialed it is the only one that writes.
type sock struct {
	b  *bench
	n  int
	ws *websocket.Conn

	// replies carries every frame that is not an event (welcome,
	// subscribed, unsubscribed, error, pong) to the writer waiting for it.
	replies chan reply
	done    chan struct{} // closed when the reader returns
	closing atomic.Bool   // the run closes it: the close is not an error
	reqID   int

	// call is the call the socket follows for the whole run and whose
	// events it checks; nil in churn. subscribedAt is when the gateway
	// confirmed it.
	call         *callState
	subscribedAt time.Time

	// Owned by the reader until done is closed: the event_ids received,
	// as the last one and the ranges skipped before it and not received
	// since.
	last int64
	gaps []idRange
	// pending are the transcripts received before their webhook's
	// answer, to time once the run has ended (settle).
	pending []pendingFrame
}

// idRange is the event ids lo..hi, inclusive.
type idRange struct{ lo, hi int64 }

type reply struct {
	typ, id, code, message string
}

// dial opens socket n on the next target and waits for its welcome. The
// socket will check the events of call, if not nil.
func (b *bench) dial(ctx context.Context, n int, call *callState) (*sock, error) {
	u := b.target(uint64(n))
	u = "ws" + strings.TrimPrefix(u, "http") + "/ws/calls/transcriptions"
	h := http.Header{}
	auth, err := b.token(n)
	if err != nil {
		return nil, err
	}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, replyWait)
	defer cancel()
	ws, resp, err := b.dialer.DialContext(ctx, u, h)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
			resp.Body.Close()
			return nil, fmt.Errorf("dial %s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
		}
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	s := &sock{b: b, n: n, ws: ws, call: call, replies: make(chan reply, 16), done: make(chan struct{})}
	b.open.Add(1)
	b.opened.Add(1)
	go s.read()
	r, err := s.await(ctx)
	if err == nil && r.typ != "welcome" {
		err = fmt.Errorf("first frame is %q, not welcome", r.typ)
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("socket %d on %s: %w", n, u, err)
	}
	b.connectH.Record(time.Since(start))
	return s, nil
}

// await returns the next reply.
func (s *sock) await(ctx context.Context) (reply, error) {
	t := time.NewTimer(replyWait)
	defer t.Stop()
	select {
	case r := <-s.replies:
		return r, nil
	case <-s.done:
		// A reply may have arrived just before the close.
		select {
		case r := <-s.replies:
			return r, nil
		default:
		}
		return reply{}, errors.New("socket closed")
	case <-t.C:
		return reply{}, fmt.Errorf("no reply within %v", replyWait)
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

// request sends a subscribe or unsubscribe of call and waits for its
// answer: nil for want, else the error frame or failure.
func (s *sock) request(ctx context.Context, typ, call, want string) error {
	s.reqID++
	id := strconv.Itoa(s.reqID)
	f := map[string]string{"type": typ, "id": id, "call": call}
	if typ == "subscribe" {
		f["since"] = "0"
	}
	data, _ := json.Marshal(f)
	_ = s.ws.SetWriteDeadline(time.Now().Add(replyWait))
	if err := s.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("send %s: %w", typ, err)
	}
	for {
		r, err := s.await(ctx)
		if err != nil {
			return fmt.Errorf("%s %s: %w", typ, call, err)
		}
		if r.id != id {
			continue // an answer to an earlier request that timed out
		}
		if r.typ == "error" {
			return fmt.Errorf("%s %s: error %s: %s", typ, call, r.code, r.message)
		}
		if r.typ != want {
			return fmt.Errorf("%s %s: answered %q", typ, call, r.typ)
		}
		return nil
	}
}

// close ends the socket with a normal close and waits briefly for the
// gateway's answer.
func (s *sock) close() {
	if s.closing.Swap(true) {
		<-s.done
		return
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = s.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
	}
	_ = s.ws.Close()
	<-s.done
}

// alive reports whether the reader still runs.
func (s *sock) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// read reads every frame until the socket closes.
func (s *sock) read() {
	defer close(s.done)
	defer s.b.open.Add(-1)
	var buf []byte
	for {
		_, r, err := s.ws.NextReader()
		if err == nil {
			buf, err = readFrame(r, buf[:0])
		}
		if err != nil {
			s.ended(err)
			return
		}
		s.handle(buf, time.Now())
	}
}

// readFrame appends the rest of r to buf.
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// ended records why a socket closed that the run did not close.
func (s *sock) ended(err error) {
	if s.closing.Load() {
		return
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		s.b.count(s.b.serverCloses, strconv.Itoa(ce.Code))
		s.b.fail("socket closed by the gateway", "socket %d: %d %s", s.n, ce.Code, ce.Text)
		return
	}
	s.b.count(s.b.serverCloses, "dropped")
	s.b.fail("socket dropped", "socket %d: %v", s.n, err)
}

func (s *sock) handle(f []byte, now time.Time) {
	if _, _, ok := wire.Parse(f); ok {
		s.event(f, now)
		return
	}
	var r struct {
		Type, ID, Code, Message string
	}
	if err := json.Unmarshal(f, &r); err != nil {
		s.b.fail("bad frame", "socket %d: %v: %.200s", s.n, err, f)
		return
	}
	switch r.Type {
	case "error":
		s.b.count(s.b.serverErrors, r.Code)
	case "token_expiring", "authenticated":
		return
	case "event":
		s.event(f, now)
		return
	}
	select {
	case s.replies <- reply{r.Type, r.ID, r.Code, r.Message}:
	default:
		s.b.fail("unexpected frame", "socket %d: %.200s", s.n, f)
	}
}

// eventFields reads an event frame's event_id, epoch, event and publish
// time, without decoding it when it is laid out as the gateway sends it;
// anything else is decoded in full. A frame without an epoch is of epoch
// 0.
func eventFields(f []byte) (id, epoch int64, event string, published time.Time, err error) {
	if id, epoch, ok := wire.Parse(f); ok {
		ev, ok := wire.EventName(f)
		if ns := wire.PublishedAt(f); ok && ns != 0 {
			return id, epoch, ev, time.Unix(0, ns), nil
		}
	}
	var e struct {
		EventID string    `json:"event_id"`
		Epoch   string    `json:"epoch"`
		Event   string    `json:"event"`
		Time    time.Time `json:"time"`
	}
	if err = json.Unmarshal(f, &e); err != nil {
		return 0, 0, "", time.Time{}, err
	}
	if id, err = strconv.ParseInt(e.EventID, 10, 64); err != nil {
		return 0, 0, "", time.Time{}, err
	}
	if e.Epoch != "" {
		if epoch, err = strconv.ParseInt(e.Epoch, 10, 64); err != nil {
			return 0, 0, "", time.Time{}, err
		}
	}
	return id, epoch, e.Event, e.Time, nil
}

// event records one event frame: its latency when it is one of the
// run's transcripts, from its publish time and from its webhook's start;
// and, for a socket that follows one call, whether its event_id is a
// repeat or comes after a gap.
func (s *sock) event(f []byte, now time.Time) {
	id, epoch, ev, published, err := eventFields(f)
	if err != nil || id <= 0 {
		s.b.fail("bad event frame", "socket %d: %v: %.200s", s.n, err, f)
		return
	}
	if s.call != nil && !s.track(id) {
		s.b.duplicated.Add(1)
		return
	}
	switch ev {
	case "transcript":
		s.b.delivered.Add(1)
		s.b.latencyH.Record(now.Sub(published))
		s.b.delivery()
		if s.call != nil {
			p := pendingFrame{id: id, epoch: epoch, received: now.UnixNano(), published: published.UnixNano()}
			if !s.b.timeDelivery(s.call, p) {
				s.pending = append(s.pending, p)
			}
		}
	case "status":
		s.b.statuses.Add(1)
	}
}

// track notes event id received; false if it was received before.
func (s *sock) track(id int64) bool {
	b := s.b
	switch {
	case id == s.last+1:
		s.last = id
		return true
	case id > s.last:
		s.gaps = append(s.gaps, idRange{s.last + 1, id - 1})
		b.missing.Add(id - s.last - 1)
		s.last = id
		return true
	}
	// An id at or before the last: it fills a gap, or it is a repeat.
	i := sort.Search(len(s.gaps), func(i int) bool { return s.gaps[i].hi >= id })
	if i == len(s.gaps) || s.gaps[i].lo > id {
		return false
	}
	b.reordered.Add(1)
	b.missing.Add(-1)
	g := s.gaps[i]
	switch {
	case g.lo == g.hi:
		s.gaps = append(s.gaps[:i], s.gaps[i+1:]...)
	case id == g.lo:
		s.gaps[i].lo++
	case id == g.hi:
		s.gaps[i].hi--
	default:
		s.gaps = append(s.gaps[:i+1], s.gaps[i:]...)
		s.gaps[i].hi = id - 1
		s.gaps[i+1].lo = id + 1
	}
	return true
}

// received reports whether event id was received. Only once the reader
// has returned.
func (s *sock) received(id int64) bool {
	if id > s.last {
		return false
	}
	i := sort.Search(len(s.gaps), func(i int) bool { return s.gaps[i].hi >= id })
	return i == len(s.gaps) || s.gaps[i].lo > id
}
