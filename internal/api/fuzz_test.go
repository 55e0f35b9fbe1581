package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/db/dbtest"
)

// The fuzz targets in this file feed outside input to every decoder of the
// HTTP layer, and to the whole router. Each one checks its property against
// a reading the test makes on its own, not by calling the code under test
// a second time. Inputs that once failed are kept under testdata/fuzz, so
// that a plain `go test` runs them again.

// wantProblem fails unless err is a *Problem with the given status and,
// when code is not empty, the given code.
func wantProblem(t *testing.T, err error, status int, code string) {
	t.Helper()
	p, ok := asProblem(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *Problem", err, err)
	}
	if p.Status != status || (code != "" && p.Code != code) {
		t.Fatalf("problem %d %s, want %d %s", p.Status, p.Code, status, code)
	}
}

// jsonMembers is the test's own reading of a request body: the members of
// the top-level value when it is an object, whether the body is exactly
// one well-formed JSON value in valid UTF-8, and whether any object at any
// depth names a key twice.
func jsonMembers(body []byte) (members map[string]any, wellFormed, dup bool) {
	if !utf8.Valid(body) || !json.Valid(body) {
		return nil, false, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	v, dup, err := jsonValue(dec)
	if err != nil {
		return nil, false, false
	}
	members, _ = v.(map[string]any)
	return members, true, dup
}

// jsonValue reads one value from dec, recursively, and reports whether an
// object inside it repeats a key.
func jsonValue(dec *json.Decoder) (any, bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, false, err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return tok, false, nil
	}
	dup := false
	switch delim {
	case '{':
		obj := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, false, err
			}
			key, ok := kt.(string)
			if !ok {
				return nil, false, fmt.Errorf("object key %v is not a string", kt)
			}
			v, inner, err := jsonValue(dec)
			if err != nil {
				return nil, false, err
			}
			if _, seen := obj[key]; seen {
				dup = true
			}
			obj[key] = v
			dup = dup || inner
		}
		_, err = dec.Token()
		return obj, dup, err
	case '[':
		var arr []any
		for dec.More() {
			v, inner, err := jsonValue(dec)
			if err != nil {
				return nil, false, err
			}
			arr = append(arr, v)
			dup = dup || inner
		}
		_, err = dec.Token()
		return arr, dup, err
	}
	return nil, false, fmt.Errorf("unexpected delimiter %v", delim)
}

// FuzzDecodeObject checks decodeObject against the test's own reading of
// the body: a body is accepted exactly when it is one JSON object in valid
// UTF-8, with no key named twice at any depth, a string email and, if
// present, a string session_transport; the fields then hold the decoded
// values. Every refusal is a 400 invalid_request.
func FuzzDecodeObject(f *testing.F) {
	// Seeds: good bodies, duplicates spelled differently and nested,
	// wrong member types, trailing data, bad UTF-8 and odd numbers.
	for _, s := range []string{
		`{"email":"a@example.com","password":"x"}`,
		`{"email":"a","session_transport":"bearer"}`,
		` {"session_transport":"", "email":""} `,
		`{"email":"a","email":"b"}`,
		`{"email":"a","\u0065mail":"b"}`,
		`{"email":"a","x":{"k":1,"k":2}}`,
		`{"email":"a","x":[{"k":1},{"k":2}]}`,
		`{"email":"a","x":[{"k":1,"k":2}]}`,
		`{"email":"a","x":{"email":1},"y":{"email":2}}`,
		`{"email":1}`, `{"email":null}`, `{"email":["a"]}`, `{"email":{}}`,
		`{"email":"a","session_transport":true}`,
		`{"Email":"a"}`, `{}`, `[]`, `null`, `"email"`, ``, ` `, `{`, `}`,
		`{"email":"a"} {}`, `{"email":"a"}]`, `{"email":"a"}x`, `{"email":"a",}`,
		"{\"email\":\"\xff\"}", "{\"\xfe\":1,\"email\":\"a\"}",
		`{"email":"\ud800"}`, `{"email":"\u0000"}`, "\ufeff{\"email\":\"a\"}",
		`{"email":"a","n":1e999}`, `{"email":"a","n":-0.0e-0}`,
		`{"a":{"b":{"c":[[[{"d":[]}]]]}},"email":"x"}`,
		`{"email":"a","":1,"":2}`,
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		// A value no body can decode to shows whether a field was written.
		const unset = "\x00unset"
		email, tr := unset, unset
		err := decodeObject(body,
			field{name: "email", dst: &email, required: true},
			field{name: "session_transport", dst: &tr},
		)

		// The verdict the contract asks for, from the test's own reading.
		// A missing member reads as nil, which is not a string.
		members, wellFormed, dup := jsonMembers(body)
		wantEmail, emailOK := members["email"].(string)
		rawTr, trPresent := members["session_transport"]
		wantTr, trOK := rawTr.(string)
		accept := wellFormed && !dup && members != nil && emailOK && (!trPresent || trOK)

		if err != nil {
			wantProblem(t, err, http.StatusBadRequest, "invalid_request")
			if accept {
				t.Fatalf("refused a good body %q: %v", body, err)
			}
			return
		}
		// Accepted: say which rule was broken, if one was.
		switch {
		case !utf8.Valid(body):
			t.Fatalf("accepted invalid UTF-8 %q", body)
		case !wellFormed:
			t.Fatalf("accepted a body that is not one JSON value: %q", body)
		case dup:
			t.Fatalf("accepted a body naming a key twice: %q", body)
		case !accept:
			t.Fatalf("accepted %q without a string email or with a bad transport", body)
		}
		if email != wantEmail {
			t.Fatalf("email %q, want %q", email, wantEmail)
		}
		if !trPresent && tr != unset {
			t.Fatalf("absent session_transport changed to %q", tr)
		}
		if trPresent && tr != wantTr {
			t.Fatalf("session_transport %q, want %q", tr, wantTr)
		}
	})
}

