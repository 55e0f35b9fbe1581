// Package api is authsvc's HTTP interface: the chi router, the handlers of
// every endpoint in the contract, the middleware around them, and the
// mapping of errors to problem documents.
//
// Handlers return errors; one adapter answers a *Problem as it is, an
// unavailable database or a full hashing queue as 503, and anything else as
// a logged 500 with a generic message.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/authsvc/authsvc/internal/clientip"
	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/model"
	"github.com/authsvc/authsvc/internal/password"
	"github.com/authsvc/authsvc/internal/secretbox"
	"github.com/authsvc/authsvc/internal/session"
)

// Deps are what a Server needs. Every field but Now is required.
type Deps struct {
	Store    db.Store
	Sessions *session.Manager
	Hasher   *password.Hasher
	Keys     *secretbox.Keyring
	ClientIP *clientip.Resolver
	Logger   *slog.Logger
	Metrics  *Metrics
	OpenAPI  []byte // the document served at /openapi.yaml
}

// Options are the behaviours an operator configures.
type Options struct {
	Issuer             string
	CookieSecure       bool
	AllowedOrigins     []string
	LoginFailuresPerIP int
	SignupsPerIP       int
	// ServeMetrics mounts /metrics on the main router.
	ServeMetrics bool
}

// Server answers authsvc's HTTP API.
type Server struct {
	store    db.Store
	sessions *session.Manager
	hasher   *password.Hasher
	keys     *secretbox.Keyring
	ips      *clientip.Resolver
	log      *slog.Logger
	metrics  *Metrics
	openapi  []byte

	issuer     string
	cookieName string
	secure     bool
	origins    map[string]bool
	loginIP    *ipLimiter
	signupIP   *ipLimiter
	recovery   [][]byte // recovery-code HMAC keys, current first
	deviceKey  []byte   // signs device cookies
	unknown    unknownEmails

	draining chan struct{} // closed when the server starts shutting down
	router   chi.Router
}

// New returns a Server with all routes mounted.
func New(d Deps, o Options) *Server {
	s := &Server{
		store: d.Store, sessions: d.Sessions, hasher: d.Hasher, keys: d.Keys,
		ips: d.ClientIP, log: d.Logger, metrics: d.Metrics, openapi: d.OpenAPI,
		issuer: o.Issuer, secure: o.CookieSecure, origins: map[string]bool{},
		draining: make(chan struct{}),
	}
	s.cookieName = "authsvc_session"
	if o.CookieSecure {
		s.cookieName = "__Host-authsvc_session"
	}
	for _, origin := range o.AllowedOrigins {
		s.origins[origin] = true
	}
	s.loginIP = newIPLimiter(o.LoginFailuresPerIP, 5*time.Minute, s.now)
	s.signupIP = newIPLimiter(o.SignupsPerIP, time.Minute, s.now)
	s.recovery = append([][]byte{d.Keys.Derive(recoveryKeyPurpose)},
		d.Keys.DerivePrevious(recoveryKeyPurpose)...)
	s.deviceKey = d.Keys.Derive(deviceKeyPurpose)
	s.routes(o.ServeMetrics)
	return s
}

const recoveryKeyPurpose = "authsvc recovery codes v1"

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.router.ServeHTTP(w, r)
}

// Drain makes /readyz answer 503 from now on, so that load balancers stop
// sending new requests before the listener closes.
func (s *Server) Drain() {
	select {
	case <-s.draining:
	default:
		close(s.draining)
	}
}

func (s *Server) now() time.Time { return s.sessions.Now() }

func (s *Server) routes(serveMetrics bool) {
	r := chi.NewRouter()
	r.Use(s.observe)
	r.NotFound(s.handle(func(http.ResponseWriter, *http.Request) error { return errNotFound }))
	r.MethodNotAllowed(s.handle(s.methodNotAllowed))

	r.Get("/healthz", s.handle(s.healthz))
	r.Get("/readyz", s.handle(s.readyz))
	r.Get("/openapi.yaml", s.handle(s.openapiDoc))
	if serveMetrics {
		r.Method(http.MethodGet, "/metrics", s.metrics.Handler())
	}

	r.Route("/v1", func(r chi.Router) {
		r.Use(apiHeaders, s.cors)
		r.NotFound(s.handle(func(http.ResponseWriter, *http.Request) error { return errNotFound }))
		r.MethodNotAllowed(s.handle(s.methodNotAllowed))

		// The gateway's subrequest: any method, any path below it, no CORS.
		r.HandleFunc("/authorize", s.handle(s.authorize))
		r.HandleFunc("/authorize/*", s.handle(s.authorize))

		r.Post("/signup", s.handle(s.signup))
		r.Post("/login", s.handle(s.login))
		r.Post("/logout", s.handle(s.logout))
		r.Get("/session", s.handle(s.getSession))
		r.Post("/reauthenticate", s.handle(s.reauthenticate))
		r.Post("/password", s.handle(s.changePassword))

		r.Post("/2fa/totp/setup", s.handle(s.totpSetup))
		r.Post("/2fa/totp/enable", s.handle(s.totpEnable))
		r.Post("/2fa/totp/verify", s.handle(s.totpVerify))
		r.Post("/2fa/totp/disable", s.handle(s.totpDisable))
		r.Post("/2fa/recovery", s.handle(s.recoveryLogin))
		r.Post("/2fa/recovery-codes", s.handle(s.recoveryCodes))

		r.Get("/sessions", s.handle(s.listSessions))
		r.Delete("/sessions", s.handle(s.deleteOtherSessions))
		r.Delete("/sessions/{id}", s.handle(s.deleteSession))
	})
	s.router = r
}

