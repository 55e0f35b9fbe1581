package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/go-chi/chi/v5"

	openapi "github.com/authsvc/authsvc/api"
	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/model"
	"github.com/authsvc/authsvc/internal/twofactor"
)

// TestContract drives the real router through every operation of the
// OpenAPI document and checks each request and answer against it: an
// answer with a status, header or body the document does not describe
// fails, as does an operation no request reached and a route of the
// router the document lacks.
func TestContract(t *testing.T) {
	sp := loadSpec(t)
	eachStore(t, func(t *testing.T, open func(*testing.T) db.Store) {
		c := &contract{t: t, spec: sp, seen: map[string]map[int]bool{}}
		e := newEnv(t, open(t))
		c.watch(e)
		lim := newEnv(t, open(t), func(o *Options) { o.SignupsPerIP, o.LoginFailuresPerIP = 1, 2 })
		c.watch(lim)
		checkRoutes(t, sp.doc, e.srv.router)

		c.operations(e)
		c.preflights(e)
		c.account(e)
		c.sessions(e)
		c.authorize(e)
		c.twoFactor(e)
		c.refusals(e)
		c.throttles(e, lim)
		c.lateAnswers(e) // last: it moves the clock and closes the store
		c.verifyCoverage()
	})
}

// spec is the OpenAPI document and a router over its paths.
type spec struct {
	doc    *openapi3.T
	router routers.Router
}

// loadSpec loads and validates the embedded document.
func loadSpec(t *testing.T) *spec {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document)
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route the OpenAPI document: %v", err)
	}
	// The validator decodes bodies by media type; the QR code is opaque.
	openapi3filter.RegisterBodyDecoder("image/png", openapi3filter.FileBodyDecoder)
	t.Cleanup(func() { openapi3filter.UnregisterBodyDecoder("image/png") })
	return &spec{doc: doc, router: router}
}

// contract checks every exchange with a Server against the document and
// records the statuses seen for each of the document's operations.
type contract struct {
	t    *testing.T
	spec *spec
	seen map[string]map[int]bool // "METHOD /path" of the document to statuses
	last exchange
}

// exchange is what the document made of the latest request.
type exchange struct {
	op     string // "METHOD /path" of the document; "" if it has no such route
	status int
	reqErr error // why the document refuses the request; nil if it accepts it
}

// watch routes every request e serves through c, and has e serve the real
// document at /openapi.yaml.
func (c *contract) watch(e *env) {
	e.srv.openapi = openapi.Document
	e.srv.router = checkedRouter{Router: e.srv.router, c: c}
}

// checkedRouter stands in for a Server's router: it serves each request
// with the real one and checks the exchange on the way back.
type checkedRouter struct {
	chi.Router
	c *contract
}

func (cr checkedRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		cr.c.t.Errorf("%s %s: read the request body: %v", r.Method, r.URL.Path, err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	shadow := r.Clone(r.Context())

	rec := httptest.NewRecorder()
	cr.Router.ServeHTTP(rec, r)
	res := rec.Result()
	maps.Copy(w.Header(), res.Header)
	w.WriteHeader(res.StatusCode)
	w.Write(rec.Body.Bytes())

	cr.c.check(shadow, body, res, rec.Body.Bytes())
}

// check validates one exchange against the document.
func (c *contract) check(r *http.Request, reqBody []byte, res *http.Response, resBody []byte) {
	t := c.t
	ctx := t.Context()
	c.last = exchange{status: res.StatusCode}
	name := r.Method + " " + r.URL.RequestURI()

	// Find the operation, and count the status as seen for it.
	escapeRemainder(r)
	route, params, err := c.spec.router.FindRoute(r)
	if err != nil {
		c.checkUnrouted(r, err, res, resBody)
		return
	}
	c.last.op = r.Method + " " + route.Path
	if c.seen[c.last.op] == nil {
		c.seen[c.last.op] = map[int]bool{}
	}
	c.seen[c.last.op][res.StatusCode] = true

	opts := &openapi3filter.Options{
		// Whether a credential is good is the server's to say; the
		// document only says where credentials go.
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus: true,
	}
	opts.WithCustomSchemaErrorFunc(shortSchemaError)
	// The validator reads the body more than once when it checks security.
	r.GetBody = func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(reqBody)), nil
	}
	r.Body, _ = r.GetBody()
	in := &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route, Options: opts,
	}
	// A request the document refuses may still be one the server refuses
	// for the same reason; accepting it is a disagreement.
	c.last.reqErr = openapi3filter.ValidateRequest(ctx, in)
	if c.last.reqErr != nil && res.StatusCode < 400 {
		t.Errorf("%s (%s) answered %d to a request the document refuses: %v",
			name, c.last.op, res.StatusCode, c.last.reqErr)
	}

	if r.Method == http.MethodHead {
		// The validator passes every answer to HEAD; check its status and
		// headers as those of a GET to the same operation, without a body.
		get := r.Clone(ctx)
		get.Method = http.MethodGet
		in = &openapi3filter.RequestValidationInput{
			Request: get, PathParams: params, Route: route, Options: opts,
		}
		opts.ExcludeResponseBody = true
	}
	err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
		Body: io.NopCloser(bytes.NewReader(resBody)), Options: opts,
	})
	if err != nil {
		t.Errorf("%s (%s) answered %d, which the document does not allow: %v",
			name, c.last.op, res.StatusCode, err)
	}
}

