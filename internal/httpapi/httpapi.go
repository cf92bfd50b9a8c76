// Package httpapi holds what every HTTP endpoint of callgate shares: the
// error body, its common codes, bounded body reading and API-key auth.
package httpapi

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// Error codes common to every endpoint, as the "code" of an error body.
const (
	CodeInvalidJSON    = "invalid_json"
	CodeInvalidRequest = "invalid_request"
	CodeUnauthorized   = "unauthorized"
	CodeBodyTooLarge   = "body_too_large"
	CodeUnavailable    = "unavailable"
)

// Error is the body of every error answer.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Fail answers with status and {"code":…,"message":…}.
func Fail(c echo.Context, status int, code, msg string) error {
	return c.JSON(status, Error{Code: code, Message: msg})
}

// ReadBody reads the request body, at most limit bytes. On error it has
// answered (413 when the body is larger) and returns ok=false with what
// the handler should return.
func ReadBody(c echo.Context, limit int64) (body []byte, ok bool, err error) {
	body, err = io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, limit))
	if err == nil {
		return body, true, nil
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, false, Fail(c, http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
			fmt.Sprintf("body larger than %d bytes", limit))
	}
	return nil, false, Fail(c, http.StatusBadRequest, CodeInvalidRequest, "could not read the request body")
}

// RequireAPIKey returns middleware that admits requests with
// "Authorization: Bearer <key>" for one of keys, compared in constant
// time. With no keys it admits every request.
func RequireAPIKey(keys []string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if len(keys) == 0 {
				return next(c)
			}
			token, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
			if ok && validKey(keys, token) {
				return next(c)
			}
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="callgate"`)
			return Fail(c, http.StatusUnauthorized, CodeUnauthorized,
				"missing or wrong API key: send Authorization: Bearer <api-key>")
		}
	}
}

// validKey compares token with every key in constant time, so neither
// which key matched nor how much of it did shows in the timing.
func validKey(keys []string, token string) bool {
	ok := 0
	for _, k := range keys {
		ok |= subtle.ConstantTimeCompare([]byte(k), []byte(token))
	}
	return ok == 1
}
