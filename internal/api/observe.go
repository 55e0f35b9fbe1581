package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authsvc/authsvc/internal/clientip"
)

// reqInfo is what the middleware learns about a request while it runs;
// handlers add the user id once they know it.
type reqInfo struct {
	id       string
	clientIP netip.Addr
	userID   string
	status   int
}

type ctxKey struct{}

func info(r *http.Request) *reqInfo {
	if ri, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

func requestID(r *http.Request) string { return info(r).id }

func clientKey(r *http.Request) string { return clientip.Key(info(r).clientIP) }

func setUser(r *http.Request, id string) { info(r).userID = id }

func setStatus(r *http.Request, status int) { info(r).status = status }

// statusWriter remembers the status written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var warnedForwarded atomic.Bool

// observe gives every request an id and its client address, recovers
// panics, and writes one log line and the latency metrics when it ends.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{id: newRequestID()}
		var ignored bool
		ri.clientIP, ignored = s.ips.Resolve(r)
		if ignored && warnedForwarded.CompareAndSwap(false, true) {
			s.log.LogAttrs(r.Context(), slog.LevelWarn,
				"X-Forwarded-For from a peer outside AUTHSVC_TRUSTED_PROXIES is ignored",
				slog.String("client_ip", ri.clientIP.String()))
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))
		sw := &statusWriter{ResponseWriter: w}
		sw.Header().Set("X-Request-Id", ri.id)

		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
					slog.String("request_id", ri.id), slog.Any("panic", v),
					slog.String("stack", string(debug.Stack())))
				if sw.status == 0 {
					writeProblem(sw, errInternal)
				}
			}
			status := sw.status
			if ri.status != 0 {
				status = ri.status
			}
			if status == 0 {
				status = http.StatusOK
			}
			route := "unmatched"
			if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
				route = rc.RoutePattern()
			}
			elapsed := time.Since(start)
			s.metrics.observe(route, r.Method, status, elapsed)
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelError
			}
			s.log.LogAttrs(r.Context(), level, "request",
				slog.String("request_id", ri.id),
				slog.String("method", r.Method),
				slog.String("route", route),
				slog.Int("status", status),
				slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000),
				slog.String("user_id", ri.userID),
				slog.String("client_ip", ri.clientIP.String()),
			)
		}()
		next.ServeHTTP(sw, r)
	})
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// retryAfter converts a wait into whole seconds, at least one.
func retryAfter(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}
