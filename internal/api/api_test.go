package api

import (
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/twofactor"
)

func decodeSecret(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	if err != nil || len(b) != 20 || len(s) != 32 {
		t.Fatalf("secret %q is not 20 bytes of unpadded base32: %v", s, err)
	}
	return b
}

func TestSignupAndSession(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))

		// Cookie transport (the default): a cookie and no token.
		r := e.do(req{method: "POST", path: "/v1/signup",
			body: map[string]string{"email": "Ann@Example.com", "password": goodPass}})
		r.want(t, 201, "")
		if r.json["session_token"] != nil {
			t.Fatal("cookie signup returned a token")
		}
		c := r.sessionCookie()
		if c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode ||
			c.Path != "/" || c.Domain != "" || c.MaxAge != 24*3600 {
			t.Fatalf("cookie %+v", c)
		}
		if r.str("user", "email") != "Ann@Example.com" || r.json["user"].(map[string]any)["two_factor_enabled"] != false {
			t.Fatalf("user %v", r.json["user"])
		}
		for _, h := range []string{"Cache-Control", "X-Content-Type-Options"} {
			if r.Header.Get(h) == "" {
				t.Fatalf("%s missing", h)
			}
		}
		got := e.do(req{method: "GET", path: "/v1/session", cookie: c.Value}).want(t, 200, "")
		if got.str("session", "id") != r.str("session", "id") {
			t.Fatal("session id differs")
		}
		if strings.Contains(string(got.raw), c.Value) {
			t.Fatal("session object carries the token")
		}

		// Bearer transport: a token and no cookie.
		a := e.signup("bob@example.com")
		if len(a.token) != 43 {
			t.Fatalf("token %q", a.token)
		}
		e.do(req{method: "GET", path: "/v1/session", token: a.token}).want(t, 200, "")

		// Another spelling of the same address is taken.
		for _, email := range []string{"ANN@example.COM", "ａｎｎ@example.com"} {
			e.do(req{method: "POST", path: "/v1/signup",
				body: map[string]string{"email": email, "password": "x"}}).want(t, 409, "email_taken")
		}
	})
}

func TestBadInput(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("carol@example.com")
		signup := func(body any, hdr map[string]string) *res {
			return e.do(req{method: "POST", path: "/v1/signup", body: body, header: hdr})
		}
		signup(`{"email":"x@example.com","password":"`+goodPass+`"}`,
			map[string]string{"Content-Type": "text/plain"}).want(t, 415, "unsupported_media_type")
		signup(`{}`, map[string]string{"Content-Type": "application/json; charset=latin1"}).
			want(t, 415, "unsupported_media_type")
		signup(strings.Repeat(" ", 65<<10)+"{}", nil).want(t, 413, "payload_too_large")
		for _, body := range []string{
			`{"email":"x@example.com"`,
			`{"email":"x@example.com","email":"y@example.com","password":"` + goodPass + `"}`,
			`{"email":1,"password":"` + goodPass + `"}`,
			`{"email":null,"password":"` + goodPass + `"}`,
			`{"password":"` + goodPass + `"}`,
			`["x"]`,
			`{"email":"x@example.com","password":"` + goodPass + `"}{}`,
			"{\"email\":\"x\xff@example.com\",\"password\":\"" + goodPass + "\"}",
			`{"email":"not-an-email","password":"` + goodPass + `"}`,
			`{"email":"Eve <eve@example.com>","password":"` + goodPass + `"}`,
			`{"email":"x@example.com","password":"` + goodPass + `","session_transport":"carrier pigeon"}`,
			`{"email":"x@example.com","password":"` + goodPass + `","nested":{"a":1,"a":2}}`,
		} {
			signup(body, nil).want(t, 400, "invalid_request")
		}
		for _, pw := range []string{"short", "password123", "x@example.com", strings.Repeat("é", 257)} {
			signup(map[string]string{"email": "x@example.com", "password": pw}, nil).
				want(t, 422, "weak_password")
		}
		// 256 code points of two bytes each are accepted, 8 code points too.
		signup(map[string]string{"email": "long@example.com", "password": strings.Repeat("é", 256)}, nil).
			want(t, 201, "")
		signup(map[string]string{"email": "eight@example.com", "password": "k9#Lq2!w"}, nil).
			want(t, 201, "")

		// Precedence: 413 and 415 before 401; 401 before 400.
		e.do(req{method: "POST", path: "/v1/reauthenticate", body: strings.Repeat("x", 70<<10)}).
			want(t, 413, "payload_too_large")
		e.do(req{method: "POST", path: "/v1/reauthenticate", body: "{}",
			header: map[string]string{"Content-Type": "text/plain"}}).want(t, 415, "unsupported_media_type")
		e.do(req{method: "POST", path: "/v1/reauthenticate", body: "{"}).
			want(t, 401, "unauthenticated")
		e.do(req{method: "POST", path: "/v1/reauthenticate", body: "{", token: a.token}).
			want(t, 400, "invalid_request")

		// Unknown routes and wrong methods.
		e.do(req{method: "GET", path: "/v1/nothing"}).want(t, 404, "not_found")
		e.do(req{method: "GET", path: "/v1/login"}).want(t, 405, "method_not_allowed")
		r := e.do(req{method: "PUT", path: "/v1/sessions"}).want(t, 405, "method_not_allowed")
		if r.Header.Get("Allow") != "GET, DELETE" {
			t.Fatalf("Allow: %q", r.Header.Get("Allow"))
		}
	})
}

