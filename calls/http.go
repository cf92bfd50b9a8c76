package calls

import (
	"context"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/callgate/callgate/internal/httpapi"
)

// Default body limits.
const (
	DefaultMaxBody         = 1 << 20  // API requests and live webhooks
	DefaultMaxPostCallBody = 64 << 20 // post-call webhooks carry whole recordings
	// DefaultWebhookBodyBudget bounds the webhook bytes held before their
	// signature is checked: two post-call bodies of the largest size.
	DefaultWebhookBodyBudget = 2 * DefaultMaxPostCallBody
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
	// WebhookBodyBudget bounds the bytes of webhook bodies held at once
	// before their signature is checked (declared lengths, or the limit
	// for a body of undeclared length); past it a webhook is answered 503
	// busy without being read. Zero means DefaultWebhookBodyBudget.
	WebhookBodyBudget int64
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// CallCacheTTL is how long live webhooks addressed by
	// conversation_id may reuse the call_sid it is linked to (see
	// callCache). Zero: every such webhook looks the call up.
	CallCacheTTL time.Duration
}

// Handler serves the call API and the webhooks.
type Handler struct {
	cfg   HandlerConfig
	log   *slog.Logger
	cache *callCache // nil: none
	// budget holds the webhook bodies being read, until verified.
	budget *httpapi.Budget
}

// NewHandler returns a Handler with cfg's defaults filled in.
func NewHandler(cfg HandlerConfig) *Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxPostCallBody <= 0 {
		cfg.MaxPostCallBody = DefaultMaxPostCallBody
	}
	if cfg.WebhookBodyBudget <= 0 {
		cfg.WebhookBodyBudget = DefaultWebhookBodyBudget
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "calls"),
		budget: httpapi.NewBudget(cfg.WebhookBodyBudget)}
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

// WebhookBytesHeld returns the bytes of webhook bodies being read or
// checked now, before their signature is known to be good.
func (h *Handler) WebhookBytesHeld() int64 { return h.budget.Held() }

// WebhooksBusy returns how many webhooks were answered 503 busy because
// the body budget was full.
func (h *Handler) WebhooksBusy() int64 { return h.budget.Refused() }

// publishStatus tells subscribers the call's current status. The mark
// makes it one event per change of the record: a retried request, or one
// that sets the status the call already has, publishes nothing new.
func (h *Handler) publishStatus(ctx context.Context, call Call) error {
	mark := deliveryMark("status", string(call.Status), call.UpdatedAt.String())
	data := []byte(`{"status":"` + string(call.Status) + `"}`)
	_, err := h.cfg.Events.Publish(ctx, call.CallSID, Event{Name: EventStatus, Data: data, Mark: mark})
	return err
}

// save saves u and remembers the call's link.
func (h *Handler) save(ctx context.Context, u Update) (Saved, error) {
	saved, err := h.cfg.Store.Save(ctx, u)
	if err == nil {
		h.cache.put(saved.Call)
	}
	return saved, err
}
