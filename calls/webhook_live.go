package calls

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/callgate/callgate/internal/httpapi"
	"github.com/callgate/callgate/internal/wire"
)

// liveSID finds the call_sid of a live event's call: its call_sid, else
// the call its conversation_id is linked to.
func (h *Handler) liveSID(ctx context.Context, ev Live) (string, error) {
	if ev.CallSID != "" {
		return ev.CallSID, nil
	}
	return h.sidByConversation(ctx, ev.ConversationID)
}

// sidByConversation returns the call_sid of the call conv names.
func (h *Handler) sidByConversation(ctx context.Context, conv string) (string, error) {
	if sid, ok := h.cache.sid(conv); ok {
		return sid, nil
	}
	call, err := h.cfg.Store.Resolve(ctx, conv)
	if err != nil {
		return "", err
	}
	h.cache.put(call)
	return call.CallSID, nil
}

// liveData appends the data of a live event, as subscribers receive it:
//
//	transcript             {"role":…,"text":…,"final":…,"source_event_id":…}
//	transcript_correction  {"role":…,"text":…,"original_text":…,"source_event_id":…}
//	interruption           {"source_event_id":…}
//
// source_event_id, ElevenLabs' event_id of the turn, is left out when the
// event had none. Written directly: the webhook path encodes it once per
// event, and strings are escaped as encoding/json escapes them.
func liveData(dst []byte, ev Live) []byte {
	dst = append(dst, '{')
	if ev.Kind != KindInterruption {
		dst = append(dst, `"role":`...)
		dst = wire.AppendString(dst, ev.Role)
		dst = append(dst, `,"text":`...)
		dst = wire.AppendString(dst, ev.Text)
		if ev.Kind == KindTranscript {
			dst = strconv.AppendBool(append(dst, `,"final":`...), ev.Final)
		} else {
			dst = append(dst, `,"original_text":`...)
			dst = wire.AppendString(dst, ev.OriginalText)
		}
	}
	if ev.HasSourceEventID {
		if ev.Kind != KindInterruption {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(append(dst, `"source_event_id":`...), ev.SourceEventID, 10)
	}
	return append(dst, '}')
}

func (h *Handler) liveWebhook(c echo.Context) error {
	body, ok, err := h.verified(c, h.cfg.MaxBody)
	if !ok {
		return err
	}
	ev, err := DecodeLive(body)
	if err != nil {
		note(c).reason = err.Error()
		return httpapi.Fail(c, http.StatusBadRequest, CodeInvalidRequest, err.Error())
	}
	note(c).typ = ev.Type
	ctx := c.Request().Context()
	sid, err := h.liveSID(ctx, ev)
	if err != nil {
		return h.storeError(c, err)
	}
	// A conversation_id that arrives with the call_sid, or announced by the
	// conversation's first event, links the two.
	link := ev.LinkConversationID
	if link == "" && ev.CallSID != "" {
		link = ev.ConversationID
	}
	if ev.Kind == KindLink || ev.Kind == "" {
		return h.liveNothing(c, ev, sid, link)
	}
	// A repeat of the same delivery is published once: one with an
	// event_id is the same turn of the same type; one without is the
	// same body.
	var mark string
	switch {
	case !ev.HasSourceEventID:
		mark = deliveryMark("live-body", string(body))
	case ev.Final:
		mark = deliveryMark("live", ev.Type, strconv.FormatInt(ev.SourceEventID, 10))
	default:
		// Tentative transcripts of one turn share its event_id and grow
		// with each update: only an identical text is a repeat.
		mark = deliveryMark("live", ev.Type, strconv.FormatInt(ev.SourceEventID, 10), ev.Text)
	}
	data := liveData(make([]byte, 0, 64+len(ev.Text)+len(ev.OriginalText)), ev)
	// The first live event of a call moves it to in-progress, announced
	// first, in the same step, whichever instance gets it.
	out := Event{Name: ev.Kind, Data: data, Mark: mark, Start: true}
	res, err := h.publishLive(ctx, sid, link, out)
	if errors.Is(err, ErrNotFound) && ev.CallSID != "" && ev.ConversationID != "" {
		// An unknown call_sid: the call may be known by its
		// conversation_id.
		if sid, err = h.sidByConversation(ctx, ev.ConversationID); err == nil {
			res, err = h.publishLive(ctx, sid, "", out)
		}
	}
	if err != nil {
		return h.storeError(c, err)
	}
	h.cache.put(res.Call)
	return h.published(c, ev.Kind, res)
}

// publishLive publishes ev of call sid, linked to conversation link first
// if it is not yet.
func (h *Handler) publishLive(ctx context.Context, sid, link string, ev Event) (Outcome, error) {
	if link == "" {
		return h.cfg.Events.Publish(ctx, sid, ev)
	}
	res, err := h.cfg.Events.PublishLinked(ctx, sid, link, ev)
	if !errors.Is(err, ErrNotLinked) {
		return res, err
	}
	if _, err := h.save(ctx, Update{CallSID: sid, ConversationID: link, existing: true}); err != nil {
		return Outcome{}, err
	}
	return h.cfg.Events.PublishLinked(ctx, sid, link, ev)
}

// liveNothing answers a live event that publishes nothing: it links the
// conversation, or is of a type the gateway ignores; either way the call
// must exist.
func (h *Handler) liveNothing(c echo.Context, ev Live, sid, link string) error {
	ctx := c.Request().Context()
	var (
		call Call
		err  error
	)
	if link != "" {
		var saved Saved
		saved, err = h.save(ctx, Update{CallSID: sid, ConversationID: link, existing: true})
		call = saved.Call
	} else {
		call, err = h.cfg.Store.Resolve(ctx, sid)
	}
	if err != nil {
		return h.storeError(c, err)
	}
	status := "ignored"
	if ev.Kind == KindLink {
		status = "linked"
	}
	n := note(c)
	n.result, n.call = status, call
	return c.JSON(http.StatusOK, webhookResult{Status: status, CallSID: call.CallSID, ConversationID: call.ConversationID})
}