func TestLoginFailuresLookAlike(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		e.signup("dave@example.com")
		var bodies []string
		for _, in := range []map[string]string{
			{"email": "dave@example.com", "password": "wrong password!"},
			{"email": "nobody@example.com", "password": goodPass},
			{"email": "not an email", "password": goodPass},
			{"email": "dave@example.com", "password": goodPass + "x"},
			{"email": "dave@example.com", "password": strings.Repeat("a", 300)},
		} {
			r := e.do(req{method: "POST", path: "/v1/login", body: in}).want(t, 401, "invalid_credentials")
			bodies = append(bodies, r.json["detail"].(string))
		}
		for _, b := range bodies[1:] {
			if b != bodies[0] {
				t.Fatalf("login failures differ: %q vs %q", b, bodies[0])
			}
		}
		r := e.login("DAVE@example.com").want(t, 200, "")
		if r.json["two_factor_required"] != false {
			t.Fatalf("two_factor_required = %v", r.json["two_factor_required"])
		}
	})
}

func TestCredentials(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("erin@example.com")
		get := func(h map[string]string, token, cookie string) *res {
			return e.do(req{method: "GET", path: "/v1/session", header: h, token: token, cookie: cookie})
		}
		get(nil, "", "").want(t, 401, "unauthenticated")
		get(nil, "garbage", "").want(t, 401, "unauthenticated")
		get(nil, strings.Repeat("A", 43), "").want(t, 401, "unauthenticated")
		// A bearer token wins over the cookie; other schemes are ignored.
		get(nil, strings.Repeat("A", 43), a.token).want(t, 401, "unauthenticated")
		get(map[string]string{"Authorization": "Basic Zm9vOmJhcg=="}, "", a.token).want(t, 200, "")
		get(map[string]string{"Authorization": "bearer " + a.token}, "", "").want(t, 200, "")
		// Two session cookies are unauthenticated.
		get(map[string]string{"Cookie": "__Host-authsvc_session=" + a.token +
			"; __Host-authsvc_session=" + a.token}, "", "").want(t, 401, "unauthenticated")
		// The cookie without the __Host- prefix does not count when cookies are secure.
		get(map[string]string{"Cookie": "authsvc_session=" + a.token}, "", "").
			want(t, 401, "unauthenticated")

		// Logout kills the token.
		e.do(req{method: "POST", path: "/v1/logout", token: a.token}).want(t, 204, "")
		get(nil, a.token, "").want(t, 401, "unauthenticated")
	})
}

func TestInsecureCookieName(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t), func(o *Options) { o.CookieSecure = false })
		r := e.do(req{method: "POST", path: "/v1/signup",
			body: map[string]string{"email": "fay@example.com", "password": goodPass}}).want(t, 201, "")
		var c *http.Cookie
		for _, k := range r.Cookies() {
			c = k
		}
		if c == nil || c.Name != "authsvc_session" || c.Secure {
			t.Fatalf("cookie %+v", c)
		}
		e.do(req{method: "GET", path: "/v1/session",
			header: map[string]string{"Cookie": "authsvc_session=" + c.Value}}).want(t, 200, "")
	})
}

