package main

import (
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// maxRequestIDLen bounds a request id taken from a client or a load
// balancer. The id is echoed, written on every log line of its request and
// kept for as long as a socket lives, so its size is the sender's to choose
// only up to here. 128 fits a UUID, a W3C traceparent, nginx's $request_id
// and AWS's X-Amzn-Trace-Id.
const maxRequestIDLen = 128

// validRequestID reports whether id may be kept: 1 to maxRequestIDLen bytes,
// each a visible ASCII character ('!' to '~'), so no spaces, no control
// characters and nothing outside ASCII.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '!' || id[i] > '~' {
			return false
		}
	}
	return true
}

// requestID is middleware that keeps the X-Request-Id of a request when it
// is valid, and otherwise makes a new one (a UUID), without saying so: the
// sender's value is neither echoed nor logged. The id is in the answer's
// X-Request-Id, where the request's log line and the socket of an upgrade
// find it.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !validRequestID(id) {
			id = uuid.NewString()
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}