// shortReader returns its bytes and then io.ErrUnexpectedEOF, as the body
// of a request whose connection closes before the declared length.
type shortReader struct{ r io.Reader }

func (s shortReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// jsonContentType reports whether a Content-Type value names
// application/json with no charset parameter other than utf-8. It splits
// the parameters at semicolons outside quoted strings and does not decode
// the extended (charset*=) form.
func jsonContentType(ct string) bool {
	var parts []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(ct); i++ {
		switch c := ct[i]; {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			parts = append(parts, ct[start:i])
			start = i + 1
		}
	}
	parts = append(parts, ct[start:])
	if !strings.EqualFold(strings.Trim(parts[0], " \t"), "application/json") {
		return false
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.Trim(k, " \t"), "charset") &&
			!strings.EqualFold(strings.Trim(strings.Trim(v, " \t"), `"`), "utf-8") {
			return false
		}
	}
	return true
}

// FuzzReadBody sends readBody a body as a server would deliver it: the
// payload, padded by up to 128 KiB of spaces so that the fuzzer reaches the
// limit, cut to the declared Content-Length, or ending early when the
// declared length is longer. A negative length means none was declared.
func FuzzReadBody(f *testing.F) {
	type seed struct {
		body []byte
		pad  uint32
		ct   string
		cl   int64
	}
	obj := []byte(`{"a":"b"}`)
	for _, s := range []seed{
		{obj, 0, "application/json", 9},
		{obj, 0, "application/json", -1},
		{obj, 0, "application/json; charset=utf-8", 9},
		{obj, 0, "Application/JSON ; Charset=\"UTF-8\"", 9},
		{obj, 0, "application/json; charset=latin1", 9},
		{obj, 0, "application/json; charset*=utf-8''utf-8", 9},
		{obj, 0, "application/json;;", 9},
		{obj, 0, "application/json; x", 9},
		{obj, 0, "application/json-patch+json", 9},
		{obj, 0, "application/jsonx", 9},
		{obj, 0, "text/plain", 9},
		{obj, 0, "", 9},
		{obj, 0, "application/json", 3},
		{obj, 0, "application/json", 20},
		{obj, 0, "application/json", 0},
		{nil, 0, "text/plain", 0},
		{nil, 0, "", -1},
		{obj, 0, "application/json", maxBody + 1},
		{obj, maxBody - 9, "application/json", -1},
		{obj, maxBody - 8, "application/json", -1},
		{obj, maxBody - 8, "application/json", maxBody},
		{nil, maxBody, "text/plain", -1},
		{obj, 0, "application/json", -1 << 63},
		{obj, 0, "application/json", 1<<63 - 1},
	} {
		f.Add(s.body, s.pad, s.ct, s.cl)
	}

	f.Fuzz(func(t *testing.T, payload []byte, pad uint32, ct string, cl int64) {
		// What a server would hand the handler: the payload cut to the
		// declared length, or all of it followed by an error when the
		// client stops short.
		payload = append(payload, bytes.Repeat([]byte(" "), int(pad%(2*maxBody)))...)
		delivered := payload
		var body io.Reader = bytes.NewReader(payload)
		short := false
		switch {
		case cl < 0:
			cl = -1
		case cl <= int64(len(payload)):
			delivered = payload[:cl]
			body = bytes.NewReader(delivered)
		default:
			short = true
			body = shortReader{bytes.NewReader(payload)}
		}
		r := httptest.NewRequest(http.MethodPost, "/v1/login", body)
		r.ContentLength = cl
		r.Header.Set("Content-Type", ct)

		got, err := readBody(r)

		// The checks in the order readBody owes them: a declared length
		// over the limit is refused unread; a broken read is a bad request;
		// an empty body needs no type; only then does the type count.
		switch {
		case cl > maxBody:
			wantProblem(t, err, http.StatusRequestEntityTooLarge, "payload_too_large")
		case short:
			wantProblem(t, err, http.StatusBadRequest, "invalid_request")
		case len(delivered) > maxBody:
			wantProblem(t, err, http.StatusRequestEntityTooLarge, "payload_too_large")
		case len(delivered) == 0:
			if err != nil || got != nil {
				t.Fatalf("empty body: got %q, %v; want nothing", got, err)
			}
		case err != nil:
			wantProblem(t, err, http.StatusUnsupportedMediaType, "unsupported_media_type")
			// The spellings clients send must never be refused.
			switch strings.ToLower(ct) {
			case "application/json", "application/json; charset=utf-8",
				"application/json;charset=utf-8":
				t.Fatalf("refused Content-Type %q", ct)
			}
		default:
			if !jsonContentType(ct) {
				t.Fatalf("accepted Content-Type %q", ct)
			}
			if !bytes.Equal(got, delivered) {
				t.Fatalf("read %d bytes, want the %d delivered", len(got), len(delivered))
			}
		}
	})
}