func TestOriginCheck(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		cookieLogin := func(h map[string]string, transport string) *res {
			body := map[string]string{"email": "gil@example.com", "password": goodPass}
			if transport != "" {
				body["session_transport"] = transport
			}
			return e.do(req{method: "POST", path: "/v1/login", body: body, header: h})
		}
		e.signup("gil@example.com")
		evil := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
		cookieLogin(evil, "").want(t, 403, "forbidden_origin")
		cookieLogin(evil, "cookie").want(t, 403, "forbidden_origin")
		cookieLogin(evil, "bearer").want(t, 200, "")
		cookieLogin(map[string]string{"Origin": "null"}, "").want(t, 403, "forbidden_origin")
		cookieLogin(map[string]string{"Referer": "https://evil.example/page"}, "").
			want(t, 403, "forbidden_origin")
		cookieLogin(map[string]string{"Referer": testOrigin + "/login"}, "").want(t, 200, "")
		cookieLogin(map[string]string{"Origin": testOrigin, "Sec-Fetch-Site": "cross-site"}, "").
			want(t, 200, "")
		cookieLogin(map[string]string{"Sec-Fetch-Site": "same-origin"}, "").want(t, 200, "")
		cookieLogin(map[string]string{"Sec-Fetch-Site": "none"}, "").want(t, 200, "")
		// A forged login with a broken body is still 403 first.
		e.do(req{method: "POST", path: "/v1/login", body: "{", header: evil}).
			want(t, 403, "forbidden_origin")
		r := cookieLogin(nil, "").want(t, 200, "")
		cookie := r.sessionCookie().Value

		// Unsafe cookie requests are checked; safe ones and bearer ones are not.
		e.do(req{method: "POST", path: "/v1/logout", cookie: cookie, header: evil}).
			want(t, 403, "forbidden_origin")
		e.do(req{method: "GET", path: "/v1/session", cookie: cookie, header: evil}).want(t, 200, "")
		// 401 comes before 403.
		e.do(req{method: "POST", path: "/v1/logout", cookie: strings.Repeat("B", 43), header: evil}).
			want(t, 401, "unauthenticated")
		e.do(req{method: "POST", path: "/v1/logout", cookie: cookie,
			header: map[string]string{"Origin": testOrigin}}).want(t, 204, "")
	})
}

func TestCORS(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		r := e.do(req{method: "OPTIONS", path: "/v1/login", header: map[string]string{
			"Origin": testOrigin, "Access-Control-Request-Method": "POST"}})
		if r.StatusCode != 204 || r.Header.Get("Access-Control-Allow-Origin") != testOrigin ||
			r.Header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Fatalf("preflight: %d %v", r.StatusCode, r.Header)
		}
		r = e.do(req{method: "OPTIONS", path: "/v1/login", header: map[string]string{
			"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}})
		if r.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatal("preflight allowed an unknown origin")
		}
		r = e.do(req{method: "GET", path: "/v1/session", header: map[string]string{"Origin": "https://evil.example"}})
		if !strings.Contains(strings.Join(r.Header.Values("Vary"), ","), "Origin") {
			t.Fatal("no Vary: Origin")
		}
		r = e.do(req{method: "GET", path: "/v1/authorize", header: map[string]string{"Origin": testOrigin}})
		if r.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatal("CORS on /v1/authorize")
		}
	})
}

