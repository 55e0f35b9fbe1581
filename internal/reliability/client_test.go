package reliability

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// checkDeadline is how long a request whose first database call stalls
	// may take: the store's 5-second deadline, which includes the wait for
	// a connection, plus room to answer.
	checkDeadline = 7 * time.Second
	// answerDeadline is how long any request may take, whatever happens to
	// the database. A login or signup may have passed a database call,
	// waited up to the hasher's 2-second limit and hashed before its next
	// call stalls for 5 seconds, so it gets 3 seconds more than a check.
	answerDeadline = 10 * time.Second
)

// newHTTPClient returns a client that gives up on a request after
// answerDeadline, with enough idle connections for a busy test.
func newHTTPClient() *http.Client {
	return newHTTPClientTimeout(answerDeadline)
}

// newHTTPClientTimeout returns a client that gives up after d.
func newHTTPClientTimeout(d time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: tr, Timeout: d}
}

// reply is what one request got: an answer or a transport error.
type reply struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
	err          error // no answer: refused, cut off, or past the deadline
	took         time.Duration
}

// code is the problem code of an error answer, "" for any other.
func (r reply) code() string {
	var p struct{ Code string }
	json.Unmarshal(r.body, &p)
	return p.Code
}

// object decodes a JSON answer.
func (r reply) object() map[string]any {
	var m map[string]any
	json.Unmarshal(r.body, &m)
	return m
}

// str returns a string member of a JSON answer, "" if there is none.
func (r reply) str(key string) string {
	s, _ := r.object()[key].(string)
	return s
}

// String describes the reply for failure messages, with the start of its
// body.
func (r reply) String() string {
	if r.err != nil {
		return fmt.Sprintf("%s %s: no answer after %v: %v", r.method, r.path,
			r.took.Round(time.Millisecond), r.err)
	}
	body := string(r.body)
	if len(body) > 300 {
		body = body[:300] + "..."
	}
	return fmt.Sprintf("%s %s: %d after %v: %s", r.method, r.path, r.status,
		r.took.Round(time.Millisecond), strings.TrimSpace(body))
}

// timedOut reports whether the request got no answer within the deadline.
func (r reply) timedOut() bool {
	var ne interface{ Timeout() bool }
	return r.err != nil && (errors.Is(r.err, context.DeadlineExceeded) ||
		errors.As(r.err, &ne) && ne.Timeout())
}

// call sends one request. A non-empty token goes as a Bearer credential;
// a non-nil body as JSON.
func call(hc *http.Client, base, method, path, token string, body any) reply {
	r := reply{method: method, path: path}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		r.err = err
		return r
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err == nil {
		r.body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		r.status, r.header = resp.StatusCode, resp.Header
	}
	r.took = time.Since(start)
	r.err = err
	return r
}

// problemFault describes what is wrong with an error answer as a problem
// document of the contract, "" if nothing: the content type, a code, the
// status repeated in the body, and Retry-After on 429 and 503.
func problemFault(r reply) string {
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		return "content type " + ct
	}
	var p struct {
		Status int
		Code   string
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Code == "" || p.Status != r.status {
		return "not a problem document"
	}
	if r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable {
		n, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || n < 1 {
			return fmt.Sprintf("Retry-After %q", r.header.Get("Retry-After"))
		}
	}
	return ""
}

// unavailableAnswer reports whether r is the contract's 503: a problem
// document with code unavailable and a Retry-After.
func unavailableAnswer(r reply) bool {
	return r.err == nil && r.status == http.StatusServiceUnavailable &&
		r.code() == "unavailable" && problemFault(r) == ""
}

// session is a signed-in client as the tests hold it.
type session struct {
	token string
	id    string
}

// must sends a request that has to get status want, failing the test
// otherwise, and returns the answer.
func must(t testing.TB, hc *http.Client, base string, want int, method, path,
	token string, body any) reply {
	t.Helper()
	r := call(hc, base, method, path, token, body)
	if r.err != nil || r.status != want {
		t.Fatalf("want %d: %s", want, r)
	}
	return r
}

// signupBearer creates an account and returns its first session.
func signupBearer(t testing.TB, hc *http.Client, base, email, pw string) session {
	t.Helper()
	r := must(t, hc, base, http.StatusCreated, "POST", "/v1/signup", "",
		credentials(email, pw))
	return sessionOf(r)
}

// loginBearer signs in and returns the new session.
func loginBearer(t testing.TB, hc *http.Client, base, email, pw string) session {
	t.Helper()
	r := must(t, hc, base, http.StatusOK, "POST", "/v1/login", "", credentials(email, pw))
	return sessionOf(r)
}

// credentials is the body of signup and login for a bearer session.
func credentials(email, pw string) map[string]string {
	return map[string]string{"email": email, "password": pw, "session_transport": "bearer"}
}

// sessionOf reads the token and session id of a signup, login or
// rotation answer.
func sessionOf(r reply) session {
	var m struct {
		SessionToken string `json:"session_token"`
		Session      struct{ ID string }
	}
	json.Unmarshal(r.body, &m)
	return session{token: m.SessionToken, id: m.Session.ID}
}

// enrolment is a confirmed authenticator as the user holds it.
type enrolment struct {
	secret string
	codes  []string
	step   int64 // the step of the code that confirmed it
}

// enrol sets up and enables TOTP for the signed-in s and returns the
// secret, the recovery codes and the rotated session.
func enrol(t testing.TB, hc *http.Client, base string, s session) (enrolment, session) {
	t.Helper()
	r := must(t, hc, base, http.StatusOK, "POST", "/v1/2fa/totp/setup", s.token, nil)
	e := enrolment{secret: r.str("secret"), step: stepAt(time.Now())}
	r = must(t, hc, base, http.StatusOK, "POST", "/v1/2fa/totp/enable", s.token,
		map[string]string{"code": totpCode(e.secret, e.step)})
	var m struct {
		RecoveryCodes []string `json:"recovery_codes"`
		SessionToken  string   `json:"session_token"`
	}
	json.Unmarshal(r.body, &m)
	e.codes = m.RecoveryCodes
	return e, session{token: m.SessionToken, id: s.id}
}

// stepAt is the TOTP time step (RFC 6238, 30 seconds) of now.
func stepAt(now time.Time) int64 { return now.Unix() / 30 }

// totpCode computes the six-digit RFC 6238 code of a base32 secret for a
// time step, independently of the service's own implementation.
func totpCode(secret string, step int64) string {
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		return "000000"
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(step))
	mac := hmac.New(sha1.New, key)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1_000_000)
}

// The code helper agrees with RFC 6238 Appendix B (SHA-1, T = 59 s, the
// last six of 94287082) and RFC 4226 Appendix D.
func TestTOTPCode(t *testing.T) {
	secret := base32.StdEncoding.WithPadding(base32.NoPadding).
		EncodeToString([]byte("12345678901234567890"))
	tests := []struct {
		step int64
		want string
	}{
		{0, "755224"},
		{1, "287082"},
		{9, "520489"},
		{stepAt(time.Unix(1111111109, 0)), "081804"},
	}
	for _, tt := range tests {
		if got := totpCode(secret, tt.step); got != tt.want {
			t.Errorf("step %d: %s, want %s", tt.step, got, tt.want)
		}
	}
}