// cookiePairs is the test's own reading of Cookie header lines: the values
// of every name=value pair whose name is name, before any check of the
// value. The trimmed characters are those HTTP allows around a pair.
func cookiePairs(lines []string, name string) []string {
	var vals []string
	for _, line := range lines {
		for _, part := range strings.Split(line, ";") {
			k, v, _ := strings.Cut(strings.Trim(part, " \t\r\n"), "=")
			if strings.Trim(k, " \t\r\n") == name {
				vals = append(vals, v)
			}
		}
	}
	return vals
}

// plainToken reports whether s is made only of the characters of the
// tokens the server hands out.
func plainToken(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_') {
			return false
		}
	}
	return s != ""
}

// FuzzCredential sends arbitrary Authorization and Cookie headers (a
// newline in cookies splits it into several Cookie lines) through
// bearer, sessionCookie, credential and presentedToken, and checks that
// they agree with each other and with the test's reading of the headers.
func FuzzCredential(f *testing.F) {
	const name = "__Host-authsvc_session"
	tok := strings.Repeat("A", 43)
	for _, s := range [][2]string{
		{"Bearer " + tok, ""},
		{"bearer   " + tok + "  ", ""},
		{"BEARER", ""},
		{"Bearer ", name + "=" + tok},
		{"Basic dXNlcjpwdw==", name + "=" + tok},
		{"Bearer\t" + tok, ""},
		{" Bearer x y", ""},
		{"", name + "=" + tok},
		{"", name + "=\"" + tok + "\""},
		{"", name + "=a; " + name + "=b"},
		{"", name + "=a\n" + name + "=b"},
		{"", "other=1; " + name + " = " + tok + " ;x"},
		{"", "authsvc_session=" + tok},
		{"", name + "=a;b;c" + strings.Repeat(";", 3000)},
		{"", name + "=\\x"},
		{"", ";;;=;" + name},
		{"", ""},
	} {
		f.Add(s[0], s[1])
	}

	s := &Server{cookieName: name}
	f.Fuzz(func(t *testing.T, authorization, cookie string) {
		r := httptest.NewRequest(http.MethodGet, "/v1/session", nil)
		if authorization != "" {
			r.Header["Authorization"] = []string{authorization}
		}
		var lines []string
		if cookie != "" {
			lines = strings.Split(cookie, "\n")
			r.Header["Cookie"] = lines
		}

		btok, isBearer := bearer(r)
		ctok, n := s.sessionCookie(r)
		token, tr, err := s.credential(r)
		ptok, ptr, pok := s.presentedToken(r)

		// Only the Bearer scheme, in any case, yields a token, and the
		// token is the rest of the header without surrounding space.
		scheme, _, _ := strings.Cut(strings.TrimSpace(authorization), " ")
		if want := strings.EqualFold(scheme, "bearer"); isBearer != want {
			t.Fatalf("bearer(%q) = %v, want %v", authorization, isBearer, want)
		}
		if isBearer && (strings.TrimSpace(btok) != btok ||
			!strings.Contains(authorization, btok)) {
			t.Fatalf("bearer(%q) gave token %q", authorization, btok)
		}

		// net/http drops pairs with bad names or values and, past a
		// limit, every cookie; it may find fewer pairs than the test but
		// never more, and a lone plain token must be found.
		pairs := cookiePairs(lines, name)
		if n > len(pairs) {
			t.Fatalf("%d session cookies counted in %q, which names it %d times",
				n, cookie, len(pairs))
		}
		if n > 0 && !strings.Contains(cookie, ctok) {
			t.Fatalf("cookie value %q is not in %q", ctok, cookie)
		}
		if len(pairs) == 1 && plainToken(pairs[0]) && strings.Count(cookie, ";") < 100 &&
			(n != 1 || ctok != pairs[0]) {
			t.Fatalf("cookie %q: got %d cookies, value %q; want 1, %q",
				cookie, n, ctok, pairs[0])
		}

		// A bearer token wins over cookies; otherwise exactly one session
		// cookie is needed; presentedToken agrees with credential.
		switch {
		case isBearer:
			if err != nil || tr != viaBearer || token != btok {
				t.Fatalf("credential = %q, %v, %v; want the bearer token", token, tr, err)
			}
		case n == 1:
			if err != nil || tr != viaCookie || token != ctok {
				t.Fatalf("credential = %q, %v, %v; want the cookie", token, tr, err)
			}
		default:
			wantProblem(t, err, http.StatusUnauthorized, "unauthenticated")
		}
		if pok != (err == nil) || (pok && (ptok != token || ptr != tr)) {
			t.Fatalf("presentedToken = %q, %v, %v; credential = %q, %v, %v",
				ptok, ptr, pok, token, tr, err)
		}
	})
}