func TestAuthorize(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("hal@bücher.example")
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
			for _, p := range []string{"/v1/authorize", "/v1/authorize/", "/v1/authorize/some/deep/path"} {
				r := e.do(req{method: m, path: p, token: a.token}).want(t, 200, "")
				if len(r.raw) != 0 || r.Header.Get("X-Auth-User-Id") != a.id ||
					r.Header.Get("X-Auth-User-Email") != "hal@xn--bcher-kva.example" ||
					r.Header.Get("X-Auth-Session-Id") == "" {
					t.Fatalf("%s %s: %v %q", m, p, r.Header, r.raw)
				}
			}
			e.do(req{method: m, path: "/v1/authorize/x"}).want(t, 401, "unauthenticated")
		}
		e.do(req{method: "GET", path: "/v1/authorize?require=two_factor", token: a.token}).
			want(t, 403, "two_factor_enrollment_required")
		e.do(req{method: "GET", path: "/v1/authorize", token: a.token,
			header: map[string]string{"X-Auth-Require": "two_factor"}}).
			want(t, 403, "two_factor_enrollment_required")
		e.do(req{method: "GET", path: "/v1/authorize?require=everything", token: a.token}).
			want(t, 400, "invalid_request")

		e.enableTOTP(a)
		e.do(req{method: "GET", path: "/v1/authorize?require=two_factor", token: a.token}).want(t, 200, "")
		r := e.login("hal@bücher.example").want(t, 200, "")
		partial := r.str("session_token")
		e.do(req{method: "GET", path: "/v1/authorize", token: partial}).want(t, 401, "two_factor_required")
	})
}

func TestSlidingExpiry(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		r := e.do(req{method: "POST", path: "/v1/signup",
			body: map[string]string{"email": "ida@example.com", "password": goodPass}}).want(t, 201, "")
		cookie := r.sessionCookie().Value
		e.clock.advance(11 * time.Hour)
		r = e.do(req{method: "GET", path: "/v1/authorize", cookie: cookie}).want(t, 200, "")
		if r.sessionCookie() != nil {
			t.Fatal("cookie re-sent with more than half the TTL left")
		}
		e.clock.advance(2 * time.Hour)
		r = e.do(req{method: "GET", path: "/v1/authorize", cookie: cookie}).want(t, 200, "")
		if c := r.sessionCookie(); c == nil || c.MaxAge != 24*3600 || c.Value != cookie {
			t.Fatalf("slid cookie %+v", c)
		}
		e.clock.advance(24*time.Hour + time.Second)
		e.do(req{method: "GET", path: "/v1/authorize", cookie: cookie}).want(t, 401, "unauthenticated")
	})
}

func TestTwoFactorFlow(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("jo@example.com")

		// Setup answers JSON, or the PNG when asked for it.
		r := e.do(req{method: "POST", path: "/v1/2fa/totp/setup", token: a.token}).want(t, 200, "")
		uri := r.str("otpauth_uri")
		if !strings.HasPrefix(uri, "otpauth://totp/Acme%20Corp:jo%40example.com?secret="+r.str("secret")) {
			t.Fatalf("uri %q", uri)
		}
		png, err := base64.StdEncoding.DecodeString(r.str("qr_png"))
		if err != nil || !strings.HasPrefix(string(png), "\x89PNG") {
			t.Fatalf("qr_png is not a base64 PNG: %v", err)
		}
		r = e.do(req{method: "POST", path: "/v1/2fa/totp/setup", token: a.token,
			header: map[string]string{"Accept": "image/png"}}).want(t, 200, "")
		if r.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(string(r.raw), "\x89PNG") {
			t.Fatalf("PNG answer: %q", r.Header.Get("Content-Type"))
		}
		// That call replaced the pending secret; the JSON one is dead.
		oldSecret := decodeSecret(t, r0secret(t, e, a))
		_ = oldSecret
	})
}

// r0secret starts a fresh setup and returns its secret.
func r0secret(t *testing.T, e *env, a *account) string {
	t.Helper()
	return e.do(req{method: "POST", path: "/v1/2fa/totp/setup", token: a.token}).want(t, 200, "").str("secret")
}

