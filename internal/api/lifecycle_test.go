package api

import (
	"bytes"
	"encoding/base32"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/db/dbtest"
	"github.com/authsvc/authsvc/internal/secretbox"
	"github.com/authsvc/authsvc/internal/twofactor"
)

// claimFailures counts n failed second-factor attempts for the user
// directly in the store.
func claimFailures(t *testing.T, e *env, userID string, n int) {
	t.Helper()
	for range n {
		u, err := e.store.UserByID(t.Context(), userID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.ClaimSecondFactorAttempt(t.Context(), userID, u.OTPFailures,
			e.clock.now()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLockoutAfterHundredFailures(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("yan@example.com")
		secret, codes := e.enableTOTP(a)
		claimFailures(t, e, a.id, 99)
		e.clock.advance(maxDelay)
		p1 := e.login("yan@example.com").want(t, 200, "").str("session_token")
		p2 := e.login("yan@example.com").want(t, 200, "").str("session_token")

		// The 100th failure revokes every partial session.
		e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: p1,
			body: map[string]string{"code": "000000"}}).want(t, 422, "invalid_otp")
		e.do(req{method: "GET", path: "/v1/session", token: p2}).want(t, 401, "unauthenticated")
		e.do(req{method: "GET", path: "/v1/session", token: a.token}).want(t, 200, "")

		// From now on a correct TOTP code is refused; a recovery code passes.
		e.clock.advance(maxDelay)
		p3 := e.login("yan@example.com").want(t, 200, "").str("session_token")
		good := twofactor.Code(secret, twofactor.Step(e.clock.now()))
		e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: p3,
			body: map[string]string{"code": good}}).want(t, 422, "invalid_otp")
		e.clock.advance(maxDelay)
		p4 := e.login("yan@example.com").want(t, 200, "").str("session_token")
		r := e.do(req{method: "POST", path: "/v1/2fa/recovery", token: p4,
			body: map[string]string{"code": codes[1]}})
		r.want(t, 200, "")
	})
}

func TestPerAddressLimits(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t), func(o *Options) { o.SignupsPerIP, o.LoginFailuresPerIP = 3, 3 })
		e.signup("zed@example.com")
		// A 409 counts against the address too.
		e.do(req{method: "POST", path: "/v1/signup",
			body: map[string]string{"email": "zed@example.com", "password": goodPass}}).
			want(t, 409, "email_taken")
		e.do(req{method: "POST", path: "/v1/signup",
			body: map[string]string{"email": "zed2@example.com", "password": goodPass}}).
			want(t, 201, "")
		r := e.do(req{method: "POST", path: "/v1/signup",
			body: map[string]string{"email": "zed3@example.com", "password": goodPass}}).
			want(t, 429, "rate_limited")
		if r.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
		for i := 0; i < 3; i++ {
			e.do(req{method: "POST", path: "/v1/login", body: map[string]string{
				"email": "user" + string(rune('a'+i)) + "@example.com", "password": goodPass}}).
				want(t, 401, "invalid_credentials")
		}
		e.login("zed@example.com").want(t, 429, "rate_limited")
		e.clock.advance(5 * time.Minute)
		e.login("zed@example.com").want(t, 200, "")
	})
}