// FuzzOrigin checks originOf and originAllowed with arbitrary Origin,
// Referer and Sec-Fetch-Site headers, on a server that lists "null" among
// its allowed origins, so that only the explicit refusal keeps it out.
func FuzzOrigin(f *testing.F) {
	for _, s := range [][3]string{
		{testOrigin, "", ""},
		{testOrigin, "", "cross-site"},
		{"null", "", ""},
		{"null", "", "cross-site"},
		{"null", testOrigin + "/page", ""},
		{"null", "", "same-origin"},
		{"null", "", "none"},
		{"", "HTTPS://APP.EXAMPLE/x?y#z", "same-site"},
		{"", "https://app.example@evil.example/", ""},
		{"", "https://evil.example/?https://app.example", ""},
		{"", "null", ""},
		{"", "://x", ""},
		{"", "", ""},
		{"", "", "cross-site"},
		{"https://evil.example", testOrigin + "/", ""},
		{"HTTPS://APP.EXAMPLE", "", ""},
		{"", "https://app.example:443/", ""},
		{"", "javascript://app.example", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}

	s := &Server{origins: map[string]bool{testOrigin: true, "null": true}}
	f.Fuzz(func(t *testing.T, origin, referer, site string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/logout", nil)
		for k, v := range map[string]string{
			"Origin": origin, "Referer": referer, "Sec-Fetch-Site": site,
		} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}

		// An origin from a Referer is scheme://host with no path, query,
		// fragment or user info, and reading it again changes nothing.
		ro := originOf(referer)
		if ro != "" {
			scheme, host, ok := strings.Cut(ro, "://")
			if !ok || scheme == "" || host == "" || strings.ContainsAny(host, "/?#@") {
				t.Fatalf("originOf(%q) = %q", referer, ro)
			}
			if again := originOf(ro + "/path"); again != ro {
				t.Fatalf("originOf(%q) = %q, but of %q/path it is %q", referer, ro, ro, again)
			}
		}

		got := s.originAllowed(r)
		sameSite := site == "same-origin" || site == "none"
		if sameSite && !got {
			t.Fatalf("refused Sec-Fetch-Site %q", site)
		}
		if sameSite || !got {
			return
		}
		// Allowed without the browser's same-origin word: the Origin, or
		// failing it the Referer, must be listed, and "null" never counts;
		// with neither, only a request without Sec-Fetch-Site passes.
		switch {
		case origin == "null":
			t.Fatalf("allowed Origin null with Sec-Fetch-Site %q", site)
		case origin != "":
			if !s.origins[origin] {
				t.Fatalf("allowed Origin %q", origin)
			}
		case referer != "":
			if !s.origins[ro] {
				t.Fatalf("allowed Referer %q (origin %q)", referer, ro)
			}
		case site != "":
			t.Fatalf("allowed a request without Origin or Referer from site %q", site)
		}
	})
}

