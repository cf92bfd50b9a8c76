package calls

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/callgate/callgate/internal/httpapi"
)

// Error codes of the HTTP API and webhooks, as the "code" of an error body
// {"code":…,"message":…}.
const (
	CodeInvalidJSON    = httpapi.CodeInvalidJSON
	CodeInvalidRequest = httpapi.CodeInvalidRequest
	CodeUnauthorized   = httpapi.CodeUnauthorized
	CodeBadSignature   = "bad_signature"
	CodeCallNotFound   = "call_not_found"
	CodeConflict       = "conflict"
	CodeBodyTooLarge   = httpapi.CodeBodyTooLarge
	CodeUnavailable    = httpapi.CodeUnavailable
)

// Default body limits.
const (
	DefaultMaxBody         = 1 << 20  // API requests and live webhooks
	DefaultMaxPostCallBody = 64 << 20 // post-call webhooks carry whole recordings
)

// HandlerConfig configures the call API and webhook endpoints.
type HandlerConfig struct {
	Store  *Store
	Events *Events
	// Verifier checks webhook signatures. Nil means unsigned webhooks are
	// accepted (development only).
	Verifier *Verifier
	// MaxBody bounds API and live webhook bodies. Zero means
	// DefaultMaxBody.
	MaxBody int64
	// MaxPostCallBody bounds post-call webhook bodies. Zero means
	// DefaultMaxPostCallBody.
	MaxPostCallBody int64
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// CallCacheTTL is how long live webhooks may use a call record read
	// before (only of calls in progress; see callCache). Zero: every
	// live webhook reads the record from Redis.
	CallCacheTTL time.Duration
}

// Handler serves the call API and the webhooks.
type Handler struct {
	cfg   HandlerConfig
	log   *slog.Logger
	cache *callCache // nil: none
}

// NewHandler returns a Handler with cfg's defaults filled in.
func NewHandler(cfg HandlerConfig) *Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxPostCallBody <= 0 {
		cfg.MaxPostCallBody = DefaultMaxPostCallBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "calls")}
	if cfg.CallCacheTTL > 0 {
		h.cache = newCallCache(cfg.CallCacheTTL)
	}
	return h
}

// Register adds the routes: to api (which the caller guards with an API
// key) POST /calls to create or update a call and GET /calls/:id to read
// one by call_sid or conversation_id; to e the webhooks, which carry their
// own signatures: POST /webhooks/elevenlabs (post-call) and
// POST /webhooks/transcription (live events).
func (h *Handler) Register(e *echo.Echo, api *echo.Group) {
	api.POST("/calls", h.saveCall)
	api.GET("/calls/:id", h.getCall)
	e.POST("/webhooks/elevenlabs", h.logged(h.postCallWebhook))
	e.POST("/webhooks/transcription", h.logged(h.liveWebhook))
}

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

// storeError answers for an error of the store or the bus.
func (h *Handler) storeError(c echo.Context, err error) error {
	switch {
	case errors.Is(err, ErrInvalid):
		return httpapi.Fail(c, http.StatusBadRequest, CodeInvalidRequest, err.Error())
	case errors.Is(err, ErrConflict):
		return httpapi.Fail(c, http.StatusConflict, CodeConflict, err.Error())
	case errors.Is(err, ErrNotFound):
		return httpapi.Fail(c, http.StatusNotFound, CodeCallNotFound, "no call has that call_sid or conversation_id")
	case errors.Is(err, context.Canceled):
		return err
	}
	if n, ok := c.Get(noteKey).(*webhookNote); ok {
		n.reason = err.Error()
	} else {
		h.log.Error("redis unavailable", "path", c.Path(), "err", err)
	}
	return httpapi.Fail(c, http.StatusServiceUnavailable, CodeUnavailable, "the event store is unavailable; retry later")
}