func TestEnableVerifyRecovery(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("kim@example.com")
		now := func() int64 { return twofactor.Step(e.clock.now()) }

		first := decodeSecret(t, r0secret(t, e, a))
		second := decodeSecret(t, r0secret(t, e, a))
		// Only the latest pending secret confirms.
		e.do(req{method: "POST", path: "/v1/2fa/totp/enable", token: a.token,
			body: map[string]string{"code": twofactor.Code(first, now())}}).want(t, 422, "invalid_otp")
		e.do(req{method: "POST", path: "/v1/2fa/totp/enable", token: a.token,
			body: map[string]string{"code": "12ab56"}}).want(t, 422, "invalid_otp")
		e.do(req{method: "POST", path: "/v1/2fa/totp/enable", token: a.token,
			body: map[string]string{}}).want(t, 400, "invalid_request")
		code := twofactor.Code(second, now())
		r := e.do(req{method: "POST", path: "/v1/2fa/totp/enable", token: a.token,
			body: map[string]string{"code": code[:3] + " " + code[3:]}}).want(t, 200, "")
		codes := r.json["recovery_codes"].([]any)
		if len(codes) != 10 {
			t.Fatalf("%d recovery codes", len(codes))
		}
		// The token rotated: the old one is dead at once, the session id stays.
		e.do(req{method: "GET", path: "/v1/session", token: a.token}).want(t, 401, "unauthenticated")
		a.token = r.str("session_token")
		s := e.do(req{method: "GET", path: "/v1/session", token: a.token}).want(t, 200, "")
		if s.json["user"].(map[string]any)["recovery_codes_remaining"] != float64(10) ||
			s.json["session"].(map[string]any)["two_factor_verified"] != true {
			t.Fatalf("after enable: %s", s.raw)
		}

		// A new login is partial and confined.
		p := e.login("kim@example.com").want(t, 200, "")
		if p.json["two_factor_required"] != true {
			t.Fatal("login did not ask for the second factor")
		}
		pt := p.str("session_token")
		e.do(req{method: "GET", path: "/v1/sessions", token: pt}).want(t, 401, "two_factor_required")
		e.do(req{method: "POST", path: "/v1/2fa/totp/setup", token: pt}).want(t, 401, "two_factor_required")
		e.do(req{method: "GET", path: "/v1/session", token: pt}).want(t, 200, "")

		// The code that confirmed setup counts as used, as does any earlier step.
		e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: pt,
			body: map[string]string{"code": code}}).want(t, 422, "invalid_otp")
		e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: pt,
			body: map[string]string{"code": twofactor.Code(second, now()-1)}}).want(t, 422, "invalid_otp")
		next := twofactor.Code(second, now()+1)
		v := e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: pt,
			body: map[string]string{"code": next}}).want(t, 200, "")
		full := v.str("session_token")
		e.do(req{method: "GET", path: "/v1/authorize", token: pt}).want(t, 401, "unauthenticated")
		e.do(req{method: "GET", path: "/v1/authorize", token: full}).want(t, 200, "")
		e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: full,
			body: map[string]string{"code": next}}).want(t, 409, "already_verified")

		// The same code on another partial session is refused.
		pt2 := e.login("kim@example.com").want(t, 200, "").str("session_token")
		e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: pt2,
			body: map[string]string{"code": next}}).want(t, 422, "invalid_otp")

		// A recovery code works once, in any case and grouping.
		rc := codes[0].(string)
		e.do(req{method: "POST", path: "/v1/2fa/recovery", token: pt2,
			body: map[string]string{"code": " " + strings.ToUpper(strings.ReplaceAll(rc, "-", " ")) + " "}}).
			want(t, 200, "")
		pt3 := e.login("kim@example.com").want(t, 200, "").str("session_token")
		e.do(req{method: "POST", path: "/v1/2fa/recovery", token: pt3,
			body: map[string]string{"code": rc}}).want(t, 422, "invalid_recovery_code")
		s = e.do(req{method: "GET", path: "/v1/session", token: full}).want(t, 200, "")
		if s.json["user"].(map[string]any)["recovery_codes_remaining"] != float64(9) {
			t.Fatalf("remaining: %s", s.raw)
		}

		// A user without 2FA has nothing to verify.
		b := e.signup("lee@example.com")
		e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: b.token,
			body: map[string]string{"code": "123456"}}).want(t, 409, "two_factor_not_enabled")
		e.do(req{method: "POST", path: "/v1/2fa/totp/enable", token: b.token,
			body: map[string]string{"code": "123456"}}).want(t, 409, "two_factor_setup_required")
	})
}