// methodNotAllowed answers 405 with the Allow header RFC 9110 asks for.
// chi sends every method it does not know here too, before any sub-router
// runs, so /v1 headers are set here and /v1/authorize, which takes any
// method, is answered from here for those.
func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) error {
	p := r.URL.Path
	if p == "/v1" || strings.HasPrefix(p, "/v1/") {
		setAPIHeaders(w)
	}
	if p == "/v1/authorize" || strings.HasPrefix(p, "/v1/authorize/") {
		return s.authorize(w, r)
	}
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost,
		http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if s.router.Match(chi.NewRouteContext(), m, r.URL.Path) {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) == 0 {
		return errNotFound
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	return errMethodNotAllowed
}

// handle adapts an error-returning handler: the error becomes the answer.
func (s *Server) handle(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		if p, ok := asProblem(err); ok {
			if p.Status == http.StatusTooManyRequests {
				s.log.LogAttrs(r.Context(), slog.LevelWarn, "request throttled",
					slog.String("request_id", requestID(r)), slog.String("path", r.URL.Path),
					slog.String("user_id", info(r).userID),
					slog.String("client_ip", info(r).clientIP.String()))
			}
			writeProblem(w, p)
			return
		}
		if r.Context().Err() != nil {
			// The client went away; nobody is left to answer.
			setStatus(r, 499)
			return
		}
		if errors.Is(err, model.ErrUnavailable) || errors.Is(err, password.ErrBusy) ||
			errors.Is(err, context.DeadlineExceeded) {
			s.log.LogAttrs(r.Context(), slog.LevelWarn, "request not served",
				slog.String("request_id", requestID(r)), slog.String("error", err.Error()))
			writeProblem(w, unavailable(2))
			return
		}
		s.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("request_id", requestID(r)), slog.String("error", err.Error()))
		writeProblem(w, errInternal)
	}
}

// apiHeaders sets the headers every /v1 answer carries.
func apiHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setAPIHeaders(w)
		next.ServeHTTP(w, r)
	})
}

func setAPIHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

// cors answers preflights and marks answers readable for the configured
// origins, always with Vary: Origin. The gateway's /v1/authorize is left
// out: browsers never call it.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "/v1/authorize" || strings.HasPrefix(p, "/v1/authorize/") {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		allowed := origin != "" && s.origins[origin]
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if allowed {
				h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
				h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
				h.Set("Access-Control-Max-Age", "600")
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// originAllowed is the origin check of unsafe cookie requests.
// A header counts as present even when empty, and a header sent twice
// passes only if every copy does.
func (s *Server) originAllowed(r *http.Request) bool {
	sites, hasSite := r.Header["Sec-Fetch-Site"]
	origins, hasOrigin := r.Header["Origin"]
	referers, hasReferer := r.Header["Referer"]
	if !hasSite && !hasOrigin && !hasReferer {
		return true // not a browser
	}
	if hasSite && all(sites, func(v string) bool { return v == "same-origin" || v == "none" }) {
		return true
	}
	if hasOrigin {
		return all(origins, func(v string) bool { return v != "null" && s.origins[v] })
	}
	return hasReferer && all(referers, func(v string) bool { return s.origins[originOf(v)] })
}

// all reports whether every one of vs, of which there is at least one,
// satisfies ok.
func all(vs []string, ok func(string) bool) bool {
	for _, v := range vs {
		if !ok(v) {
			return false
		}
	}
	return len(vs) > 0
}

// originOf returns scheme://host[:port] of an absolute URL, "" if it has none.
func originOf(ref string) string {
	scheme, rest, ok := strings.Cut(ref, "://")
	if !ok || scheme == "" {
		return ""
	}
	host := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host = rest[:i]
	}
	if host == "" || strings.Contains(host, "@") {
		return ""
	}
	return strings.ToLower(scheme) + "://" + strings.ToLower(host)
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}