func TestRecoveryCodesAndDisable(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("abe@example.com")
		e.do(req{method: "POST", path: "/v1/2fa/recovery-codes", token: a.token}).
			want(t, 409, "two_factor_not_enabled")
		e.do(req{method: "POST", path: "/v1/2fa/totp/disable", token: a.token,
			body: map[string]string{"code": "123456"}}).want(t, 409, "two_factor_not_enabled")
		secret, old := e.enableTOTP(a)

		r := e.do(req{method: "POST", path: "/v1/2fa/recovery-codes", token: a.token}).want(t, 200, "")
		fresh := r.json["recovery_codes"].([]any)
		if len(fresh) != 10 || fresh[0] == old[0] {
			t.Fatalf("new set %v", fresh)
		}
		p := e.login("abe@example.com").want(t, 200, "").str("session_token")
		e.do(req{method: "POST", path: "/v1/2fa/recovery", token: p,
			body: map[string]string{"code": old[0]}}).want(t, 422, "invalid_recovery_code")
		e.clock.advance(time.Minute)
		e.do(req{method: "POST", path: "/v1/2fa/recovery", token: p,
			body: map[string]string{"code": fresh[0].(string)}}).want(t, 200, "")

		// Disabling needs a code; it removes everything and revokes the others.
		other := e.login("abe@example.com").want(t, 200, "").str("session_token")
		e.do(req{method: "POST", path: "/v1/2fa/totp/disable", token: a.token,
			body: map[string]string{"code": "not a code"}}).want(t, 422, "invalid_otp")
		e.clock.advance(time.Minute)
		code := twofactor.Code(secret, twofactor.Step(e.clock.now()))
		e.do(req{method: "POST", path: "/v1/2fa/totp/disable", token: a.token,
			body: map[string]string{"code": code}}).want(t, 204, "")
		e.do(req{method: "GET", path: "/v1/session", token: other}).want(t, 401, "unauthenticated")
		s := e.do(req{method: "GET", path: "/v1/session", token: a.token}).want(t, 200, "")
		if s.json["user"].(map[string]any)["two_factor_enabled"] != false ||
			s.json["user"].(map[string]any)["recovery_codes_remaining"] != float64(0) {
			t.Fatalf("after disable: %s", s.raw)
		}
		u, err := e.store.UserByID(t.Context(), a.id)
		if err != nil || u.TwoFactorSecret != nil {
			t.Fatalf("secret kept after disable: %v", err)
		}
		if _, err := e.store.PendingTOTP(t.Context(), a.id); err == nil {
			t.Fatal("pending setup kept after disable")
		}
		e.login("abe@example.com").want(t, 200, "")
	})
}

func TestReenrolment(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("bea@example.com")
		oldSecret, oldCodes := e.enableTOTP(a)
		e.clock.advance(time.Minute)
		// A new setup while 2FA is on: the old factor keeps working.
		newSecret := decodeSecret(t, r0secret(t, e, a))
		p := e.login("bea@example.com").want(t, 200, "").str("session_token")
		e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: p,
			body: map[string]string{"code": twofactor.Code(oldSecret, twofactor.Step(e.clock.now()))}}).
			want(t, 200, "")
		// Confirming the new one replaces the secret and the recovery codes.
		e.clock.advance(time.Minute)
		r := e.do(req{method: "POST", path: "/v1/2fa/totp/enable", token: a.token,
			body: map[string]string{"code": twofactor.Code(newSecret, twofactor.Step(e.clock.now()))}}).
			want(t, 200, "")
		a.token = r.str("session_token")
		e.clock.advance(time.Minute)
		p = e.login("bea@example.com").want(t, 200, "").str("session_token")
		e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: p,
			body: map[string]string{"code": twofactor.Code(oldSecret, twofactor.Step(e.clock.now()))}}).
			want(t, 422, "invalid_otp")
		e.do(req{method: "POST", path: "/v1/2fa/recovery", token: p,
			body: map[string]string{"code": oldCodes[0]}}).want(t, 422, "invalid_recovery_code")
		e.clock.advance(time.Minute)
		e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: p,
			body: map[string]string{"code": twofactor.Code(newSecret, twofactor.Step(e.clock.now()))}}).
			want(t, 200, "")
	})
}

func TestPasswordChange(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("cal@example.com")
		other := e.login("cal@example.com").want(t, 200, "").str("session_token")
		r0secret(t, e, a)
		change := func(cur, next string) *res {
			return e.do(req{method: "POST", path: "/v1/password", token: a.token,
				body: map[string]string{"current_password": cur, "new_password": next}})
		}
		change("wrong password", "another long passphrase").want(t, 422, "invalid_credentials")
		change(goodPass, "short").want(t, 422, "weak_password")
		r := change(goodPass, "another long passphrase").want(t, 200, "")
		e.do(req{method: "GET", path: "/v1/session", token: a.token}).want(t, 401, "unauthenticated")
		e.do(req{method: "GET", path: "/v1/session", token: other}).want(t, 401, "unauthenticated")
		a.token = r.str("session_token")
		e.do(req{method: "GET", path: "/v1/session", token: a.token}).want(t, 200, "")
		if _, err := e.store.PendingTOTP(t.Context(), a.id); err == nil {
			t.Fatal("pending setup kept after a password change")
		}
		e.login("cal@example.com").want(t, 401, "invalid_credentials")
		e.do(req{method: "POST", path: "/v1/login", body: map[string]string{
			"email": "cal@example.com", "password": "another long passphrase"}}).want(t, 200, "")
	})
}

