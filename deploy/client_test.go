package deploy_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"
)

// browser is a client with a cookie jar that follows no redirects, so the
// test sees each answer of the gateway.
type browser struct {
	t    *testing.T
	base *url.URL
	c    *http.Client
}

// newBrowser returns a browser with an empty cookie jar for the gateway at
// base.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("gateway URL %q: %v", base, err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{
		Jar:     jar,
		Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return &browser{t: t, base: u, c: c}
}

// reply is a gateway's answer, read in full.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// problemCode returns the code of a problem document, or "" for any other
// body.
func (r reply) problemCode() string {
	if r.header.Get("Content-Type") != "application/problem+json" {
		return ""
	}
	var p struct{ Code string }
	json.Unmarshal(r.body, &p)
	return p.Code
}

// String shows a reply in failure messages.
func (r reply) String() string {
	return fmt.Sprintf("%d %v %.300s", r.status, r.header, r.body)
}

// do sends one request. target is written into the request line exactly as
// given, so paths with dot segments and escapes reach the gateway
// unchanged. A string body is sent as text, anything else as JSON. hdr
// holds extra header fields as name, value pairs; names are sent as
// written, not canonicalised.
func (b *browser) do(method, target string, body any, hdr ...string) reply {
	b.t.Helper()
	var rd io.Reader
	ctype := ""
	switch v := body.(type) {
	case nil:
	case string:
		rd, ctype = strings.NewReader(v), "text/plain"
	default:
		buf, err := json.Marshal(v)
		if err != nil {
			b.t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(buf), "application/json"
	}
	req, err := http.NewRequest(method, b.base.String(), rd)
	if err != nil {
		b.t.Fatal(err)
	}
	req.URL = &url.URL{Scheme: b.base.Scheme, Host: b.base.Host, Opaque: target}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	// What a browser sends with a request from the site's own pages.
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("User-Agent", "deploy-test")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header[hdr[i]] = append(req.Header[hdr[i]], hdr[i+1])
	}

	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}
}

// cookie returns the value of the named cookie the jar holds for the
// gateway, or "".
func (b *browser) cookie(name string) string {
	for _, c := range b.c.Jar.Cookies(b.base) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// account is a user signed up through the gateway.
type account struct {
	email, password string
	userID          string
}

// signedIn is what signup, login and verify answer.
type signedIn struct {
	User struct {
		ID    string `json:"id"`
		Email string `json:"email"`
	} `json:"user"`
	Session struct {
		ID string `json:"id"`
	} `json:"session"`
	TwoFactorRequired bool   `json:"two_factor_required"`
	SessionToken      string `json:"session_token"`
}

// post sends a JSON request to authsvc's API through the gateway, wants
// the status given and decodes the answer into out, if not nil.
func (b *browser) post(path string, in any, want int, out any) {
	b.t.Helper()
	r := b.do(http.MethodPost, path, in)
	if r.status != want {
		b.t.Fatalf("POST %s: got %s, want status %d", path, r, want)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			b.t.Fatalf("POST %s: decode %q: %v", path, r.body, err)
		}
	}
}

// signup creates a new account through the gateway; the browser holds its
// session.
func (b *browser) signup() (account, signedIn) {
	b.t.Helper()
	a := account{email: "user-" + unique(b.t) + "@example.com",
		password: "gw-" + unique(b.t)}
	var s signedIn
	b.post("/v1/signup", map[string]string{"email": a.email, "password": a.password},
		http.StatusCreated, &s)
	a.userID = s.User.ID
	if a.userID == "" || s.Session.ID == "" {
		b.t.Fatalf("signup answered no user or session id: %+v", s)
	}
	return a, s
}

// login signs a in through the gateway.
func (b *browser) login(a account) signedIn {
	b.t.Helper()
	var s signedIn
	b.post("/v1/login", map[string]string{"email": a.email, "password": a.password},
		http.StatusOK, &s)
	return s
}

// unique returns a random string for names that must not collide.
func unique(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// totp computes an RFC 6238 code (HMAC-SHA1, 30-second steps) of the given
// number of digits for a base32 secret at a moment.
func totp(secret string, at time.Time, digits int) (string, error) {
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).
		DecodeString(strings.ToUpper(strings.TrimRight(secret, "=")))
	if err != nil {
		return "", fmt.Errorf("decode secret: %w", err)
	}
	var counter [8]byte
	binary.BigEndian.PutUint64(counter[:], uint64(at.Unix()/30))
	mac := hmac.New(sha1.New, key)
	mac.Write(counter[:])
	sum := mac.Sum(nil)

	// RFC 4226 dynamic truncation.
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, v%mod), nil
}

// TestTOTP checks the code generator against RFC 6238, Appendix B (SHA1).
func TestTOTP(t *testing.T) {
	// ASCII "12345678901234567890" in base32.
	const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	tests := []struct {
		unix   int64
		digits int
		want   string
	}{
		{59, 8, "94287082"},
		{59, 6, "287082"},
		{1111111109, 8, "07081804"},
		{1111111111, 8, "14050471"},
		{1234567890, 8, "89005924"},
		{2000000000, 8, "69279037"},
		{20000000000, 8, "65353130"},
	}
	for _, tt := range tests {
		got, err := totp(secret, time.Unix(tt.unix, 0), tt.digits)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("T=%d, %d digits: got %s, want %s", tt.unix, tt.digits, got, tt.want)
		}
	}
}