// FuzzWantsPNG checks the choice of the QR code image: a header that
// cannot name image/png or image/* (media types are case-insensitive) never
// selects it, and adding application/json never makes the image win.
func FuzzWantsPNG(f *testing.F) {
	for _, s := range []string{
		"image/png", "IMAGE/PNG", "image/*", "*/*", "application/json",
		"image/png, application/json", "application/json, image/png;q=1",
		"image/png;q=0.9, application/json;q=0.8", "image/png;q=0, */*",
		"image/png;q=1.5", "image/png;q=NaN", "image/png;q=-0", "image/png;q=\"1\"",
		"application/*;q=0.1, image/png;q=0.1", "text/html,image/png;q=0.5,*/*;q=0.4",
		"image/png;;", "image/png; q", "png", "image/", ",,,", "",
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, accept string) {
		// Parameters cannot hold a media type and mime.ParseMediaType
		// allows no space around the slash, so the image needs the literal
		// "image/" in some case; that implies it needs "png" or "image/".
		got := wantsPNG(accept)
		if got && !strings.Contains(strings.ToLower(accept), "image/") {
			t.Fatalf("wantsPNG(%q) selected the image", accept)
		}
		if more := accept + ", application/json"; wantsPNG(more) && !got {
			t.Fatalf("wantsPNG(%q) selected the image but not without JSON", more)
		}
	})
}

// routerMethods are the methods FuzzRouter picks from.
var routerMethods = []string{
	http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPut,
	http.MethodPatch, http.MethodHead, http.MethodOptions, "PROPFIND",
}

// Flags of a FuzzRouter input.
const (
	withToken    = 1 << iota // a signed-up account's session is sent
	asCookie                 // the credential travels as the session cookie
	withOrigin               // Origin is the allowed test origin
	notJSON                  // the body is declared text/plain
	acceptPNG                // Accept asks for the QR code image
	preflight                // Access-Control-Request-Method is set
	crossSite                // Sec-Fetch-Site is cross-site
	noCredential             // the credential string is left out
)

