package calls

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/callgate/callgate/internal/httpapi"
)

func (h *Handler) postCallWebhook(c echo.Context) error {
	body, ok, err := h.verified(c, h.cfg.MaxPostCallBody)
	if !ok {
		return err
	}
	pc, err := DecodePostCall(body)
	body = nil // a recording can be tens of MB; let it go before Redis I/O
	if err != nil {
		note(c).reason = err.Error()
		return httpapi.Fail(c, http.StatusBadRequest, CodeInvalidRequest, err.Error())
	}
	note(c).typ = pc.Type
	var (
		status Status
		event  string
		data   any
	)
	switch pc.Type {
	case TypePostCallTranscription:
		status, event = StatusDone, EventCompleted
		data = completedData{
			Transcript:        orNull(pc.Transcript),
			Analysis:          orNull(pc.Analysis),
			CallDurationSecs:  pc.Metadata.CallDurationSecs,
			TerminationReason: pc.Metadata.TerminationReason,
		}
	case TypeCallInitiationFailure:
		status, event = StatusFailed, EventFailed
		data = failedData{Reason: pc.FailureReason, Provider: pc.Provider}
	case TypePostCallAudio:
		event = EventAudioAvailable
		data = audioData{AudioBytes: pc.AudioBytes}
	default:
		note(c).result = "ignored"
		return c.JSON(http.StatusOK, webhookResult{Status: "ignored"})
	}
	ctx := c.Request().Context()
	call, err := h.postCallCall(ctx, pc, status)
	if err != nil {
		return h.storeError(c, err)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	mark := deliveryMark("post-call", pc.ConversationID, pc.Type, strconv.FormatInt(pc.EventTimestamp, 10))
	res, err := h.cfg.Events.Publish(ctx, call.CallSID, Event{Name: event, Data: raw, Mark: mark, Ended: status != ""})
	if err != nil {
		return h.storeError(c, err)
	}
	return h.published(c, event, res)
}

type completedData struct {
	Transcript        json.RawMessage `json:"transcript"`
	Analysis          json.RawMessage `json:"analysis"`
	CallDurationSecs  int64           `json:"call_duration_secs,omitempty"`
	TerminationReason string          `json:"termination_reason,omitempty"`
}

type failedData struct {
	Reason   string `json:"reason"`
	Provider string `json:"provider,omitempty"`
}

type audioData struct {
	// AudioBytes is the approximate size of the recording, which the
	// gateway does not forward.
	AudioBytes int64 `json:"audio_bytes"`
}

func orNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	return raw
}

// postCallCall finds the call a post-call webhook is about (by
// conversation_id, else by its call ids, most preferred first), links the
// conversation_id, sets the status, and creates the call if no id is known
// so that later subscribers still find it.
func (h *Handler) postCallCall(ctx context.Context, pc PostCall, status Status) (Call, error) {
	sid := ""
	call, err := h.cfg.Store.Resolve(ctx, pc.ConversationID)
	switch {
	case err == nil:
		sid = call.CallSID
	case errors.Is(err, ErrNotFound):
		for _, id := range pc.CallSIDs {
			call, err = h.cfg.Store.Resolve(ctx, id)
			if err == nil {
				sid = call.CallSID
				break
			}
			if !errors.Is(err, ErrNotFound) {
				return Call{}, err
			}
		}
	default:
		return Call{}, err
	}
	if sid == "" {
		sid = pc.ConversationID
		if len(pc.CallSIDs) > 0 {
			sid = pc.CallSIDs[0]
		}
	}
	saved, err := h.save(ctx, Update{CallSID: sid, ConversationID: pc.ConversationID, Status: status})
	if err != nil {
		return Call{}, err
	}
	if saved.Created {
		h.log.Info("call created from webhook", "call_sid", sid, "conversation_id", pc.ConversationID)
	}
	return saved.Call, nil
}
