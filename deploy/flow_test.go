package deploy_test

import (
	"bytes"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// forged is the value every identity header a client makes up carries.
const forged = "forged-by-client"

// gateway is one gateway configuration under test and the choices it makes.
type gateway struct {
	// tool is the gateway's program, looked for before anything starts.
	tool string
	// start runs the gateway from the repository's configuration in front
	// of authsvc and the application (both host:port) and returns its
	// base URL.
	start func(t *testing.T, authsvc, app string) string
	// redirects reports whether a 401 from authsvc sends the browser to
	// /login instead of passing authsvc's problem document on.
	redirects bool
	// problems403 reports whether a 403 from authsvc reaches the client as
	// authsvc's problem document (otherwise only the status is checked).
	problems403 bool
	// anyName reports whether client headers are stripped by the prefix
	// X-Auth-, whatever follows it, rather than by the names authsvc
	// defines.
	anyName bool
}

// stack is authsvc and the application with a gateway in front of both.
type stack struct {
	gw   gateway
	base string
	app  *app
}

// newStack starts authsvc (env adds to its environment), the application
// and gw in front of both.
func newStack(t *testing.T, gw gateway, env ...string) *stack {
	t.Helper()
	tool(t, gw.tool)
	authsvc := startAuthsvc(t, env...)
	a := startApp(t)
	return &stack{gw: gw, base: gw.start(t, authsvc, a.addr()), app: a}
}

// browser returns a new browser for the stack's gateway.
func (s *stack) browser(t *testing.T) *browser { return newBrowser(t, s.base) }

// forgedHeaders are identity headers as a client might invent them: every
// name authsvc uses, in other spellings, repeated, with "_" for "-" (which
// CGI-style backends fold together), and a require value that authsvc
// would answer with 400 if it got through to it.
func (s *stack) forgedHeaders() []string {
	h := []string{
		"X-Auth-User-Id", forged,
		"X-Auth-User-Id", forged + "-2",
		"x-auth-user-id", forged,
		"X_Auth_User_Id", forged,
		"X-AUTH-USER-EMAIL", forged + "@example.com",
		"X-Auth-Session-Id", forged,
		"X-Auth-Require", forged,
	}
	// A name authsvc does not define.
	if s.gw.anyName {
		h = append(h, "X-Auth-Roles", forged)
	}
	return h
}

// wantApp sends a request that must reach the application as the account
// and session given, and returns what the application saw.
func (s *stack) wantApp(t *testing.T, b *browser, method, path string, body any,
	a account, sessionID string, hdr ...string) seen {
	t.Helper()
	uri := path + "?r=" + unique(t)
	r := b.do(method, uri, body, hdr...)
	if r.status != http.StatusOK || r.header.Get("X-Upstream") != "app" {
		t.Fatalf("%s %s: got %s, want the application's 200", method, uri, r)
	}
	noIdentityHeaders(t, r)
	got := s.app.saw(uri)
	if len(got) != 1 {
		t.Fatalf("%s %s: the application saw %d requests, want 1", method, uri, len(got))
	}
	want := map[string][]string{
		"x-auth-user-id":    {a.userID},
		"x-auth-user-email": {a.email},
		"x-auth-session-id": {sessionID},
	}
	if !reflect.DeepEqual(got[0].Auth, want) {
		t.Errorf("%s %s: the application saw identity headers %v, want %v",
			method, uri, got[0].Auth, want)
	}
	return got[0]
}

// wantRefused sends a request that authsvc must refuse with status and
// code, and checks that the application never saw it.
func (s *stack) wantRefused(t *testing.T, b *browser, path string, status int,
	code string, hdr ...string) {
	t.Helper()
	uri := path + "?r=" + unique(t)
	r := b.do(http.MethodGet, uri, nil, hdr...)
	noIdentityHeaders(t, r)
	if n := len(s.app.saw(uri)); n != 0 {
		t.Errorf("GET %s: refused, but the application saw it %d times", uri, n)
	}
	switch {
	case status == http.StatusUnauthorized && s.gw.redirects:
		loc, err := url.Parse(r.header.Get("Location"))
		if r.status != http.StatusFound || err != nil || loc.Path != "/login" ||
			loc.Query().Get("next") != uri {
			t.Errorf("GET %s: got %s, want a redirect to /login?next=%s", uri, r, uri)
		}
	case status == http.StatusForbidden && !s.gw.problems403:
		if r.status != status {
			t.Errorf("GET %s: got %s, want %d", uri, r, status)
		}
	default:
		if r.status != status || r.problemCode() != code {
			t.Errorf("GET %s: got %s, want %d %s", uri, r, status, code)
		}
	}
}

// noIdentityHeaders fails if a response to the client carries identity
// headers: they are for the application only.
func noIdentityHeaders(t *testing.T, r reply) {
	t.Helper()
	for name := range r.header {
		if strings.HasPrefix(strings.ToLower(name), "x-auth-") {
			t.Errorf("the client got identity header %s: %v", name, r.header[name])
		}
	}
}

// testGateway runs the browser scenarios against gw, and checks that a
// session slid by authsvc reaches the browser with its new cookie.
func testGateway(t *testing.T, gw gateway) {
	t.Run("flow", func(t *testing.T) {
		t.Parallel()
		testFlow(t, gw)
	})
	t.Run("slid session cookie reaches the browser", func(t *testing.T) {
		if testing.Short() {
			t.Skip("SKIPPING: waits half a minute for a session to slide; " +
				"run without -short")
		}
		t.Parallel()
		// The shortest TTL authsvc accepts; the session slides once less
		// than half of it is left.
		s := newStack(t, gw, "AUTHSVC_SESSION_TTL=1m")
		s.testSlide(t)
	})
}

// testFlow runs the browser scenarios against one stack with gw in front.
func testFlow(t *testing.T, gw gateway) {
	s := newStack(t, gw)
	t.Run("refused without a session", s.testAnonymous)
	t.Run("login page is public", s.testLoginPage)
	t.Run("signed-in user reaches the app", s.testSignedIn)
	t.Run("every request is asked anew", s.testNoCache)
	t.Run("second factor", s.testSecondFactor)
	t.Run("authsvc internals are hidden", s.testHidden)
	t.Run("no forged identity reached the app", s.testNothingForged)
}

// alternative turns a configuration into the alternative its comments
// offer: each line of off is commented out with "# ", and each line of on,
// which the file holds as a comment "#   line", is made active. Every line
// must occur exactly once, so the comments and this test stay in step.
func alternative(t *testing.T, src string, off, on []string) string {
	t.Helper()
	swap := func(from, to string) {
		if n := strings.Count(src, from); n != 1 {
			t.Fatalf("the configuration has %q %d times, want once", from, n)
		}
		src = strings.Replace(src, from, to, 1)
	}
	for _, line := range off {
		swap(line, "# "+line)
	}
	for _, line := range on {
		swap("#   "+line, line)
	}
	return src
}

// testAnonymous: without a valid credential nothing reaches the
// application, forged identity headers or not.
func (s *stack) testAnonymous(t *testing.T) {
	b := s.browser(t)
	s.wantRefused(t, b, "/app", http.StatusUnauthorized, "unauthenticated")
	s.wantRefused(t, b, "/app/page", http.StatusUnauthorized, "unauthenticated",
		s.forgedHeaders()...)
	s.wantRefused(t, b, "/admin/", http.StatusUnauthorized, "unauthenticated",
		s.forgedHeaders()...)
	s.wantRefused(t, b, "/app", http.StatusUnauthorized, "unauthenticated",
		"Authorization", "Bearer "+strings.Repeat("A", 43))
}

// testLoginPage: the public login page gets no identity headers, forged
// ones included.
func (s *stack) testLoginPage(t *testing.T) {
	b := s.browser(t)
	uri := "/login?r=" + unique(t)
	r := b.do(http.MethodGet, uri, nil, s.forgedHeaders()...)
	if r.status != http.StatusOK || r.header.Get("X-Upstream") != "app" {
		t.Fatalf("GET %s: got %s, want the application's 200", uri, r)
	}
	if got := s.app.saw(uri); len(got) != 1 || len(got[0].Auth) != 0 {
		t.Errorf("GET %s: the application saw %+v, want one request without identity",
			uri, got)
	}
}

// testSignedIn: a user signed up through the gateway reaches the
// application, which sees that user's identity and no forged one, with a
// cookie and with a bearer token.
func (s *stack) testSignedIn(t *testing.T) {
	b := s.browser(t)
	a, in := b.signup()
	s.wantApp(t, b, http.MethodGet, "/app", nil, a, in.Session.ID)
	s.wantApp(t, b, http.MethodGet, "/app/deeper/page", nil, a, in.Session.ID,
		s.forgedHeaders()...)

	// The auth request must not swallow the body meant for the application.
	got := s.wantApp(t, b, http.MethodPost, "/app/form", "field=value", a, in.Session.ID,
		s.forgedHeaders()...)
	if got.Method != http.MethodPost || got.Body != "field=value" {
		t.Errorf("the application saw %s with body %q, want POST field=value",
			got.Method, got.Body)
	}

	// A native client with a bearer token, no cookies.
	var bearer signedIn
	s.browser(t).post("/v1/login", map[string]string{"email": a.email,
		"password": a.password, "session_transport": "bearer"}, http.StatusOK, &bearer)
	if bearer.SessionToken == "" {
		t.Fatalf("bearer login answered no token: %+v", bearer)
	}
	s.wantApp(t, s.browser(t), http.MethodGet, "/app", nil, a, bearer.Session.ID,
		append(s.forgedHeaders(), "Authorization", "Bearer "+bearer.SessionToken)...)
}

// testNoCache: the gateway asks authsvc about every request, so two users
// in turn each get their own identity and a logout counts at once.
func (s *stack) testNoCache(t *testing.T) {
	b1, b2 := s.browser(t), s.browser(t)
	a1, in1 := b1.signup()
	a2, in2 := b2.signup()
	for range 3 {
		s.wantApp(t, b1, http.MethodGet, "/app/same", nil, a1, in1.Session.ID)
		s.wantApp(t, b2, http.MethodGet, "/app/same", nil, a2, in2.Session.ID)
	}

	// A cookie that was good a moment ago is refused once its session ends.
	token := b1.cookie(sessionCookie)
	if token == "" {
		t.Fatalf("the browser holds no %s cookie", sessionCookie)
	}
	b1.post("/v1/logout", nil, http.StatusNoContent, nil)
	s.wantRefused(t, s.browser(t), "/app/same", http.StatusUnauthorized, "unauthenticated",
		"Cookie", sessionCookie+"="+token)
	s.wantApp(t, b2, http.MethodGet, "/app/same", nil, a2, in2.Session.ID)
}

// sessionCookie is the cookie authsvc sets with AUTHSVC_COOKIE_SECURE=false.
const sessionCookie = "authsvc_session"

// testSecondFactor: a partial session is refused until the TOTP code is
// verified, and the admin area refuses a user without 2FA.
func (s *stack) testSecondFactor(t *testing.T) {
	// Enrol: the browser that signed up sets up and enables TOTP.
	first := s.browser(t)
	a, in := first.signup()
	var setup struct{ Secret string }
	first.post("/v1/2fa/totp/setup", nil, http.StatusOK, &setup)
	code, err := totp(setup.Secret, time.Now(), 6)
	if err != nil {
		t.Fatal(err)
	}
	first.post("/v1/2fa/totp/enable", map[string]string{"code": code}, http.StatusOK, nil)
	s.wantApp(t, first, http.MethodGet, "/admin/users", nil, a, in.Session.ID)

	// A new login is partial until the second factor is passed.
	second := s.browser(t)
	partial := second.login(a)
	if !partial.TwoFactorRequired {
		t.Fatalf("login of a user with 2FA answered %+v, want two_factor_required", partial)
	}
	s.wantRefused(t, second, "/app", http.StatusUnauthorized, "two_factor_required")
	s.wantRefused(t, second, "/admin/users", http.StatusUnauthorized, "two_factor_required",
		s.forgedHeaders()...)

	// The step after the one enable used: a step is accepted only once.
	code, err = totp(setup.Secret, time.Now().Add(30*time.Second), 6)
	if err != nil {
		t.Fatal(err)
	}
	var verified signedIn
	second.post("/v1/2fa/totp/verify", map[string]string{"code": code}, http.StatusOK,
		&verified)
	s.wantApp(t, second, http.MethodGet, "/app", nil, a, verified.Session.ID)
	s.wantApp(t, second, http.MethodGet, "/admin/users", nil, a, verified.Session.ID,
		s.forgedHeaders()...)

	// A full session without 2FA may use the app but not the admin area.
	other := s.browser(t)
	o, oin := other.signup()
	s.wantApp(t, other, http.MethodGet, "/app", nil, o, oin.Session.ID)
	s.wantRefused(t, other, "/admin/users", http.StatusForbidden,
		"two_factor_enrollment_required", s.forgedHeaders()...)
}

// hiddenPaths are authsvc endpoints for operators, and spellings that
// would reach them if a gateway matched one path and sent another.
var hiddenPaths = []string{
	"/metrics", "/healthz", "/readyz", "/openapi.yaml",
	"/v1/../metrics", "/v1/%2e%2e/metrics", "/v1/..%2fmetrics", "/v1/..%2Fhealthz",
	"/v1/authorize/../../metrics", "/v1/./../healthz", "/%6detrics", "/_authsvc/session",
}

// testHidden: no spelling of authsvc's operator endpoints is answered by
// authsvc through the gateway; a 200 must come from the application.
func (s *stack) testHidden(t *testing.T) {
	anonymous := s.browser(t)
	signedIn := s.browser(t)
	signedIn.signup()
	for _, b := range []*browser{anonymous, signedIn} {
		for _, p := range hiddenPaths {
			r := b.do(http.MethodGet, p, nil)
			noIdentityHeaders(t, r)
			if r.status == http.StatusOK && r.header.Get("X-Upstream") != "app" {
				t.Errorf("GET %s: got %s, an answer that is not the application's", p, r)
			}
			if bytes.Contains(r.body, []byte("# HELP")) ||
				bytes.Contains(r.body, []byte("openapi:")) {
				t.Errorf("GET %s: got authsvc's internals: %s", p, r)
			}
		}
	}
}

// testNothingForged looks through every request the application received
// in the earlier tests for a forged identity value.
func (s *stack) testNothingForged(t *testing.T) {
	all := s.app.requests()
	if len(all) == 0 {
		t.Fatal("the application saw no requests at all")
	}
	for _, r := range all {
		for name, vals := range r.Auth {
			for _, v := range vals {
				if strings.Contains(v, forged) {
					t.Errorf("%s %s: the application got %s: %s", r.Method, r.URI, name, v)
				}
			}
		}
	}
}

// testSlide: once authsvc slides a session on an authorize request, the
// new cookie reaches the browser with the application's answer; before
// that, the gateway adds no Set-Cookie at all.
func (s *stack) testSlide(t *testing.T) {
	b := s.browser(t)
	a, in := b.signup()
	signedUp := time.Now()
	uri := "/app?r=" + unique(t)
	r := b.do(http.MethodGet, uri, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: got %s", uri, r)
	}
	if c := r.header.Values("Set-Cookie"); len(c) != 0 {
		t.Errorf("GET %s of a fresh session: got Set-Cookie %q, want none", uri, c)
	}
	token := b.cookie(sessionCookie)

	// Wait until less than half of the one-minute TTL is left.
	time.Sleep(time.Until(signedUp.Add(31 * time.Second)))
	uri = "/app?r=" + unique(t)
	r = b.do(http.MethodGet, uri, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: got %s", uri, r)
	}
	var slid *http.Cookie
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == sessionCookie {
			slid = c
		}
	}
	if slid == nil || slid.Value != token || slid.MaxAge <= 30 || slid.MaxAge > 60 {
		t.Fatalf("GET %s: got Set-Cookie %q, want the session cookie again with "+
			"a new Max-Age", uri, r.header.Values("Set-Cookie"))
	}
	s.wantApp(t, b, http.MethodGet, "/app", nil, a, in.Session.ID)
}
