package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The authsvc binary is built once for all tests into buildDir, which
// TestMain removes at the end.
var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error

	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// TestMain removes the authsvc binary after all tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// moduleRoot returns the directory of the authsvc module, as go list sees it.
func moduleRoot(t *testing.T) string {
	t.Helper()
	rootOnce.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
		if err != nil {
			rootErr = fmt.Errorf("go list -m: %w", err)
			return
		}
		rootDir = strings.TrimSpace(string(out))
	})
	if rootErr != nil {
		t.Fatal(rootErr)
	}
	return rootDir
}

// repoFile returns the path of a file of this directory in the repository.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	return filepath.Join(moduleRoot(t), "deploy", filepath.FromSlash(rel))
}

// authsvcBinary builds ./cmd/authsvc once per test run.
func authsvcBinary(t *testing.T) string {
	t.Helper()
	root := moduleRoot(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "authsvc-deploy-")
		if err != nil {
			buildErr = fmt.Errorf("build directory: %w", err)
			return
		}
		buildDir = dir
		binPath = filepath.Join(dir, "authsvc")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/authsvc")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/authsvc: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// tool returns the path of a gateway binary. A missing one skips the test,
// loudly, unless AUTHSVC_TEST_REQUIRE_TOOLS=1 makes it a failure.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("AUTHSVC_TEST_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s is required: apt-get install -y %s", name, name)
	}
	t.Skipf("SKIPPING: %s is not installed (apt-get install -y %s)", name, name)
	return ""
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for programs that cannot be told to pick their own.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// logBuffer collects a program's output for the failure report.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is a program the test started; it is stopped in cleanup, and its
// output is printed when the test failed. Its output goes to logs; done is
// closed, and err set, when it has ended.
type proc struct {
	name string
	cmd  *exec.Cmd
	logs *logBuffer
	done chan struct{}
	err  error
}

// startProc starts cmd and registers its shutdown. If lines is not nil,
// the lines of standard error are offered to it (dropped when it is full)
// and it is closed when the program ends.
func startProc(t *testing.T, name string, cmd *exec.Cmd, lines chan<- string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, logs: &logBuffer{}, done: make(chan struct{})}
	cmd.Stdout = p.logs
	var stderr io.ReadCloser
	if lines == nil {
		cmd.Stderr = p.logs
	} else {
		var err error
		if stderr, err = cmd.StderrPipe(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var copied sync.WaitGroup
	if stderr != nil {
		copied.Add(1)
		go func() {
			defer copied.Done()
			defer close(lines)
			sc := bufio.NewScanner(stderr)
			sc.Buffer(make([]byte, 64*1024), 1024*1024)
			for sc.Scan() {
				fmt.Fprintln(p.logs, sc.Text())
				select {
				case lines <- sc.Text():
				default:
				}
			}
		}()
	}
	go func() {
		copied.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.logs)
		}
	})
	return p
}

// exited reports whether the program has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the program to end and kills it if it does not.
func (p *proc) stop(t *testing.T) {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop on SIGTERM", p.name)
	}
}

// waitListening waits until addr accepts connections.
func (p *proc) waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("%s ended before listening (%v):\n%s", p.name, p.err, p.logs)
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s is not listening on %s:\n%s", p.name, addr, p.logs)
}

// startAuthsvc runs authsvc on a loopback port with a throwaway SQLite
// store and returns its address. env adds or overrides variables.
func startAuthsvc(t *testing.T, env ...string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(authsvcBinary(t))
	cmd.Dir = dir
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"AUTHSVC_ADDR=127.0.0.1:0",
		"AUTHSVC_DATABASE_URL=sqlite:" + filepath.Join(dir, "authsvc.db"),
		"AUTHSVC_COOKIE_SECURE=false",
		"AUTHSVC_TRUSTED_PROXIES=127.0.0.1/32",
		"AUTHSVC_LOG_FORMAT=json",
	}, env...)
	lines := make(chan string, 256)
	p := startProc(t, "authsvc", cmd, lines)

	// The listening line names the port the kernel picked.
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				<-p.done
				t.Fatalf("authsvc ended before listening (%v):\n%s", p.err, p.logs)
			}
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "authsvc listening" {
				return rec.Addr
			}
		case <-timeout:
			t.Fatalf("authsvc did not start:\n%s", p.logs)
		}
	}
}

// seen is one request as the upstream application received it.
type seen struct {
	Method string `json:"method"`
	URI    string `json:"uri"`
	// Auth holds every header whose name, lower-cased and with "_" read
	// as "-", starts with "x-auth-".
	Auth map[string][]string `json:"auth"`
	Body string              `json:"body"`
}

// app is the upstream application: it answers every request with what it
// saw, marked with X-Upstream: app, and keeps a record of all of them.
type app struct {
	srv *httptest.Server
	mu  sync.Mutex
	all []seen
}

// startApp starts the application on a loopback port.
func startApp(t *testing.T) *app {
	t.Helper()
	a := &app{}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

// addr is the application's host:port.
func (a *app) addr() string { return a.srv.Listener.Addr().String() }

// serve records a request and answers with the record.
func (a *app) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s := seen{Method: r.Method, URI: r.RequestURI, Auth: map[string][]string{},
		Body: string(body)}
	for name, vals := range r.Header {
		n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		if strings.HasPrefix(n, "x-auth-") {
			s.Auth[n] = append(s.Auth[n], vals...)
		}
	}
	a.mu.Lock()
	a.all = append(a.all, s)
	a.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Upstream", "app")
	json.NewEncoder(w).Encode(s)
}

// saw returns every request the application received for uri.
func (a *app) saw(uri string) []seen {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []seen
	for _, s := range a.all {
		if s.URI == uri {
			out = append(out, s)
		}
	}
	return out
}

// requests returns every request the application received.
func (a *app) requests() []seen {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]seen(nil), a.all...)
}