// shortSchemaError names where a value breaks its schema and why, without
// printing the whole schema.
func shortSchemaError(err *openapi3.SchemaError) string {
	return fmt.Sprintf("at /%s: %s", strings.Join(err.JSONPointer(), "/"), err.Reason)
}

// escapeRemainder escapes the slashes of the remainder of a path below
// /v1/authorize/. The document's {path} there is any remainder, but the
// router takes a path parameter to be one segment of the escaped path.
func escapeRemainder(r *http.Request) {
	const prefix = "/v1/authorize/"
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok || !strings.Contains(rest, "/") {
		return
	}
	u := *r.URL
	u.RawPath = prefix + url.PathEscape(rest)
	r.URL = &u
}

// checkUnrouted checks the answer to a request the document has no
// operation for: 404 for an unknown path and 405 for a method a known path
// does not serve, each the generic response under components.
func (c *contract) checkUnrouted(r *http.Request, findErr error, res *http.Response, body []byte) {
	t := c.t
	status, name := http.StatusNotFound, "NotFound"
	if errors.Is(findErr, routers.ErrMethodNotAllowed) {
		status, name = http.StatusMethodNotAllowed, "MethodNotAllowed"
	}
	if res.StatusCode != status {
		t.Errorf("%s %s is not in the document (%v) but answered %d, want %d",
			r.Method, r.URL.Path, findErr, res.StatusCode, status)
		return
	}
	generic := *c.spec.doc.Components.Responses[name].Value
	if p := r.URL.Path; p != "/v1" && !strings.HasPrefix(p, "/v1/") {
		// Outside /v1 the generic answers come without the /v1 headers.
		generic.Headers = openapi3.Headers{"X-Request-Id": generic.Headers["X-Request-Id"]}
	}
	op := openapi3.NewOperation()
	op.Responses = openapi3.NewResponses(
		openapi3.WithStatus(status, &openapi3.ResponseRef{Value: &generic}))
	route := &routers.Route{Spec: c.spec.doc, Path: r.URL.Path, Method: r.Method, Operation: op}
	opts := &openapi3filter.Options{IncludeResponseStatus: true}
	opts.WithCustomSchemaErrorFunc(shortSchemaError)
	err := openapi3filter.ValidateResponse(t.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: r, Route: route, Options: opts,
		},
		Status: res.StatusCode, Header: res.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: opts,
	})
	if err != nil {
		t.Errorf("%s %s answered %d unlike the document's %s: %v",
			r.Method, r.URL.Path, res.StatusCode, name, err)
	}
}

// verifyCoverage fails for every operation of the document that no
// request reached, and logs the statuses it lists that were not seen.
func (c *contract) verifyCoverage() {
	t := c.t
	doc := c.spec.doc
	unseen := map[string][]string{} // listed statuses never answered to operations
	for _, path := range doc.Paths.InMatchingOrder() {
		ops := doc.Paths.Value(path).Operations()
		for _, method := range slices.Sorted(maps.Keys(ops)) {
			key := method + " " + path
			seen := c.seen[key]
			if len(seen) == 0 {
				t.Errorf("no request exercised %s of the document", key)
				continue
			}
			var missing []string
			for _, code := range slices.Sorted(maps.Keys(ops[method].Responses.Map())) {
				if n, err := strconv.Atoi(code); err != nil || !seen[n] {
					missing = append(missing, code)
				}
			}
			if len(missing) > 0 {
				codes := strings.Join(missing, " ")
				unseen[codes] = append(unseen[codes], key)
			}
		}
	}
	for _, codes := range slices.Sorted(maps.Keys(unseen)) {
		t.Logf("never answered %s by %d operations: %s", codes, len(unseen[codes]),
			strings.Join(unseen[codes], ", "))
	}
}