func TestEnableMakesOtherSessionsPartial(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("max@example.com")
		other := e.login("max@example.com").want(t, 200, "").str("session_token")
		e.enableTOTP(a)
		e.do(req{method: "GET", path: "/v1/authorize", token: other}).want(t, 401, "two_factor_required")
		e.do(req{method: "GET", path: "/v1/authorize", token: a.token}).want(t, 200, "")
		e.clock.advance(10*time.Minute + time.Second)
		e.do(req{method: "GET", path: "/v1/session", token: other}).want(t, 401, "unauthenticated")
	})
}

func TestPendingSetupBinding(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("ned@example.com")
		b := e.login("ned@example.com").want(t, 200, "").str("session_token")
		secret := decodeSecret(t, r0secret(t, e, a))
		code := twofactor.Code(secret, twofactor.Step(e.clock.now()))
		// Another session of the same user cannot confirm it.
		e.do(req{method: "POST", path: "/v1/2fa/totp/enable", token: b,
			body: map[string]string{"code": code}}).want(t, 409, "two_factor_setup_required")
		// It expires after 15 minutes (re-proving the password on the way).
		e.clock.advance(15*time.Minute + time.Second)
		a.token = e.do(req{method: "POST", path: "/v1/reauthenticate", token: a.token,
			body: map[string]string{"password": goodPass}}).want(t, 200, "").str("session_token")
		code = twofactor.Code(secret, twofactor.Step(e.clock.now()))
		e.do(req{method: "POST", path: "/v1/2fa/totp/enable", token: a.token,
			body: map[string]string{"code": code}}).want(t, 409, "two_factor_setup_required")
		u, err := e.store.UserByID(t.Context(), a.id)
		if err != nil || u.TwoFactorSecret != nil {
			t.Fatalf("two_factor_secret set before enable: %v", err)
		}
	})
}

func TestRecentPassword(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("ola@example.com")
		e.clock.advance(10*time.Minute + time.Second)
		e.do(req{method: "POST", path: "/v1/2fa/totp/setup", token: a.token}).
			want(t, 403, "reauthentication_required")
		e.do(req{method: "DELETE", path: "/v1/sessions", token: a.token}).
			want(t, 403, "reauthentication_required")
		e.do(req{method: "POST", path: "/v1/reauthenticate", token: a.token,
			body: map[string]string{"password": "wrong password"}}).want(t, 422, "invalid_credentials")
		r := e.do(req{method: "POST", path: "/v1/reauthenticate", token: a.token,
			body: map[string]string{"password": goodPass}}).want(t, 200, "")
		e.do(req{method: "GET", path: "/v1/session", token: a.token}).want(t, 401, "unauthenticated")
		a.token = r.str("session_token")
		e.do(req{method: "POST", path: "/v1/2fa/totp/setup", token: a.token}).want(t, 200, "")
	})
}

