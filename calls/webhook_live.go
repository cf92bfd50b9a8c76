package calls

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/callgate/callgate/internal/httpapi"
)

// liveCall finds the call of a live event by its call_sid, else by its
// conversation_id.
func (h *Handler) liveCall(ctx context.Context, ev Live) (Call, error) {
	err := ErrNotFound
	for _, id := range []string{ev.CallSID, ev.ConversationID} {
		if id == "" {
			continue
		}
		if call, ok := h.cache.get(id); ok {
			return call, nil
		}
		var call Call
		if call, err = h.cfg.Store.Resolve(ctx, id); !errors.Is(err, ErrNotFound) {
			if err == nil {
				h.cache.remember(id, call)
			}
			return call, err
		}
	}
	return Call{}, err
}

// Data of live events, as subscribers receive it.
type (
	transcriptData struct {
		Role  string `json:"role"`
		Text  string `json:"text"`
		Final bool   `json:"final"`
		// SourceEventID is ElevenLabs' event_id of the turn.
		SourceEventID *int64 `json:"source_event_id,omitempty"`
	}
	correctionData struct {
		Role          string `json:"role"`
		Text          string `json:"text"`
		OriginalText  string `json:"original_text"`
		SourceEventID *int64 `json:"source_event_id,omitempty"`
	}
	interruptionData struct {
		SourceEventID *int64 `json:"source_event_id,omitempty"`
	}
)

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
	call, err := h.liveCall(ctx, ev)
	if err != nil {
		return h.storeError(c, err)
	}
	if ev.Kind == "" {
		n := note(c)
		n.result, n.call = "ignored", call
		return c.JSON(http.StatusOK, webhookResult{Status: "ignored", CallSID: call.CallSID, ConversationID: call.ConversationID})
	}
	// A conversation_id that arrives with the call_sid, or announced by the
	// conversation's first event, links the two.
	link := ev.LinkConversationID
	if link == "" && ev.CallSID != "" {
		link = ev.ConversationID
	}
	u := Update{CallSID: call.CallSID}
	if link != "" && link != call.ConversationID {
		u.ConversationID = link
	}
	if call.Status == StatusInitiated && ev.Kind != KindLink {
		u.Status = StatusInProgress
	}
	if u.ConversationID != "" || u.Status != "" {
		saved, err := h.save(ctx, u)
		if err != nil {
			return h.storeError(c, err)
		}
		call = saved.Call
		if u.Status != "" {
			if err := h.publishStatus(ctx, call); err != nil {
				return h.storeError(c, err)
			}
		}
	}
	if ev.Kind == KindLink {
		n := note(c)
		n.result, n.call = "linked", call
		return c.JSON(http.StatusOK, webhookResult{Status: "linked", CallSID: call.CallSID, ConversationID: call.ConversationID})
	}
	var src *int64
	mark := ""
	if ev.HasSourceEventID {
		n := ev.SourceEventID
		src = &n
		mark = deliveryMark("live", ev.Type, strconv.FormatInt(n, 10))
		if !ev.Final {
			// Tentative transcripts of one turn share its event_id and
			// grow with each update: only an identical body is a repeat.
			mark = deliveryMark("live", ev.Type, strconv.FormatInt(n, 10), ev.Text)
		}
	}
	var data any
	switch ev.Kind {
	case KindTranscript:
		data = transcriptData{Role: ev.Role, Text: ev.Text, Final: ev.Final, SourceEventID: src}
	case KindTranscriptCorrection:
		data = correctionData{Role: ev.Role, Text: ev.Text, OriginalText: ev.OriginalText, SourceEventID: src}
	case KindInterruption:
		data = interruptionData{SourceEventID: src}
	}
	res, err := h.cfg.Events.Publish(ctx, call, ev.Kind, data, mark)
	if err != nil {
		return h.storeError(c, err)
	}
	return h.published(c, call, ev.Kind, res.Seq, res.Duplicate)
}