// pathItemMethods are the methods an OpenAPI 3.1 path item can describe.
var pathItemMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"}

// checkRoutes fails for every route of the router the document lacks.
func checkRoutes(t *testing.T, doc *openapi3.T, r chi.Routes) {
	t.Helper()
	err := chi.Walk(r, func(method, route string, _ http.Handler,
		_ ...func(http.Handler) http.Handler) error {
		path := route
		if p, ok := strings.CutSuffix(route, "/*"); ok {
			path = p + "/{path}"
		}
		item := doc.Paths.Value(path)
		switch {
		case item == nil:
			t.Errorf("the router serves %s %s; the document has no such path", method, route)
		case !slices.Contains(pathItemMethods, method) && strings.HasPrefix(path, "/v1/authorize"):
			// A 3.1 path item has no field for CONNECT or QUERY; the
			// document says in words that the gateway route takes any method.
		case item.GetOperation(method) == nil:
			t.Errorf("the router serves %s %s; the document does not list that method",
				method, route)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the routes: %v", err)
	}
}

// step is a request and the answer the server must give it.
type step struct {
	name   string
	req    req
	status int
	code   string
	// refused says that the document's schemas refuse the request as well,
	// as they should for a body or parameter of the wrong shape.
	refused bool
}

// run sends each step and checks the answer and the document's verdict on
// the request.
func (c *contract) run(e *env, steps ...step) {
	t := c.t
	t.Helper()
	for _, s := range steps {
		r := e.do(s.req)
		if r.StatusCode != s.status || s.code != "" && r.json["code"] != s.code {
			t.Errorf("%s: %s %s answered %d %v, want %d %s; body %s", s.name,
				s.req.method, s.req.path, r.StatusCode, r.json["code"], s.status, s.code, r.raw)
			continue
		}
		if refused := c.last.reqErr != nil; refused != s.refused {
			t.Errorf("%s: the document refuses the request: %v, want %v (%v)",
				s.name, refused, s.refused, c.last.reqErr)
		}
	}
}

// creds is a signup or login body; transport "" leaves it out.
func creds(email, pw, transport string) map[string]string {
	b := map[string]string{"email": email, "password": pw}
	if transport != "" {
		b["session_transport"] = transport
	}
	return b
}

// wrongCode is a six-digit code that is not code.
func wrongCode(code string) string {
	return fmt.Sprintf("%06d", (atoi(code)+500000)%1000000)
}

const newPass = "a different battery staple"

// operations covers the endpoints outside /v1 and the generic answers.
func (c *contract) operations(e *env) {
	c.run(e,
		step{name: "healthz", req: req{method: "GET", path: "/healthz"}, status: 200},
		step{name: "readyz", req: req{method: "GET", path: "/readyz"}, status: 200},
		step{name: "metrics", req: req{method: "GET", path: "/metrics"}, status: 200},
		step{name: "unknown path in /v1", req: req{method: "GET", path: "/v1/nothing"},
			status: 404, code: "not_found"},
		step{name: "unknown path", req: req{method: "GET", path: "/nothing"},
			status: 404, code: "not_found"},
		step{name: "unserved method in /v1", req: req{method: "PUT", path: "/v1/session"},
			status: 405, code: "method_not_allowed"},
		step{name: "unserved method", req: req{method: "POST", path: "/healthz"},
			status: 405, code: "method_not_allowed"},
	)
	r := e.do(req{method: "GET", path: "/openapi.yaml"}).want(c.t, 200, "")
	if !bytes.Equal(r.raw, openapi.Document) {
		c.t.Error("/openapi.yaml does not serve the embedded document")
	}
}

// preflights sends a CORS preflight, and a plain OPTIONS, to every /v1
// path that has them.
func (c *contract) preflights(e *env) {
	var steps []step
	for _, path := range c.spec.doc.Paths.InMatchingOrder() {
		item := c.spec.doc.Paths.Value(path)
		if item.Options == nil || !strings.HasPrefix(path, "/v1/") ||
			strings.HasPrefix(path, "/v1/authorize") {
			continue
		}
		p := strings.ReplaceAll(path, "{id}", "some-id")
		steps = append(steps,
			step{name: "preflight", req: req{method: "OPTIONS", path: p, header: map[string]string{
				"Origin": testOrigin, "Access-Control-Request-Method": "POST",
			}}, status: 204},
			step{name: "preflight from elsewhere", req: req{method: "OPTIONS", path: p,
				header: map[string]string{
					"Origin":                        "https://elsewhere.example",
					"Access-Control-Request-Method": "DELETE",
				}}, status: 204},
			step{name: "plain OPTIONS", req: req{method: "OPTIONS", path: p},
				status: 405, code: "method_not_allowed"},
		)
	}
	c.run(e, steps...)
}

// account covers signup, login, session, reauthenticate, password and
// logout with both transports.
func (c *contract) account(e *env) {
	t := c.t
	ann := e.signup("ann@example.com")
	r := e.do(req{method: "POST", path: "/v1/signup",
		body: creds("bea@example.com", goodPass, "")}).want(t, 201, "")
	bea := r.sessionCookie()
	if bea == nil {
		t.Fatal("a cookie signup set no session cookie")
	}
	second := e.login("ann@example.com").want(t, 200, "").str("session_token")
	r = e.do(req{method: "POST", path: "/v1/login",
		body: creds("bea@example.com", goodPass, "cookie")}).want(t, 200, "")
	if r.sessionCookie() == nil {
		t.Fatal("a cookie login set no session cookie")
	}

	// Wrong passwords here stay far below the account's and the address's
	// limits.
	c.run(e,
		step{name: "session by token", req: req{method: "GET", path: "/v1/session",
			token: ann.token}, status: 200},
		step{name: "session by cookie", req: req{method: "GET", path: "/v1/session",
			cookie: bea.Value}, status: 200},
		step{name: "email taken", req: req{method: "POST", path: "/v1/signup",
			body: creds("ANN@example.com", goodPass, "bearer")}, status: 409, code: "email_taken"},
		step{name: "weak password", req: req{method: "POST", path: "/v1/signup",
			body: creds("cy@example.com", "password", "bearer")}, status: 422,
			code: "weak_password"},
		step{name: "wrong password", req: req{method: "POST", path: "/v1/login",
			body: creds("ann@example.com", newPass, "bearer")}, status: 401,
			code: "invalid_credentials"},
		step{name: "wrong password to reauthenticate", req: req{method: "POST",
			path: "/v1/reauthenticate", token: ann.token,
			body: map[string]string{"password": newPass}}, status: 422,
			code: "invalid_credentials"},
		step{name: "wrong current password", req: req{method: "POST", path: "/v1/password",
			token: ann.token, body: map[string]string{
				"current_password": newPass, "new_password": newPass,
			}}, status: 422, code: "invalid_credentials"},
		step{name: "weak new password", req: req{method: "POST", path: "/v1/password",
			token: ann.token, body: map[string]string{
				"current_password": goodPass, "new_password": "short",
			}}, status: 422, code: "weak_password"},
	)

	// Both rotate the token; the password change also revokes the rest.
	r = e.do(req{method: "POST", path: "/v1/reauthenticate", token: ann.token,
		body: map[string]string{"password": goodPass}}).want(t, 200, "")
	ann.token = r.str("session_token")
	r = e.do(req{method: "POST", path: "/v1/password", token: ann.token,
		body: map[string]string{"current_password": goodPass, "new_password": newPass}})
	ann.token = r.want(t, 200, "").str("session_token")

	c.run(e,
		step{name: "session revoked by the password change", req: req{method: "GET",
			path: "/v1/session", token: second}, status: 401, code: "unauthenticated"},
		step{name: "logout", req: req{method: "POST", path: "/v1/logout", token: ann.token},
			status: 204},
		step{name: "logout again", req: req{method: "POST", path: "/v1/logout",
			token: ann.token}, status: 401, code: "unauthenticated"},
		step{name: "cookie logout", req: req{method: "POST", path: "/v1/logout",
			cookie: bea.Value}, status: 204},
	)
}

// sessions covers listing and revoking sessions.
func (c *contract) sessions(e *env) {
	t := c.t
	eva := e.signup("eva@example.com")
	other := e.login("eva@example.com").want(t, 200, "")
	third := e.login("eva@example.com").want(t, 200, "").str("session_token")
	c.run(e,
		step{name: "list", req: req{method: "GET", path: "/v1/sessions", token: eva.token},
			status: 200},
		step{name: "revoke one", req: req{method: "DELETE",
			path: "/v1/sessions/" + other.str("session", "id"), token: eva.token}, status: 204},
		step{name: "revoke an unknown one", req: req{method: "DELETE",
			path: "/v1/sessions/no-such-session", token: eva.token},
			status: 404, code: "not_found"},
		step{name: "revoke the others", req: req{method: "DELETE", path: "/v1/sessions",
			token: eva.token}, status: 204},
		step{name: "revoked", req: req{method: "GET", path: "/v1/session", token: third},
			status: 401, code: "unauthenticated"},
	)

	// Revoking one's own cookie session is a logout.
	r := e.do(req{method: "POST", path: "/v1/login",
		body: creds("eva@example.com", goodPass, "")}).want(t, 200, "")
	c.run(e, step{name: "revoke one's own", req: req{method: "DELETE",
		path: "/v1/sessions/" + r.str("session", "id"), cookie: r.sessionCookie().Value},
		status: 204})
}

// authorize covers the gateway's subrequest with every listed method, on
// the bare path and below it.
func (c *contract) authorize(e *env) {
	t := c.t
	cal := e.signup("cal@example.com")
	r := e.do(req{method: "POST", path: "/v1/login",
		body: creds("cal@example.com", goodPass, "")}).want(t, 200, "")
	cookie := r.sessionCookie().Value

	// Every method the document lists, by token and by cookie, with and
	// without a session and a requirement the user does or cannot meet.
	var steps []step
	for _, path := range authorizePaths {
		for _, m := range pathItemMethods {
			steps = append(steps,
				step{name: "authorize", req: req{method: m, path: path, token: cal.token},
					status: 200},
				step{name: "authorize by cookie", req: req{method: m, path: path,
					cookie: cookie}, status: 200},
				step{name: "authorize without a session", req: req{method: m, path: path},
					status: 401, code: "unauthenticated"},
				step{name: "second factor required", req: req{method: m,
					path: path + "?require=two_factor", token: cal.token},
					status: 403, code: "two_factor_enrollment_required"},
				step{name: "second factor required by header", req: req{method: m,
					path: path, token: cal.token,
					header: map[string]string{"X-Auth-Require": "two_factor"}},
					status: 403, code: "two_factor_enrollment_required"},
				step{name: "unknown requirement", req: req{method: m,
					path: path + "?require=password", token: cal.token},
					status: 400, code: "invalid_request", refused: true},
			)
		}
	}
	c.run(e, steps...)
	c.run(e, step{name: "a preflight to the gateway route is a subrequest", req: req{
		method: "OPTIONS", path: "/v1/authorize", header: map[string]string{
			"Origin": testOrigin, "Access-Control-Request-Method": "GET",
		}}, status: 401, code: "unauthenticated"})
}

// authorizePaths are the gateway route and a path below it.
var authorizePaths = []string{"/v1/authorize", "/v1/authorize/app/v2/items"}

// twoFactor covers setup, enable, recovery codes, verify, recovery and
// disable, with their conflicts and wrong codes.
func (c *contract) twoFactor(e *env) {
	t := c.t
	// Without a factor every endpoint but setup has nothing to act on.
	dan := e.signup("dan@example.com")
	someCode := map[string]string{"code": "123456"}
	someRecovery := map[string]string{"code": "aaaa-aaaa-aaaa-aaaa"}
	c.run(e,
		step{name: "enable without setup", req: req{method: "POST", path: "/v1/2fa/totp/enable",
			token: dan.token, body: someCode}, status: 409, code: "two_factor_setup_required"},
		step{name: "new recovery codes without a factor", req: req{method: "POST",
			path: "/v1/2fa/recovery-codes", token: dan.token},
			status: 409, code: "two_factor_not_enabled"},
		step{name: "disable without a factor", req: req{method: "POST",
			path: "/v1/2fa/totp/disable", token: dan.token, body: someCode},
			status: 409, code: "two_factor_not_enabled"},
		step{name: "verify without a factor", req: req{method: "POST",
			path: "/v1/2fa/totp/verify", token: dan.token, body: someCode},
			status: 409, code: "two_factor_not_enabled"},
		step{name: "recovery without a factor", req: req{method: "POST",
			path: "/v1/2fa/recovery", token: dan.token, body: someRecovery},
			status: 409, code: "two_factor_not_enabled"},
	)

	// Setup answers the QR code or JSON; the JSON one is confirmed, first
	// with a wrong code, which is the only failure the count holds.
	r := e.do(req{method: "POST", path: "/v1/2fa/totp/setup", token: dan.token,
		header: map[string]string{"Accept": "image/png"}}).want(t, 200, "")
	if ct := r.Header.Get("Content-Type"); ct != "image/png" {
		t.Errorf("setup asked for a PNG answered %q", ct)
	}
	r = e.do(req{method: "POST", path: "/v1/2fa/totp/setup", token: dan.token,
		body: map[string]string{}}).want(t, 200, "")
	secret := decodeSecret(t, r.str("secret"))
	good := twofactor.Code(secret, twofactor.Step(e.clock.now()))
	c.run(e, step{name: "enable with a wrong code", req: req{method: "POST",
		path: "/v1/2fa/totp/enable", token: dan.token,
		body: map[string]string{"code": wrongCode(good)}}, status: 422, code: "invalid_otp"})
	r = e.do(req{method: "POST", path: "/v1/2fa/totp/enable", token: dan.token,
		body: map[string]string{"code": good}}).want(t, 200, "")
	dan.token = r.str("session_token")
	r = e.do(req{method: "POST", path: "/v1/2fa/recovery-codes", token: dan.token}).
		want(t, 200, "")
	var codes []string
	for _, v := range r.json["recovery_codes"].([]any) {
		codes = append(codes, v.(string))
	}

	// A login is partial now. The enabling code used up the current step,
	// so verify takes the next one; recovery and disable use the codes.
	p := e.login("dan@example.com").want(t, 200, "")
	if p.json["two_factor_required"] != true {
		t.Fatalf("login with a second factor: %s", p.raw)
	}
	pt := p.str("session_token")
	next := twofactor.Code(secret, twofactor.Step(e.clock.now())+1)
	c.run(e,
		step{name: "already verified", req: req{method: "POST", path: "/v1/2fa/totp/verify",
			token: dan.token, body: someCode}, status: 409, code: "already_verified"},
		step{name: "partial session", req: req{method: "GET", path: "/v1/session",
			token: pt}, status: 200},
		step{name: "verify with a wrong code", req: req{method: "POST",
			path: "/v1/2fa/totp/verify", token: pt,
			body: map[string]string{"code": wrongCode(next)}}, status: 422, code: "invalid_otp"},
		step{name: "verify", req: req{method: "POST", path: "/v1/2fa/totp/verify",
			token: pt, body: map[string]string{"code": next}}, status: 200},
	)
	pt = e.login("dan@example.com").want(t, 200, "").str("session_token")
	c.run(e,
		step{name: "wrong recovery code", req: req{method: "POST", path: "/v1/2fa/recovery",
			token: pt, body: someRecovery}, status: 422, code: "invalid_recovery_code"},
		step{name: "recovery", req: req{method: "POST", path: "/v1/2fa/recovery",
			token: pt, body: map[string]string{"code": codes[0]}}, status: 200},
		step{name: "disable with a wrong code", req: req{method: "POST",
			path: "/v1/2fa/totp/disable", token: dan.token,
			body: map[string]string{"code": wrongCode(next)}}, status: 422, code: "invalid_otp"},
		step{name: "disable", req: req{method: "POST", path: "/v1/2fa/totp/disable",
			token: dan.token, body: map[string]string{"code": codes[1]}}, status: 204},
	)
}

// sessionOp is an operation that needs a session, with a request body the
// document accepts.
type sessionOp struct {
	method, path string
	body         any
	need         access // partial or full
	recent       bool   // needs a recent password
}

func sessionOps() []sessionOp {
	code := map[string]string{"code": "123456"}
	return []sessionOp{
		{"POST", "/v1/logout", nil, partial, false},
		{"GET", "/v1/session", nil, partial, false},
		{"POST", "/v1/2fa/totp/verify", code, partial, false},
		{"POST", "/v1/2fa/recovery", map[string]string{"code": "aaaa-aaaa-aaaa-aaaa"},
			partial, false},
		{"POST", "/v1/reauthenticate", map[string]string{"password": goodPass}, full, false},
		{"POST", "/v1/password", map[string]string{
			"current_password": goodPass, "new_password": newPass,
		}, full, false},
		{"GET", "/v1/authorize", nil, full, false},
		{"POST", "/v1/2fa/totp/setup", nil, full, true},
		{"POST", "/v1/2fa/totp/enable", code, full, true},
		{"POST", "/v1/2fa/recovery-codes", nil, full, true},
		{"POST", "/v1/2fa/totp/disable", code, full, true},
		{"GET", "/v1/sessions", nil, full, false},
		{"DELETE", "/v1/sessions", nil, full, true},
		{"DELETE", "/v1/sessions/some-id", nil, full, false},
	}
}

// bodyOps are the operations that read a body, each with one the document
// accepts.
func bodyOps() []sessionOp {
	ops := []sessionOp{
		{method: "POST", path: "/v1/signup", body: creds("new@example.com", goodPass, "")},
		{method: "POST", path: "/v1/login", body: creds("new@example.com", goodPass, "")},
	}
	for _, op := range sessionOps() {
		if op.method == "POST" && op.path != "/v1/logout" {
			if op.body == nil {
				op.body = map[string]string{}
			}
			ops = append(ops, op)
		}
	}
	return ops
}

// refusals covers the answers that come before an endpoint's own logic:
// 413, 415, 401, 403 forbidden_origin, 401 two_factor_required and 400.
func (c *contract) refusals(e *env) {
	t := c.t
	fay := e.signup("fay@example.com")
	r := e.do(req{method: "POST", path: "/v1/signup",
		body: creds("gus@example.com", goodPass, "")}).want(t, 201, "")
	gus := r.sessionCookie().Value
	hal := e.signup("hal@example.com")
	e.enableTOTP(hal)
	partialHal := e.login("hal@example.com").want(t, 200, "").str("session_token")
	crossSite := map[string]string{
		"Sec-Fetch-Site": "cross-site", "Origin": "https://elsewhere.example",
	}

	// Size and media type come first, before any credential is looked at.
	// The document does not bound the size, so the large body is one it
	// accepts; a text/plain body it refuses as the server does.
	var steps []step
	for _, op := range bodyOps() {
		big := map[string]string{"padding": strings.Repeat("x", maxBody)}
		maps.Copy(big, op.body.(map[string]string))
		steps = append(steps,
			step{name: "too large", req: req{method: op.method, path: op.path, body: big},
				status: 413, code: "payload_too_large"},
			step{name: "not JSON", req: req{method: op.method, path: op.path, body: op.body,
				header: map[string]string{"Content-Type": "text/plain"}},
				status: 415, code: "unsupported_media_type", refused: true},
		)
	}
	// Then the session: missing or unknown, used cross-site by cookie, or
	// partial where a full one is needed.
	for _, op := range sessionOps() {
		steps = append(steps,
			step{name: "no session", req: req{method: op.method, path: op.path, body: op.body},
				status: 401, code: "unauthenticated"},
			step{name: "unknown token", req: req{method: op.method, path: op.path,
				body: op.body, token: strings.Repeat("A", 43)},
				status: 401, code: "unauthenticated"},
		)
		if unsafeMethod(op.method) {
			steps = append(steps, step{name: "cross-site cookie", req: req{method: op.method,
				path: op.path, body: op.body, cookie: gus, header: crossSite},
				status: 403, code: "forbidden_origin"})
		}
		if op.need == full {
			steps = append(steps, step{name: "partial session", req: req{method: op.method,
				path: op.path, body: op.body, token: partialHal},
				status: 401, code: "two_factor_required"})
		}
	}
	for _, path := range []string{"/v1/signup", "/v1/login"} {
		steps = append(steps, step{name: "cross-site cookie transport", req: req{
			method: "POST", path: path, body: creds("ivy@example.com", goodPass, ""),
			header: crossSite}, status: 403, code: "forbidden_origin"})
	}
	c.run(e, steps...)

	// Malformed bodies. Where the document's schema can tell (a wrong type,
	// a missing member, a value outside an enum) it must refuse them too;
	// a malformed email or a repeated key it cannot see.
	malformed := func(name, path, token, body string, refused bool) step {
		return step{name: name, req: req{method: "POST", path: path, token: token, body: body},
			status: 400, code: "invalid_request", refused: refused}
	}
	c.run(e,
		malformed("wrong type", "/v1/signup", "", `{"email":1,"password":"x"}`, true),
		malformed("not an object", "/v1/signup", "", `["x"]`, true),
		malformed("malformed email", "/v1/signup", "",
			`{"email":"not an address","password":"`+goodPass+`"}`, false),
		malformed("a key twice", "/v1/signup", "",
			`{"email":"jay@example.com","email":"kay@example.com","password":"x"}`, false),
		malformed("unknown transport", "/v1/login", "",
			`{"email":"fay@example.com","password":"x","session_transport":"carrier"}`, true),
		malformed("no password", "/v1/reauthenticate", fay.token, `{}`, true),
		malformed("no new password", "/v1/password", fay.token,
			`{"current_password":"x"}`, true),
		malformed("no code", "/v1/2fa/totp/enable", fay.token, `{}`, true),
		malformed("no code", "/v1/2fa/totp/verify", partialHal, `{}`, true),
		malformed("code not a string", "/v1/2fa/recovery", partialHal, `{"code":7}`, true),
		malformed("no code", "/v1/2fa/totp/disable", fay.token, `{"cod":"123456"}`, true),
	)
}

// throttles covers every 429: the second-factor back-off of an account,
// and the per-address limits of lim.
func (c *contract) throttles(e, lim *env) {
	t := c.t
	ida := e.signup("ida@example.com")
	e.enableTOTP(ida)
	pt := e.login("ida@example.com").want(t, 200, "").str("session_token")
	// After the free failures every second-factor endpoint makes the
	// account wait, whatever the code.
	claimFailures(t, e, ida.id, freeFailures)
	code := map[string]string{"code": "123456"}
	c.run(e,
		step{name: "enable", req: req{method: "POST", path: "/v1/2fa/totp/enable",
			token: ida.token, body: code}, status: 429, code: "rate_limited"},
		step{name: "disable", req: req{method: "POST", path: "/v1/2fa/totp/disable",
			token: ida.token, body: code}, status: 429, code: "rate_limited"},
		step{name: "verify", req: req{method: "POST", path: "/v1/2fa/totp/verify",
			token: pt, body: code}, status: 429, code: "rate_limited"},
		step{name: "recovery", req: req{method: "POST", path: "/v1/2fa/recovery",
			token: pt, body: code}, status: 429, code: "rate_limited"},
	)

	// lim allows one signup and two failed passwords per address; the
	// spent password budget also stops reauthenticate and password.
	jo := lim.signup("jo@example.com")
	wrong := creds("jo@example.com", newPass, "bearer")
	c.run(lim,
		step{name: "second signup", req: req{method: "POST", path: "/v1/signup",
			body: creds("kai@example.com", goodPass, "bearer")},
			status: 429, code: "rate_limited"},
		step{name: "wrong password", req: req{method: "POST", path: "/v1/login", body: wrong},
			status: 401, code: "invalid_credentials"},
		step{name: "wrong password", req: req{method: "POST", path: "/v1/login", body: wrong},
			status: 401, code: "invalid_credentials"},
		step{name: "login", req: req{method: "POST", path: "/v1/login",
			body: creds("jo@example.com", goodPass, "bearer")},
			status: 429, code: "rate_limited"},
		step{name: "reauthenticate", req: req{method: "POST", path: "/v1/reauthenticate",
			token: jo.token, body: map[string]string{"password": goodPass}},
			status: 429, code: "rate_limited"},
		step{name: "password", req: req{method: "POST", path: "/v1/password",
			token: jo.token, body: map[string]string{
				"current_password": goodPass, "new_password": newPass,
			}}, status: 429, code: "rate_limited"},
	)
}

// lateAnswers covers what takes time or an outage: a stale password
// proof, draining, and a database that is gone.
func (c *contract) lateAnswers(e *env) {
	// The password lee proved at signup stops being recent.
	lee := e.signup("lee@example.com")
	e.clock.advance(recentPassword + time.Second)
	var steps []step
	for _, op := range sessionOps() {
		if op.recent {
			steps = append(steps, step{name: "stale password", req: req{method: op.method,
				path: op.path, body: op.body, token: lee.token},
				status: 403, code: "reauthentication_required"})
		}
	}
	c.run(e, steps...)

	e.srv.Drain()
	c.run(e, step{name: "draining", req: req{method: "GET", path: "/readyz"},
		status: 503, code: "unavailable"})

	// An error the server cannot place is a 500 without details.
	e.srv.store = failingStore{e.store}
	c.run(e, step{name: "store failure", req: req{method: "GET", path: "/v1/sessions",
		token: lee.token}, status: 500, code: "internal_error"})
	e.srv.store = e.store

	// With the store closed every endpoint that needs the database
	// answers 503; the test's cleanup closes it again, which is harmless.
	e.store.Close()
	steps = nil
	for _, op := range append(sessionOps(), bodyOps()[:2]...) {
		steps = append(steps, step{name: "database gone", req: req{method: op.method,
			path: op.path, body: op.body, token: lee.token}, status: 503, code: "unavailable"})
	}
	for _, path := range authorizePaths {
		for _, m := range pathItemMethods {
			steps = append(steps, step{name: "database gone", req: req{method: m,
				path: path, token: lee.token}, status: 503, code: "unavailable"})
		}
	}
	c.run(e, steps...)
}

// failingStore fails to list sessions with an error of no known kind.
type failingStore struct{ db.Store }

func (failingStore) ListSessions(context.Context, string, time.Time) ([]*model.Session, error) {
	return nil, errors.New("the disk is on fire")
}
