package calls

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/callgate/callgate/internal/httpapi"
)

// webhookNote collects what the one log line of a webhook says.
type webhookNote struct {
	typ, result, event, reason string
	eventID                    int64
	call                       Call
}

const noteKey = "callgate.webhook"

// note returns the request's webhook note, or a throwaway one.
func note(c echo.Context) *webhookNote {
	if n, ok := c.Get(noteKey).(*webhookNote); ok {
		return n
	}
	return &webhookNote{}
}

// logged writes one line per webhook request, whatever its outcome, with
// the request id and call ids and without any transcript text.
func (h *Handler) logged(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		n := &webhookNote{}
		c.Set(noteKey, n)
		start := time.Now()
		err := next(c)
		status := c.Response().Status
		level := slog.LevelInfo
		switch {
		case status >= 500:
			level = slog.LevelError
		case status >= 400:
			level = slog.LevelWarn
		}
		ctx := c.Request().Context()
		if !h.log.Enabled(ctx, level) {
			return err
		}
		attrs := []any{"path", c.Path(), "status", status,
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
			"duration", time.Since(start).String()}
		for _, kv := range [][2]string{{"result", n.result}, {"type", n.typ}, {"event", n.event},
			{"call_sid", n.call.CallSID}, {"conversation_id", n.call.ConversationID}, {"reason", n.reason}} {
			if kv[1] != "" {
				attrs = append(attrs, kv[0], kv[1])
			}
		}
		if n.eventID != 0 {
			attrs = append(attrs, "event_id", n.eventID)
		}
		h.log.Log(ctx, level, "webhook", attrs...)
		return err
	}
}

// verified reads the body and checks its signature before anything parses
// it. What the header alone can refuse (missing, malformed, stale or future)
// is refused before a byte of the body is read; the bytes of a body being
// read count against the handler's budget until its HMAC is checked. It
// writes the error response itself and returns ok=false.
func (h *Handler) verified(c echo.Context, limit int64) (body []byte, ok bool, err error) {
	v := h.cfg.Verifier
	var sig Signature
	if v != nil {
		if sig, err = v.Check(c.Request().Header.Get(SignatureHeader)); err != nil {
			return nil, false, badSignature(c, err)
		}
	}
	body, release, ok, err := httpapi.ReadBodyHeld(c, limit, h.budget)
	if !ok {
		return nil, false, err
	}
	defer release()
	if v != nil {
		if err := v.Match(sig, body); err != nil {
			return nil, false, badSignature(c, err)
		}
	}
	return body, true, nil
}

func badSignature(c echo.Context, err error) error {
	note(c).reason = err.Error()
	return httpapi.Fail(c, http.StatusUnauthorized, CodeBadSignature, signatureMessage(err))
}

// webhookResult is the body of a 200 answer to a webhook.
type webhookResult struct {
	// Status is published, duplicate, linked or ignored.
	Status         string `json:"status"`
	Event          string `json:"event,omitempty"`
	EventID        string `json:"event_id,omitempty"`
	Epoch          string `json:"epoch,omitempty"`
	CallSID        string `json:"call_sid,omitempty"`
	ConversationID string `json:"conversation_id,omitempty"`
}

func (h *Handler) published(c echo.Context, event string, out Outcome) error {
	call := out.Call
	res := webhookResult{Status: "published", Event: event, EventID: strconv.FormatInt(out.Seq, 10),
		Epoch: strconv.FormatInt(out.Epoch, 10), CallSID: call.CallSID, ConversationID: call.ConversationID}
	if out.Duplicate {
		res.Status = "duplicate"
	}
	n := note(c)
	n.result, n.event, n.eventID, n.call = res.Status, event, out.Seq, call
	return c.JSON(http.StatusOK, res)
}
