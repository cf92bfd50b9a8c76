package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// unread fails the test if the body is read.
type unread struct{ t *testing.T }

func (u unread) Read([]byte) (int, error) {
	u.t.Error("the body was read")
	return 0, io.EOF
}

func TestReadBodyHeld(t *testing.T) {
	e := echo.New()
	budget := NewBudget(10)
	call := func(body io.Reader, size int64) (*httptest.ResponseRecorder, []byte, func(), bool) {
		req := httptest.NewRequest(http.MethodPost, "/", body)
		req.ContentLength = size
		rec := httptest.NewRecorder()
		b, release, ok, _ := ReadBodyHeld(e.NewContext(req, rec), 8, budget)
		return rec, b, release, ok
	}

	// Undeclared length: the limit is held until release.
	_, b, release, ok := call(strings.NewReader("abc"), -1)
	if !ok || string(b) != "abc" || budget.Held() != 8 {
		t.Fatalf("chunked body: ok %v, body %q, held %d; want abc, 8 held", ok, b, budget.Held())
	}
	// 8 + 4 > 10: busy, unread.
	rec, _, _, ok := call(unread{t}, 4)
	if ok || rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), `"busy"`) {
		t.Errorf("over the budget: ok %v, %d %q, Retry-After %q", ok, rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
	release()
	// Declared larger than the limit: 413, unread, nothing held.
	if rec, _, _, ok := call(unread{t}, 9); ok || rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("declared over the limit: ok %v, %d", ok, rec.Code)
	}
	// A body shorter than declared: 400, and its bytes are given back.
	if rec, _, _, ok := call(strings.NewReader("ab"), 4); ok || rec.Code != http.StatusBadRequest {
		t.Errorf("short body: ok %v, %d", ok, rec.Code)
	}
	if budget.Held() != 0 || budget.Refused() != 1 {
		t.Errorf("held %d, refused %d; want 0 and 1", budget.Held(), budget.Refused())
	}
}