func TestSessionLimit(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		first := e.signup("dee@example.com")
		for range maxSessions {
			e.clock.advance(time.Millisecond)
			e.login("dee@example.com").want(t, 200, "")
		}
		e.do(req{method: "GET", path: "/v1/session", token: first.token}).want(t, 401, "unauthenticated")
		r := e.do(req{method: "GET", path: "/v1/sessions", token: e.login("dee@example.com").str("session_token")})
		if n := len(r.json["sessions"].([]any)); n != maxSessions {
			t.Fatalf("%d live sessions, want %d", n, maxSessions)
		}
	})
}

// A secret sealed under a key that has since been retired to the previous
// keys still works, and moves to the current key when it is next used.
func TestKeyRotation(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		store := open(t)
		e := newEnv(t, store)
		a := e.signup("eve@example.com")
		secret, codes := e.enableTOTP(a)

		oldKey := bytes.Repeat([]byte{7}, 32)
		newKey := bytes.Repeat([]byte{9}, 32)
		keys, err := secretbox.NewKeyring(newKey, oldKey)
		if err != nil {
			t.Fatal(err)
		}
		e2 := newEnv(t, store)
		e2.srv = rebuild(e2, keys)
		e2.clock.t = e.clock.now().Add(time.Minute)

		p := e2.login("eve@example.com").want(t, 200, "").str("session_token")
		e2.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: p,
			body: map[string]string{"code": twofactor.Code(secret, twofactor.Step(e2.clock.now()))}}).
			want(t, 200, "")
		u, err := store.UserByID(t.Context(), a.id)
		if err != nil {
			t.Fatal(err)
		}
		if _, current, err := keys.Open(u.TwoFactorSecret, []byte(a.id)); err != nil || !current {
			t.Fatalf("secret not re-sealed under the current key: current=%v err=%v", current, err)
		}
		// Recovery codes hashed under the old key still pass.
		p = e2.login("eve@example.com").want(t, 200, "").str("session_token")
		e2.do(req{method: "POST", path: "/v1/2fa/recovery", token: p,
			body: map[string]string{"code": codes[2]}}).want(t, 200, "")
	})
}

// rebuild makes a server like e's with other keys.
func rebuild(e *env, keys *secretbox.Keyring) *Server {
	e.keys = keys
	d := Deps{Store: e.store, Sessions: e.srv.sessions, Hasher: e.srv.hasher, Keys: keys,
		ClientIP: e.srv.ips, Logger: e.srv.log, Metrics: NewMetrics(), OpenAPI: e.srv.openapi}
	return New(d, Options{Issuer: "Acme Corp", CookieSecure: true,
		AllowedOrigins: []string{testOrigin}, LoginFailuresPerIP: 1000, SignupsPerIP: 1000})
}

