package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authsvc/authsvc/internal/db/dbtest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/authsvc once per test run, as the static binary users get.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "authsvc-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "authsvc")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// tool returns the path of an external program the test needs. It skips
// when the program is missing, unless AUTHSVC_TEST_REQUIRE_TOOLS=1.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("AUTHSVC_TEST_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s is required (apt-get install -y %s)", name, pkg)
		}
		t.Skipf("SKIPPING: %s not installed (apt-get install -y %s)", name, pkg)
	}
	return p
}

// process is a running authsvc.
type process struct {
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs the binary in dir with env and waits for its listening line.
func start(t *testing.T, dir string, env []string) *process {
	t.Helper()
	cmd := exec.Command(binary(t))
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "AUTHSVC_ADDR=127.0.0.1:0",
		"AUTHSVC_LOG_FORMAT=json"}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, logs: &syncBuffer{}, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.Write([]byte(line + "\n"))
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "authsvc listening" {
				addrc <- rec.Addr
			}
		}
		close(addrc)
	}()
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	select {
	case addr, ok := <-addrc:
		if !ok {
			t.Fatalf("authsvc exited before listening:\n%s", p.logs)
		}
		p.addr = addr
	case <-time.After(30 * time.Second):
		t.Fatalf("authsvc did not start:\n%s", p.logs)
	}
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("authsvc exited with %v:\n%s", err, p.logs)
		}
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("authsvc did not stop on SIGTERM")
	}
}

// client talks to one running service, with a cookie jar like a browser.
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func newClient(t *testing.T, p *process) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: "http://" + p.addr, http: &http.Client{Jar: jar, Timeout: 20 * time.Second}}
}