func TestSecondFactorThrottle(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("pat@example.com")
		secret, _ := e.enableTOTP(a)
		pt := e.login("pat@example.com").want(t, 200, "").str("session_token")
		verify := func(code string) *res {
			return e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: pt,
				body: map[string]string{"code": code}})
		}
		good := func() string { return twofactor.Code(secret, twofactor.Step(e.clock.now())+1) }
		bad := func() string { return fmt.Sprintf("%06d", (atoi(good())+500000)%1000000) }
		for i := 0; i < 5; i++ {
			verify(bad()).want(t, 422, "invalid_otp")
		}
		// From the 5th failure, even a correct code waits: 1 s, then 2 s, ...
		r := verify(good()).want(t, 429, "rate_limited")
		if r.Header.Get("Retry-After") != "1" {
			t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
		}
		e.clock.advance(time.Second)
		verify(bad()).want(t, 422, "invalid_otp")
		r = verify(good()).want(t, 429, "rate_limited")
		if r.Header.Get("Retry-After") != "2" {
			t.Fatalf("Retry-After %q after 6 failures", r.Header.Get("Retry-After"))
		}
		// Failures on other sessions count for the same account.
		e.clock.advance(2 * time.Second)
		pt2 := e.login("pat@example.com").want(t, 200, "").str("session_token")
		e.do(req{method: "POST", path: "/v1/2fa/recovery", token: pt2,
			body: map[string]string{"code": "aaaa-aaaa-aaaa-aaaa"}}).want(t, 422, "invalid_recovery_code")
		verify(good()).want(t, 429, "rate_limited")
		e.clock.advance(4 * time.Second)
		verify(good()).want(t, 200, "")
		u, err := e.store.UserByID(t.Context(), a.id)
		if err != nil || u.OTPFailures != 0 {
			t.Fatalf("failures after success: %v %v", u.OTPFailures, err)
		}
	})
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestSessionsEndpoints(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("quinn@example.com")
		e.clock.advance(time.Second)
		b := e.login("quinn@example.com").want(t, 200, "")
		other := e.signup("rae@example.com")

		r := e.do(req{method: "GET", path: "/v1/sessions", token: a.token}).want(t, 200, "")
		list := r.json["sessions"].([]any)
		if len(list) != 2 {
			t.Fatalf("%d sessions", len(list))
		}
		newest := list[0].(map[string]any)
		if newest["id"] != b.str("session", "id") || newest["current"] != false ||
			list[1].(map[string]any)["current"] != true {
			t.Fatalf("order or current flag wrong: %s", r.raw)
		}
		otherID := e.do(req{method: "GET", path: "/v1/session", token: other.token}).str("session", "id")
		e.do(req{method: "DELETE", path: "/v1/sessions/" + otherID, token: a.token}).want(t, 404, "not_found")
		e.do(req{method: "DELETE", path: "/v1/sessions/%27;drop", token: a.token}).want(t, 404, "not_found")
		e.do(req{method: "DELETE", path: "/v1/sessions/" + b.str("session", "id"), token: a.token}).
			want(t, 204, "")
		e.do(req{method: "GET", path: "/v1/session", token: b.str("session_token")}).
			want(t, 401, "unauthenticated")
		e.do(req{method: "GET", path: "/v1/session", token: other.token}).want(t, 200, "")

		c := e.login("quinn@example.com").want(t, 200, "").str("session_token")
		e.do(req{method: "DELETE", path: "/v1/sessions", token: a.token}).want(t, 204, "")
		e.do(req{method: "GET", path: "/v1/session", token: c}).want(t, 401, "unauthenticated")
		own := e.do(req{method: "GET", path: "/v1/session", token: a.token}).want(t, 200, "").str("session", "id")
		e.do(req{method: "DELETE", path: "/v1/sessions/" + own, token: a.token}).want(t, 204, "")
		e.do(req{method: "GET", path: "/v1/session", token: a.token}).want(t, 401, "unauthenticated")
	})
}

func TestLoginRevokesPresentedCredential(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("sam@example.com")
		e.do(req{method: "POST", path: "/v1/login", token: a.token,
			body: map[string]string{"email": "sam@example.com", "password": goodPass,
				"session_transport": "bearer"}}).want(t, 200, "")
		e.do(req{method: "GET", path: "/v1/session", token: a.token}).want(t, 401, "unauthenticated")
	})
}

func TestHealth(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		e.do(req{method: "GET", path: "/healthz"}).want(t, 200, "")
		e.do(req{method: "GET", path: "/readyz"}).want(t, 200, "")
		r := e.do(req{method: "GET", path: "/metrics"}).want(t, 200, "")
		if !strings.Contains(string(r.raw), "authsvc_http_request_duration_seconds") {
			t.Fatal("metrics lack the request histogram")
		}
		e.srv.Drain()
		r = e.do(req{method: "GET", path: "/readyz"}).want(t, 503, "unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		e.do(req{method: "GET", path: "/healthz"}).want(t, 200, "")
	})
}

func TestConcurrentSameCode(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("uma@example.com")
		secret, codes := e.enableTOTP(a)
		const n = 20
		for _, tc := range []struct {
			path, code string
		}{
			{"/v1/2fa/totp/verify", twofactor.Code(secret, twofactor.Step(e.clock.now())+1)},
			{"/v1/2fa/recovery", codes[0]},
		} {
			partials := make([]string, n)
			for i := range partials {
				partials[i] = e.login("uma@example.com").want(t, 200, "").str("session_token")
			}
			results := make(chan int, n)
			start := make(chan struct{})
			for i := range n {
				go func() {
					<-start
					r := e.do(req{method: "POST", path: tc.path, token: partials[i],
						body: map[string]string{"code": tc.code}})
					results <- r.StatusCode
				}()
			}
			close(start)
			wins := 0
			for range n {
				switch st := <-results; st {
				case 200:
					wins++
				case 422, 429:
				default:
					t.Errorf("%s: status %d", tc.path, st)
				}
			}
			if wins != 1 {
				t.Fatalf("%s: %d of %d concurrent requests with one code passed", tc.path, wins, n)
			}
			e.clock.advance(20 * time.Minute) // past the throttling the losers caused
		}
	})
}