func (h *Handler) saveCall(c echo.Context) error {
	body, ok, err := httpapi.ReadBody(c, h.cfg.MaxBody)
	if !ok {
		return err
	}
	var u Update
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(&u)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err != nil {
		return httpapi.Fail(c, http.StatusBadRequest, CodeInvalidJSON, "body must be a JSON object with call_sid and optional conversation_id, status, org: "+err.Error())
	}
	ctx := c.Request().Context()
	saved, err := h.save(ctx, u)
	if err != nil {
		return h.storeError(c, err)
	}
	if u.Status != "" {
		if err := h.publishStatus(ctx, saved.Call); err != nil {
			return h.storeError(c, err)
		}
	}
	status := http.StatusOK
	if saved.Created {
		status = http.StatusCreated
	}
	h.log.Info("call saved", "call_sid", saved.Call.CallSID, "conversation_id", saved.Call.ConversationID,
		"status", saved.Call.Status, "created", saved.Created, "linked", saved.Linked)
	return c.JSON(status, saved.Call)
}

// publishStatus tells subscribers the call's current status. The mark
// makes it one event per change of the record: a retried request, or one
// that sets the status the call already has, publishes nothing new.
func (h *Handler) publishStatus(ctx context.Context, call Call) error {
	mark := deliveryMark("status", string(call.Status), call.UpdatedAt.String())
	_, err := h.cfg.Events.Publish(ctx, call, EventStatus, map[string]any{"status": call.Status}, mark)
	return err
}

func (h *Handler) getCall(c echo.Context) error {
	call, err := h.cfg.Store.Resolve(c.Request().Context(), c.Param("id"))
	if err != nil {
		return h.storeError(c, err)
	}
	return c.JSON(http.StatusOK, call)
}

// verified reads the body and checks its signature before anything parses
// it. It writes the error response itself and returns ok=false.
func (h *Handler) verified(c echo.Context, limit int64) (body []byte, ok bool, err error) {
	body, ok, err = httpapi.ReadBody(c, limit)
	if !ok {
		return nil, false, err
	}
	if h.cfg.Verifier == nil {
		return body, true, nil
	}
	if err := h.cfg.Verifier.Verify(c.Request().Header.Get(SignatureHeader), body); err != nil {
		note(c).reason = err.Error()
		return nil, false, httpapi.Fail(c, http.StatusUnauthorized, CodeBadSignature, signatureMessage(err))
	}
	return body, true, nil
}

func signatureMessage(err error) string {
	switch {
	case errors.Is(err, ErrSignatureMissing):
		return "missing " + SignatureHeader + " header"
	case errors.Is(err, ErrSignatureExpired):
		return "signature timestamp is too old"
	case errors.Is(err, ErrSignatureFuture):
		return "signature timestamp is in the future"
	case errors.Is(err, ErrSignatureMalformed):
		return SignatureHeader + " must be t=<unix seconds>,v0=<hex hmac-sha256>"
	}
	return "signature does not match the body"
}

// webhookResult is the body of a 200 answer to a webhook.
type webhookResult struct {
	// Status is published, duplicate, linked or ignored.
	Status         string `json:"status"`
	Event          string `json:"event,omitempty"`
	EventID        string `json:"event_id,omitempty"`
	CallSID        string `json:"call_sid,omitempty"`
	ConversationID string `json:"conversation_id,omitempty"`
}

func (h *Handler) published(c echo.Context, call Call, event string, seq int64, dup bool) error {
	res := webhookResult{Status: "published", Event: event, EventID: strconv.FormatInt(seq, 10),
		CallSID: call.CallSID, ConversationID: call.ConversationID}
	if dup {
		res.Status = "duplicate"
	}
	n := note(c)
	n.result, n.event, n.eventID, n.call = res.Status, event, seq, call
	return c.JSON(http.StatusOK, res)
}

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
	mark := deliveryMark("post-call", pc.ConversationID, pc.Type, strconv.FormatInt(pc.EventTimestamp, 10))
	res, err := h.cfg.Events.Publish(ctx, call, event, data, mark)
	if err != nil {
		return h.storeError(c, err)
	}
	return h.published(c, call, event, res.Seq, res.Duplicate)
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

// liveCall finds the call of a live event by its call_sid, else by its
// conversation_id.
// save saves u and refreshes the cache of calls with the result.
func (h *Handler) save(ctx context.Context, u Update) (Saved, error) {
	saved, err := h.cfg.Store.Save(ctx, u)
	if err == nil {
		h.cache.put(saved.Call)
	}
	return saved, err
}

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