func (c *client) do(method, path string, body any, hdr map[string]string) (*http.Response, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (c *client) expect(status int, method, path string, body any, hdr map[string]string) map[string]any {
	c.t.Helper()
	resp, b := c.do(method, path, body, hdr)
	if resp.StatusCode != status {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, status, b)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// otp computes the TOTP code of secret at time at with oathtool.
func otp(t *testing.T, oathtool, secret string, at time.Time) string {
	t.Helper()
	out, err := exec.Command(oathtool, "--totp", "-b", "--now",
		"@"+fmt.Sprint(at.Unix()), secret).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func randomKey() string {
	k := make([]byte, 32)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

func TestEndToEnd(t *testing.T) {
	oathtool := tool(t, "oathtool", "oathtool")
	zbarimg := tool(t, "zbarimg", "zbar-tools")

	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		env := []string{"AUTHSVC_COOKIE_SECURE=false", "AUTHSVC_TOTP_ISSUER=Acme & Sons"}
		journey(t, dir, env, oathtool, zbarimg)
		st, err := os.Stat(filepath.Join(dir, "data", "authsvc.key"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("generated key file: %v %v", st, err)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		dbURL := dbtest.PostgresURL(t)
		env := []string{"AUTHSVC_COOKIE_SECURE=false", "AUTHSVC_TOTP_ISSUER=Acme & Sons",
			"AUTHSVC_DATABASE_URL=" + dbURL, "AUTHSVC_ENCRYPTION_KEY=" + randomKey()}
		journey(t, t.TempDir(), env, oathtool, zbarimg)
	})
}

// journey is what a new user does: sign up, set up an authenticator from
// the QR code, log out, log in, pass the second factor, and find the
// session still good after a restart.
func journey(t *testing.T, dir string, env []string, oathtool, zbarimg string) {
	p := start(t, dir, env)
	c := newClient(t, p)
	email := "Zoë.Tester+tag@Example.com"
	headerEmail := "Zo%C3%AB.Tester+tag@example.com"

	c.expect(201, "POST", "/v1/signup", map[string]string{"email": email, "password": "a long enough passphrase"}, nil)

	// The QR code, read by a real decoder.
	resp, png := c.do("POST", "/v1/2fa/totp/setup", nil, map[string]string{"Accept": "image/png"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("setup: %d %s", resp.StatusCode, png)
	}
	pngPath := filepath.Join(t.TempDir(), "qr.png")
	os.WriteFile(pngPath, png, 0o600)
	out, err := exec.Command(zbarimg, "--quiet", "--raw", pngPath).Output()
	if err != nil {
		t.Fatalf("zbarimg: %v", err)
	}
	uri, err := url.Parse(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	if uri.Scheme != "otpauth" || uri.Host != "totp" || uri.Path != "/Acme & Sons:"+email ||
		uri.Query().Get("issuer") != "Acme & Sons" {
		t.Fatalf("decoded key URI %q", uri)
	}
	secret := uri.Query().Get("secret")

	now := time.Now()
	enabled := c.expect(200, "POST", "/v1/2fa/totp/enable",
		map[string]string{"code": otp(t, oathtool, secret, now)}, nil)
	codes := enabled["recovery_codes"].([]any)
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes", len(codes))
	}
	c.expect(204, "POST", "/v1/logout", nil, nil)
	c.expect(401, "GET", "/v1/authorize", nil, nil)

	login := c.expect(200, "POST", "/v1/login", map[string]string{"email": email, "password": "a long enough passphrase"}, nil)
	if login["two_factor_required"] != true {
		t.Fatalf("login: %v", login)
	}
	if m := c.expect(401, "GET", "/v1/authorize", nil, nil); m["code"] != "two_factor_required" {
		t.Fatalf("partial session authorized: %v", m)
	}
	code := otp(t, oathtool, secret, now.Add(30*time.Second))
	c.expect(200, "POST", "/v1/2fa/totp/verify", map[string]string{"code": code}, nil)
	resp, _ = c.do("GET", "/v1/authorize/app/page", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Auth-User-Email") != headerEmail {
		t.Fatalf("authorize after verify: %d %v", resp.StatusCode, resp.Header)
	}

	// A second device: the replayed code is refused; a recovery code works
	// once.
	d := newClient(t, p)
	d.expect(200, "POST", "/v1/login", map[string]string{"email": email, "password": "a long enough passphrase"}, nil)
	if m := d.expect(422, "POST", "/v1/2fa/totp/verify", map[string]string{"code": code}, nil); m["code"] != "invalid_otp" {
		t.Fatalf("replayed code: %v", m)
	}
	d.expect(200, "POST", "/v1/2fa/recovery", map[string]string{"code": codes[0].(string)}, nil)
	d.expect(200, "GET", "/v1/authorize", nil, nil)
	e := newClient(t, p)
	e.expect(200, "POST", "/v1/login", map[string]string{"email": email, "password": "a long enough passphrase"}, nil)
	if m := e.expect(422, "POST", "/v1/2fa/recovery", map[string]string{"code": codes[0].(string)}, nil); m["code"] != "invalid_recovery_code" {
		t.Fatalf("reused recovery code: %v", m)
	}

	// Restart: the sessions live in the database.
	p.stop(t)
	q := start(t, dir, env)
	c.base, d.base = "http://"+q.addr, "http://"+q.addr
	// The cookie jar is per host:port; carry the cookies over.
	for _, cl := range []*client{c, d} {
		old, _ := url.Parse("http://" + p.addr)
		nu, _ := url.Parse("http://" + q.addr)
		cl.http.Jar.SetCookies(nu, cl.http.Jar.Cookies(old))
	}
	c.expect(200, "GET", "/v1/authorize", nil, nil)
	d.expect(200, "GET", "/v1/session", nil, nil)
	if strings.Contains(p.logs.String()+q.logs.String(), secret) ||
		strings.Contains(p.logs.String(), code) {
		t.Fatal("a secret or a code reached the log")
	}
}

func TestStartupErrors(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"postgres without key", []string{"AUTHSVC_DATABASE_URL=postgres://127.0.0.1:1/x"}, "AUTHSVC_ENCRYPTION_KEY"},
		{"issuer with colon", []string{"AUTHSVC_TOTP_ISSUER=Acme:Corp"}, "AUTHSVC_TOTP_ISSUER"},
		{"bad duration", []string{"AUTHSVC_SESSION_TTL=soon"}, "AUTHSVC_SESSION_TTL"},
		{"bad url", []string{"AUTHSVC_DATABASE_URL=mysql://x"}, "AUTHSVC_DATABASE_URL"},
	}
	bin := binary(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin)
			cmd.Dir = t.TempDir()
			cmd.Env = append([]string{"AUTHSVC_ADDR=127.0.0.1:0"}, tt.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("err %v, output %q; want a failure naming %s", err, out, tt.want)
			}
		})
	}
}