// Nothing secret reaches the log: passwords, codes, TOTP secrets, recovery
// codes and session tokens, through a whole journey with failures.
func TestLogsKeepSecrets(t *testing.T) {
	e := newEnv(t, dbtest.Open(t, dbtest.SQLitePath(t)))
	a := e.signup("fox@example.com")
	first := a.token
	secret, codes := e.enableTOTP(a)
	p := e.login("fox@example.com").want(t, 200, "").str("session_token")
	wrong := "999999"
	e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: p,
		body: map[string]string{"code": wrong}}).want(t, 422, "invalid_otp")
	e.do(req{method: "POST", path: "/v1/login", body: map[string]string{
		"email": "fox@example.com", "password": "a wrong password"}}).want(t, 401, "")
	e.clock.advance(time.Minute)
	good := twofactor.Code(secret, twofactor.Step(e.clock.now()))
	e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: p,
		body: map[string]string{"code": good}}).want(t, 200, "")
	p2 := e.login("fox@example.com").want(t, 200, "").str("session_token")
	e.do(req{method: "POST", path: "/v1/2fa/recovery", token: p2,
		body: map[string]string{"code": codes[0]}}).want(t, 200, "")

	logs := e.logs.String()
	for _, s := range append([]string{goodPass, "a wrong password", first, a.token, p, p2,
		wrong, good, base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)},
		codes...) {
		if strings.Contains(logs, s) {
			t.Fatalf("the log contains %q:\n%s", s, logs)
		}
	}
	for _, event := range []string{"login failed", "second factor failed",
		"two-factor authentication enabled", "second factor passed"} {
		if !strings.Contains(logs, event) {
			t.Errorf("no %q event in the log", event)
		}
	}
}

// Methods chi does not know still reach /v1/authorize, get the /v1
// headers, and are 404 where no route exists.
func TestUnknownMethods(t *testing.T) {
	e := newEnv(t, dbtest.Open(t, dbtest.SQLitePath(t)))
	a := e.signup("gus@example.com")
	r := e.do(req{method: "PROPFIND", path: "/v1/authorize/dav/x", token: a.token}).want(t, 200, "")
	if r.Header.Get("X-Auth-User-Id") != a.id || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("PROPFIND authorize: %v", r.Header)
	}
	e.do(req{method: "MKCOL", path: "/v1/authorize"}).want(t, 401, "unauthenticated")
	r = e.do(req{method: "PROPFIND", path: "/v1/session", token: a.token}).want(t, 405, "method_not_allowed")
	if r.Header.Get("Allow") != "GET" || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("PROPFIND session: %v", r.Header)
	}
	e.do(req{method: "PROPFIND", path: "/nothing"}).want(t, 404, "not_found")
}

// A User-Agent that is not UTF-8 is legal HTTP; it is stored cleaned.
func TestOddUserAgent(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		r := e.do(req{method: "POST", path: "/v1/signup",
			header: map[string]string{"User-Agent": "Mozil\xffa/5.0 \x01"},
			body:   map[string]string{"email": "hub@example.com", "password": goodPass}}).want(t, 201, "")
		if ua := r.str("session", "user_agent"); ua != "Mozil\uFFFDa/5.0 \x01" {
			t.Fatalf("user agent %q", ua)
		}
	})
}

// Findings of a black-box review, each kept as a test with the right answer.
func TestReviewFindings(t *testing.T) {
	e := newEnv(t, dbtest.Open(t, dbtest.SQLitePath(t)))
	a := e.signup("ivy@example.com")

	// Endpoints without a body still refuse a wrong or oversized one, and
	// 413 comes before 401.
	e.do(req{method: "POST", path: "/v1/logout", token: a.token, body: "hello",
		header: map[string]string{"Content-Type": "text/plain"}}).want(t, 415, "unsupported_media_type")
	e.do(req{method: "DELETE", path: "/v1/sessions", body: strings.Repeat("x", 70<<10)}).
		want(t, 413, "payload_too_large")
	e.do(req{method: "GET", path: "/v1/session", token: a.token}).want(t, 200, "")

	// Every requirement named must be known; empty ones fail closed.
	for _, path := range []string{"/v1/authorize?require=", "/v1/authorize?require=two_factor&require=x"} {
		e.do(req{method: "GET", path: path, token: a.token}).want(t, 400, "invalid_request")
	}
	e.do(req{method: "GET", path: "/v1/authorize?require=two_factor", token: a.token,
		header: map[string]string{"X-Auth-Require": "x"}}).want(t, 400, "invalid_request")
	r := e.doRaw("GET", "/v1/authorize", cookie0(e, a), map[string]string{"X-Auth-Require": ""})
	if r.StatusCode != 400 {
		t.Errorf("empty X-Auth-Require: %d, want 400", r.StatusCode)
	}

	// Empty origin headers are present, not absent.
	cookie := e.do(req{method: "POST", path: "/v1/login", body: map[string]string{
		"email": "ivy@example.com", "password": goodPass}}).want(t, 200, "").sessionCookie().Value
	for _, h := range []map[string]string{{"Origin": ""}, {"Sec-Fetch-Site": ""}, {"Referer": ""}} {
		hr := map[string]string{}
		for k, v := range h {
			hr[k] = v
		}
		r := e.doRaw("POST", "/v1/logout", cookie, hr)
		if r.StatusCode != 403 {
			t.Errorf("logout with empty %v: %d, want 403", h, r.StatusCode)
		}
	}

	// Invented methods share one metrics label.
	for i := 0; i < 3; i++ {
		e.do(req{method: "M" + strings.Repeat("X", i+1), path: "/v1/session"})
	}
	m := string(e.do(req{method: "GET", path: "/metrics"}).raw)
	if strings.Contains(m, `method="MX"`) || !strings.Contains(m, `method="OTHER"`) {
		t.Error("invented methods became metric labels")
	}
}

