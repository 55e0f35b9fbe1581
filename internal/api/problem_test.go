package api

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/authsvc/authsvc/internal/model"
	"github.com/authsvc/authsvc/internal/password"
)

// The adapter turns a full hashing queue and an unreachable database into
// 503 unavailable with Retry-After, and anything unknown into a 500 that
// does not show the cause.
func TestErrorMapping(t *testing.T) {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("hash: %w", password.ErrBusy), 503, "unavailable"},
		{fmt.Errorf("db: %w", model.ErrUnavailable), 503, "unavailable"},
		{errors.New("pq: secret internal detail"), 500, "internal_error"},
		{rateLimited(7), 429, "rate_limited"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		s.handle(func(http.ResponseWriter, *http.Request) error { return tt.err })(
			rec, httptest.NewRequest("GET", "/v1/session", nil))
		body := rec.Body.String()
		if rec.Code != tt.status || !strings.Contains(body, `"code":"`+tt.code+`"`) ||
			strings.Contains(body, "secret internal") {
			t.Errorf("%v: %d %s", tt.err, rec.Code, body)
		}
		if (tt.status == 503 || tt.status == 429) && rec.Header().Get("Retry-After") == "" {
			t.Errorf("%v: no Retry-After", tt.err)
		}
	}
}
