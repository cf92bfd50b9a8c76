package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/labstack/echo/v4"
)

// CodeBusy answers a request that would take the server over a budget: 503
// with Retry-After.
const CodeBusy = "busy"

// Budget bounds the bytes that requests whose sender is not known yet (a
// webhook before its signature is checked) may make the process hold at
// once. It is safe for concurrent use.
type Budget struct {
	limit   int64
	held    atomic.Int64
	refused atomic.Int64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// take reserves n bytes, or counts a refusal and reports false when they do
// not fit next to what is held.
func (b *Budget) take(n int64) bool {
	for {
		held := b.held.Load()
		if held+n > b.limit {
			b.refused.Add(1)
			return false
		}
		if b.held.CompareAndSwap(held, held+n) {
			return true
		}
	}
}

func (b *Budget) give(n int64) { b.held.Add(-n) }

// Held returns the bytes reserved now.
func (b *Budget) Held() int64 { return b.held.Load() }

// Refused returns how many requests the budget has turned away.
func (b *Budget) Refused() int64 { return b.refused.Load() }

// retryAfter is what a busy answer asks the sender to wait, in seconds:
// held bytes are given back as soon as the bodies being read are checked.
const retryAfter = 1

// ReadBodyHeld reads the request body like ReadBody, and counts its bytes
// against budget until the caller calls release (once it knows who sent
// them). What is counted is the declared Content-Length, or limit for a body
// of undeclared length. Nothing is read when the body is declared larger
// than limit (413) or when the budget cannot hold it (503 busy, with
// Retry-After): a client that sent "Expect: 100-continue" is then never asked
// for its body. On error it has answered and returns ok=false with what the
// handler should return; release is then a no-op.
func ReadBodyHeld(c echo.Context, limit int64, budget *Budget) (body []byte, release func(), ok bool, err error) {
	noop := func() {}
	size := c.Request().ContentLength
	if size > limit {
		return nil, noop, false, Fail(c, http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
			fmt.Sprintf("body larger than %d bytes", limit))
	}
	hold := size
	if hold < 0 {
		hold = limit
	}
	if !budget.take(hold) {
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
		return nil, noop, false, Fail(c, http.StatusServiceUnavailable, CodeBusy,
			"too many webhook bodies are being read at once; retry later")
	}
	release = func() { budget.give(hold) }
	if size < 0 {
		if body, ok, err = ReadBody(c, limit); !ok {
			release()
			return nil, noop, false, err
		}
		return body, release, true, nil
	}
	// The length is declared: one allocation of exactly that size, and the
	// server's body reader stops there.
	body = make([]byte, size)
	if _, err := io.ReadFull(c.Request().Body, body); err != nil {
		release()
		return nil, noop, false, Fail(c, http.StatusBadRequest, CodeInvalidRequest, "could not read the request body")
	}
	return body, release, true, nil
}
