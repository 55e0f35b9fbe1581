package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsvc/authsvc/internal/clientip"
	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/db/dbtest"
	"github.com/authsvc/authsvc/internal/password"
	"github.com/authsvc/authsvc/internal/secretbox"
	"github.com/authsvc/authsvc/internal/session"
	"github.com/authsvc/authsvc/internal/twofactor"
)

const (
	testOrigin = "https://app.example"
	goodPass   = "correct horse battery staple"
)

// clock is a settable time shared by the server and the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a server on a fresh database with a test clock.
type env struct {
	t     *testing.T
	srv   *Server
	store db.Store
	clock *clock
	keys  *secretbox.Keyring
	logs  *bytes.Buffer
}

// eachStore runs f once on the embedded store and once on PostgreSQL.
func eachStore(t *testing.T, f func(t *testing.T, open func(t *testing.T) db.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		f(t, func(t *testing.T) db.Store { return dbtest.Open(t, dbtest.SQLitePath(t)) })
	})
	t.Run("postgres", func(t *testing.T) {
		f(t, func(t *testing.T) db.Store { return dbtest.Open(t, dbtest.PostgresURL(t)) })
	})
}

// testParams make password hashing cheap; production parameters are
// exercised by the password package and the end-to-end test.
var testParams = password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func newEnv(t *testing.T, store db.Store, mutate ...func(*Options)) *env {
	t.Helper()
	key := bytes.Repeat([]byte{7}, 32)
	keys, err := secretbox.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	logs := &bytes.Buffer{}
	opts := Options{
		Issuer: "Acme Corp", CookieSecure: true, AllowedOrigins: []string{testOrigin},
		LoginFailuresPerIP: 1000, SignupsPerIP: 1000, ServeMetrics: true,
	}
	for _, m := range mutate {
		m(&opts)
	}
	srv := New(Deps{
		Store:    store,
		Sessions: session.NewManager(store, session.Lifetimes{TTL: 24 * time.Hour, MaxAge: 72 * time.Hour}, clk.now),
		Hasher:   password.NewHasher(testParams, 4, time.Second),
		Keys:     keys,
		ClientIP: clientip.New(nil),
		Logger:   slog.New(slog.NewJSONHandler(&lockedWriter{w: logs}, nil)),
		Metrics:  NewMetrics(),
		OpenAPI:  []byte("openapi: 3.0.3\n"),
	}, opts)
	return &env{t: t, srv: srv, store: store, clock: clk, keys: keys, logs: logs}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// req describes one request.
type req struct {
	method, path string
	body         any               // marshalled as JSON unless a string or []byte
	header       map[string]string // extra headers
	token        string            // sent as Authorization: Bearer
	cookie       string            // sent as the session cookie
}

// res is an answer with its body decoded when it is JSON.
type res struct {
	*http.Response
	raw  []byte
	json map[string]any
}

func (e *env) do(r req) *res {
	e.t.Helper()
	var body io.Reader
	switch b := r.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		body = bytes.NewReader(j)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	hr.RemoteAddr = "192.0.2.10:5555"
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.cookie != "" {
		hr.AddCookie(&http.Cookie{Name: "__Host-authsvc_session", Value: r.cookie})
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
			continue
		}
		hr.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, hr)
	out := &res{Response: rec.Result(), raw: rec.Body.Bytes()}
	ct := out.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/json") || strings.HasPrefix(ct, "application/problem+json") {
		if err := json.Unmarshal(out.raw, &out.json); err != nil {
			e.t.Fatalf("%s %s: body is not JSON: %v\n%s", r.method, r.path, err, out.raw)
		}
	}
	return out
}

// want fails unless the answer has the status and, for errors, the code.
func (r *res) want(t *testing.T, status int, code string) *res {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", r.StatusCode, status, r.raw)
	}
	if code != "" {
		if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("content type %q, want application/problem+json", ct)
		}
		if r.json["code"] != code {
			t.Fatalf("code %v, want %s; body %s", r.json["code"], code, r.raw)
		}
	}
	return r
}

// sessionCookie returns the session cookie the answer set, nil if none.
func (r *res) sessionCookie() *http.Cookie {
	for _, c := range r.Cookies() {
		if c.Name == "__Host-authsvc_session" {
			return c
		}
	}
	return nil
}

func (r *res) str(path ...string) string {
	var v any = r.json
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

// account is a signed-up user with a bearer session.
type account struct {
	email, token, id string
}

func (e *env) signup(email string) *account {
	e.t.Helper()
	r := e.do(req{method: "POST", path: "/v1/signup",
		body: map[string]string{"email": email, "password": goodPass, "session_transport": "bearer"}})
	r.want(e.t, 201, "")
	return &account{email: email, token: r.str("session_token"), id: r.str("user", "id")}
}

func (e *env) login(email string) *res {
	e.t.Helper()
	return e.do(req{method: "POST", path: "/v1/login",
		body: map[string]string{"email": email, "password": goodPass, "session_transport": "bearer"}})
}

// enableTOTP sets up and confirms an authenticator for a, returning the
// secret and the recovery codes. a.token is updated to the rotated token.
func (e *env) enableTOTP(a *account) ([]byte, []string) {
	e.t.Helper()
	r := e.do(req{method: "POST", path: "/v1/2fa/totp/setup", token: a.token}).want(e.t, 200, "")
	secret := decodeSecret(e.t, r.str("secret"))
	code := twofactor.Code(secret, twofactor.Step(e.clock.now()))
	r = e.do(req{method: "POST", path: "/v1/2fa/totp/enable", token: a.token,
		body: map[string]string{"code": code}}).want(e.t, 200, "")
	a.token = r.str("session_token")
	var codes []string
	for _, c := range r.json["recovery_codes"].([]any) {
		codes = append(codes, c.(string))
	}
	return secret, codes
}