// A burst of guesses released at once gets no more tries than the same
// guesses sent one by one: every attempt is counted before its code is
// checked, so at most the five free failures are evaluated.
func TestGuessBurst(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		a := e.signup("vic@example.com")
		secret, _ := e.enableTOTP(a)
		wrong := fmt.Sprintf("%06d", (atoi(twofactor.Code(secret, twofactor.Step(e.clock.now())))+1)%1000000)
		const n = 50
		partials := make([]string, n)
		for i := range partials {
			partials[i] = e.login("vic@example.com").want(t, 200, "").str("session_token")
		}
		results := make(chan int, n)
		start := make(chan struct{})
		for i := range n {
			go func() {
				<-start
				r := e.do(req{method: "POST", path: "/v1/2fa/totp/verify", token: partials[i],
					body: map[string]string{"code": wrong}})
				results <- r.StatusCode
			}()
		}
		close(start)
		evaluated := 0
		for range n {
			switch st := <-results; st {
			case 422:
				evaluated++
			case 429:
			default:
				t.Errorf("status %d", st)
			}
		}
		u, err := e.store.UserByID(t.Context(), a.id)
		if err != nil {
			t.Fatal(err)
		}
		if evaluated > 5 || u.OTPFailures != evaluated {
			t.Fatalf("%d guesses evaluated, %d failures counted; want at most 5, all counted",
				evaluated, u.OTPFailures)
		}
	})
}

func TestLoginThrottle(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		e := newEnv(t, open(t))
		e.signup("wes@example.com")
		// The owner's browser logs in once and gets a device cookie; bearer
		// logins set no cookie at all.
		if c := e.login("wes@example.com").want(t, 200, "").Cookies(); len(c) != 0 {
			t.Fatalf("bearer login set cookies %v", c)
		}
		r := e.do(req{method: "POST", path: "/v1/login",
			body: map[string]string{"email": "wes@example.com", "password": goodPass}}).want(t, 200, "")
		var device *http.Cookie
		for _, c := range r.Cookies() {
			if c.Name == "__Host-authsvc_device" {
				device = c
			}
		}
		if device == nil || !device.HttpOnly || !device.Secure {
			t.Fatalf("device cookie %+v", device)
		}
		attempt := func(email, pw string, withDevice bool) *res {
			h := map[string]string{}
			if withDevice {
				h["Cookie"] = device.Name + "=" + device.Value
			}
			return e.do(req{method: "POST", path: "/v1/login", header: h,
				body: map[string]string{"email": email, "password": pw, "session_transport": "bearer"}})
		}
		// Strangers fail five times; the sixth try waits, even with the right password.
		for i := 0; i < 5; i++ {
			attempt("wes@example.com", "wrong password", false).want(t, 401, "invalid_credentials")
		}
		r = attempt("wes@example.com", goodPass, false).want(t, 429, "rate_limited")
		if r.Header.Get("Retry-After") != "1" {
			t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
		}
		// The owner's device keeps its own count.
		attempt("wes@example.com", goodPass, true).want(t, 200, "")
		// A device cookie signed for someone else, or forged, is a stranger.
		e.signup("xia@example.com")
		device.Value = "AAAAAAAAAAAAAAAAAAAAAA.forged"
		attempt("wes@example.com", goodPass, true).want(t, 429, "rate_limited")
		// An unknown address is throttled the same way.
		for i := 0; i < 5; i++ {
			attempt("nobody@example.com", "wrong password", false).want(t, 401, "invalid_credentials")
		}
		attempt("nobody@example.com", "wrong password", false).want(t, 429, "rate_limited")
		e.clock.advance(time.Second)
		attempt("wes@example.com", goodPass, false).want(t, 200, "")
	})
}