// doRaw sends a request whose headers may be present but empty.
func (e *env) doRaw(method, path, cookie string, h map[string]string) *http.Response {
	hr := httptest.NewRequest(method, path, nil)
	hr.RemoteAddr = "192.0.2.10:5555"
	hr.AddCookie(&http.Cookie{Name: "__Host-authsvc_session", Value: cookie})
	for k, v := range h {
		hr.Header[k] = []string{v}
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, hr)
	return rec.Result()
}

// cookie0 logs a in again with the cookie transport and returns the cookie.
func cookie0(e *env, a *account) string {
	return e.do(req{method: "POST", path: "/v1/login", body: map[string]string{
		"email": a.email, "password": goodPass}}).want(e.t, 200, "").sessionCookie().Value
}

// Deeply nested bodies are refused before they cost much.
func TestNestedBody(t *testing.T) {
	e := newEnv(t, dbtest.Open(t, dbtest.SQLitePath(t)))
	deep := `{"email":"a@example.com","password":"` + goodPass + `","p":` +
		strings.Repeat(`{"a":`, 17) + "1" + strings.Repeat("}", 17) + "}"
	e.do(req{method: "POST", path: "/v1/signup", body: deep}).want(t, 400, "invalid_request")
	shallow := `{"email":"a@example.com","password":"` + goodPass + `","p":` +
		strings.Repeat(`[`, 15) + strings.Repeat("]", 15) + "}"
	e.do(req{method: "POST", path: "/v1/signup", body: shallow}).want(t, 201, "")
}

// A burst of wrong passwords for one account, released at once, gets no
// more checks than the same guesses sent one by one; the client address's
// budget holds under the burst too.
func TestLoginBurst(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t), func(o *Options) { o.LoginFailuresPerIP = 12 })
		e.signup("jay@example.com")
		burst := func(email string) (checked int) {
			const n = 40
			results := make(chan int, n)
			start := make(chan struct{})
			for range n {
				go func() {
					<-start
					r := e.do(req{method: "POST", path: "/v1/login", body: map[string]string{
						"email": email, "password": "not the password", "session_transport": "bearer"}})
					results <- r.StatusCode
				}()
			}
			close(start)
			for range n {
				switch st := <-results; st {
				case 401:
					checked++
				case 429:
				default:
					t.Errorf("status %d", st)
				}
			}
			return checked
		}
		if n := burst("jay@example.com"); n > 5 {
			t.Fatalf("%d wrong passwords checked for one account, want at most 5", n)
		}
		if n := burst("nobody@example.com"); n > 5 {
			t.Fatalf("%d wrong passwords checked for an unknown address, want at most 5", n)
		}
		e.clock.advance(time.Hour)
		total := 0
		for i := range 4 {
			total += burst(fmt.Sprintf("x%d@example.com", i))
		}
		if total > 12 {
			t.Fatalf("%d failed logins from one address, want at most 12", total)
		}
	})
}