// validHeaderValue reports whether a server would accept v as a header
// value: no control characters other than tab.
func validHeaderValue(v string) bool {
	for _, c := range []byte(v) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// FuzzRouter sends arbitrary requests through the real router on a SQLite
// store: a method from routerMethods, any request target, any body and
// User-Agent, and a credential that is either a fresh account's session or
// the fuzzed string. No answer is a 5xx; every answer under /v1 carries
// no-store and nosniff; the gateway's endpoint never answers 405, and a
// 405 elsewhere names the allowed methods; every error is a problem
// document with a code.
func FuzzRouter(f *testing.F) {
	fuzzRouter(f, dbtest.Open(f, dbtest.SQLitePath(f)))
}

// FuzzRouterPostgres is FuzzRouter on a PostgreSQL store, which refuses
// some text SQLite keeps. It skips, or fails when PostgreSQL is required,
// as the other PostgreSQL tests do.
func FuzzRouterPostgres(f *testing.F) {
	fuzzRouter(f, dbtest.Open(f, dbtest.PostgresURL(f)))
}

// fuzzRouter seeds f and runs the checks of FuzzRouter against store.
// Each input gets a new Server, so that rate limits do not carry over,
// and, when it asks for one, a new account. So that an input answers the
// same whatever ran before it, the account fuzz@example.com always exists
// with goodPass (no single request can change its password), and
// "{unique}" in a body becomes a number no other input gets, for
// addresses that sign up.
func fuzzRouter(f *testing.F, store db.Store) {
	var accounts atomic.Int64
	var fixture atomic.Bool

	type seed struct {
		method uint8
		target string
		body   string
		cred   string
		flags  uint8
	}
	creds := `{"email":"fuzz@example.com","password":"` + goodPass + `"}`
	viaToken := `{"email":"fuzz@example.com","password":"` + goodPass +
		`","session_transport":"bearer"}`
	fresh := `{"email":"new{unique}@example.com","password":"` + goodPass + `"}`
	newPass := `{"current_password":"` + goodPass + `","new_password":"a different passphrase"}`
	for _, s := range []seed{
		{1, "/v1/signup", viaToken, "", 0},
		{1, "/v1/signup", fresh, "", withOrigin},
		{1, "/v1/signup", fresh, "", crossSite},
		{1, "/v1/signup", strings.Replace(fresh, "}", `,"session_transport":"bearer"}`, 1),
			"", 0},
		{1, "/v1/login", creds, "", withOrigin},
		{1, "/v1/login", viaToken, "", withToken | asCookie | withOrigin},
		{1, "/v1/login", `{"email":"a","email":"b"}`, "", 0},
		{1, "/v1/login", strings.Repeat(" ", maxBody+1), "", 0},
		{1, "/v1/login", viaToken, "", notJSON},
		{0, "/v1/session", "", "", withToken},
		{0, "/v1/session", "", "", withToken | asCookie},
		{0, "/v1/session", "", "Bearer x", 0},
		{0, "/v1/session", "", "__Host-authsvc_session=a; __Host-authsvc_session=b", asCookie},
		{1, "/v1/logout", "", "", withToken | asCookie},
		{1, "/v1/logout", "", "", withToken | asCookie | withOrigin},
		{1, "/v1/reauthenticate", `{"password":"` + goodPass + `"}`, "", withToken},
		{1, "/v1/reauthenticate", `{"password":"wrong"}`, "", withToken},
		{1, "/v1/password", newPass, "", withToken},
		{1, "/v1/2fa/totp/setup", "", "", withToken},
		{1, "/v1/2fa/totp/setup", "", "", withToken | acceptPNG},
		{1, "/v1/2fa/totp/enable", `{"code":"123456"}`, "", withToken},
		{1, "/v1/2fa/totp/verify", `{"code":"123456"}`, "", withToken},
		{1, "/v1/2fa/totp/disable", `{"code":"abcd-efgh-ijkl"}`, "", withToken},
		{1, "/v1/2fa/recovery", `{"code":"abcd-efgh"}`, "", withToken},
		{1, "/v1/2fa/recovery-codes", "", "", withToken},
		{0, "/v1/sessions", "", "", withToken},
		{2, "/v1/sessions", "", "", withToken},
		{2, "/v1/sessions/abc", "", "", withToken},
		{2, "/v1/sessions/%FF%00", "", "", withToken},
		{0, "/v1/authorize?require=two_factor", "", "", withToken},
		{3, "/v1/authorize/any/path?require=x", "", "", withToken | asCookie},
		{0, "/v1/authorize", "", "Bearer " + strings.Repeat("A", 43), 0},
		{6, "/v1/session", "", "", withOrigin | preflight},
		{6, "/v1/login", "", "", preflight},
		{4, "/v1/login", "{}", "", 0},
		{0, "/healthz", "", "", 0},
		{0, "/readyz", "", "", 0},
		{0, "/openapi.yaml", "", "", 0},
		{0, "/metrics", "", "", 0},
		{5, "/healthz", "", "", 0},
		{1, "/healthz", "", "", 0},
		{0, "/v1", "", "", 0},
		{0, "/v1/", "", "", 0},
		{0, "/v1%2Fsession", "", "", 0},
		{0, "/v1/%73ession", "", "", withToken},
		{0, "//v1/session", "", "", 0},
		{0, "/v1/session?x=%zz", "", "", 0},
		{0, "*", "", "", 0},
	} {
		f.Add(s.method, s.target, []byte(s.body), s.cred, "Mozilla/5.0 (X11)", s.flags)
	}
	f.Add(uint8(1), "/v1/signup", []byte(fresh), "", "", uint8(withOrigin))
	f.Add(uint8(1), "/v1/login", []byte(viaToken), "", strings.Repeat("\u00e9", 300), uint8(0))

	f.Fuzz(func(t *testing.T, m uint8, target string, body []byte, cred, agent string,
		flags uint8) {
		// The target goes through the parser net/http uses for request
		// lines; what it refuses never reaches the router.
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || strings.ContainsAny(target, " \t") || !validHeaderValue(cred) ||
			!validHeaderValue(agent) {
			return // no server would route this request
		}
		e := newEnv(t, store)
		if fixture.CompareAndSwap(false, true) {
			e.signup("fuzz@example.com")
		}
		body = bytes.ReplaceAll(body, []byte("{unique}"),
			[]byte(fmt.Sprint(accounts.Add(1))))

		r := httptest.NewRequest(routerMethods[int(m)%len(routerMethods)], "/", nil)
		r.URL, r.RequestURI = u, target
		r.RemoteAddr = "192.0.2.10:5555"
		r.Header.Set("User-Agent", agent)
		if len(body) > 0 {
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			r.Header.Set("Content-Type", "application/json")
			if flags&notJSON != 0 {
				r.Header.Set("Content-Type", "text/plain")
			}
		}
		// The credential: a live session of a new account, or the fuzzed
		// string as Authorization or Cookie.
		switch {
		case flags&withToken != 0:
			n := accounts.Add(1)
			cred = e.signup(fmt.Sprintf("user%d@example.com", n)).token
			if flags&asCookie != 0 {
				cred = "__Host-authsvc_session=" + cred
			} else {
				cred = "Bearer " + cred
			}
		case flags&noCredential != 0:
			cred = ""
		}
		if cred != "" && flags&asCookie != 0 {
			r.Header.Set("Cookie", cred)
		} else if cred != "" {
			r.Header.Set("Authorization", cred)
		}
		for bit, h := range map[uint8][2]string{
			withOrigin: {"Origin", testOrigin},
			acceptPNG:  {"Accept", "image/png"},
			preflight:  {"Access-Control-Request-Method", "POST"},
			crossSite:  {"Sec-Fetch-Site", "cross-site"},
		} {
			if flags&bit != 0 {
				r.Header.Set(h[0], h[1])
			}
		}

		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, r)
		res := rec.Result()
		raw := rec.Body.Bytes()
		what := fmt.Sprintf("%s %s (flags %08b)", r.Method, target, flags)

		if res.StatusCode >= 500 {
			t.Fatalf("%s: status %d: %s\nlog:\n%s", what, res.StatusCode, raw, e.logs)
		}
		// The router matches the escaped path when it differs from the
		// plain encoding of the decoded one.
		routed := u.RawPath
		if routed == "" {
			routed = u.Path
		}
		// The gateway's endpoint answers any method; elsewhere a 405 names
		// the methods the route has, as unknown routes are 404.
		if res.StatusCode == http.StatusMethodNotAllowed {
			if routed == "/v1/authorize" || strings.HasPrefix(routed, "/v1/authorize/") {
				t.Fatalf("%s: 405 from the gateway's endpoint", what)
			}
			if res.Header.Get("Allow") == "" {
				t.Fatalf("%s: 405 without an Allow header", what)
			}
		}
		if routed == "/v1" || strings.HasPrefix(routed, "/v1/") {
			if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
				t.Fatalf("%s: Cache-Control %q", what, cc)
			}
			if xc := res.Header.Get("X-Content-Type-Options"); xc != "nosniff" {
				t.Fatalf("%s: X-Content-Type-Options %q", what, xc)
			}
		}
		// Every error is an RFC 9457 document whose status matches.
		if res.StatusCode >= 400 {
			if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("%s: status %d with Content-Type %q", what, res.StatusCode, ct)
			}
			var doc struct {
				Status int    `json:"status"`
				Code   string `json:"code"`
			}
			if err := json.Unmarshal(raw, &doc); err != nil || doc.Code == "" ||
				doc.Status != res.StatusCode {
				t.Fatalf("%s: problem document %q (%v)", what, raw, err)
			}
		}
		if res.Header.Get("Content-Type") == "application/json" && !json.Valid(raw) {
			t.Fatalf("%s: answer is not JSON: %q", what, raw)
		}
	})
}
