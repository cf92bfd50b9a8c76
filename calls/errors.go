package calls

import (
	"context"
	"errors"
	"net/http"

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
	CodeBusy           = httpapi.CodeBusy
)

// storeError answers for an error of the store or the bus.
func (h *Handler) storeError(c echo.Context, err error) error {
	switch {
	case errors.Is(err, ErrInvalid):
		return httpapi.Fail(c, http.StatusBadRequest, CodeInvalidRequest, err.Error())
	case errors.Is(err, ErrConflict):
		return httpapi.Fail(c, http.StatusConflict, CodeConflict, err.Error())
	case errors.Is(err, ErrNotFound):
		return httpapi.Fail(c, http.StatusNotFound, CodeCallNotFound, "no call has that call_sid or conversation_id")
	case errors.Is(err, ErrLinking):
		c.Response().Header().Set("Retry-After", "1")
		return httpapi.Fail(c, http.StatusServiceUnavailable, CodeUnavailable, err.Error()+"; retry shortly")
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
