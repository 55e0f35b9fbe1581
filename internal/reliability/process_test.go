package reliability

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// authsvcBinary builds cmd/authsvc once per test run, statically, as it ships.
func authsvcBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "authsvc-reliability-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "authsvc")
		cmd := exec.Command("go", "build", "-o", binPath,
			"github.com/authsvc/authsvc/cmd/authsvc")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// startTimeout bounds how long authsvc may take to open its listener,
// migrations included.
const startTimeout = 60 * time.Second

// authsvc is one running authsvc process.
type authsvc struct {
	cmd  *exec.Cmd
	addr string
	base string // http://addr
	logs *logBuffer
	done chan struct{} // closed when the process has exited
	err  error         // how it exited, once done is closed
}

// logBuffer collects a process's log lines for later inspection.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p; the reader goroutine of the process calls it.
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

// baseEnv is the configuration every test starts from: JSON logs, a port
// of the system's choosing, and per-address limits out of the way, since
// every client of these tests comes from 127.0.0.1.
func baseEnv() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"AUTHSVC_ADDR=127.0.0.1:0",
		"AUTHSVC_LOG_FORMAT=json",
		"AUTHSVC_COOKIE_SECURE=false",
		"AUTHSVC_SIGNUPS_PER_IP=1000000",
		"AUTHSVC_LOGIN_FAILURES_PER_IP=1000000",
	}
}

// pgEnv is the configuration of an authsvc on the PostgreSQL database at
// dbURL with encryption key key.
func pgEnv(dbURL, key string, extra ...string) []string {
	env := append(baseEnv(), "AUTHSVC_DATABASE_URL="+dbURL, "AUTHSVC_ENCRYPTION_KEY="+key)
	return append(env, extra...)
}

// newKey returns a random encryption key in the form AUTHSVC_ENCRYPTION_KEY
// takes.
func newKey() string {
	k := make([]byte, 32)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// startAuthsvc starts authsvc with env in dir and waits for its listener.
// The process is stopped when the test ends; tests that kill it say so.
func startAuthsvc(t testing.TB, dir string, env []string) *authsvc {
	t.Helper()
	p, err := launch(authsvcBinary(t), dir, env)
	if p != nil {
		t.Cleanup(func() { p.stop(t) })
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// launch starts the binary and waits for its "authsvc listening" line. It
// does not touch a testing.TB, so several may run at once.
func launch(bin, dir string, env []string) (*authsvc, error) {
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	// The log is kept whole for later checks; the listening line also
	// says which port the system picked.
	p := &authsvc{cmd: cmd, logs: &logBuffer{}, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start authsvc: %w", err)
	}
	addrc := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.logs.Write(append(line, '\n'))
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "authsvc listening" {
				select {
				case addrc <- rec.Addr:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		<-scanned // Wait closes the pipe; read it to the end first
		p.err = cmd.Wait()
		close(p.done)
	}()

	select {
	case p.addr = <-addrc:
		p.base = "http://" + p.addr
		return p, nil
	case <-p.done:
		return p, fmt.Errorf("authsvc exited before listening (%v):\n%s", p.err, p.logs)
	case <-time.After(startTimeout):
		return p, fmt.Errorf("authsvc did not start listening:\n%s", p.logs)
	}
}

// alive reports whether the process is still running.
func (p *authsvc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill ends the process with SIGKILL, as a crash or the OOM killer would,
// and waits until it is gone.
func (p *authsvc) kill() {
	if !p.alive() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and expects a clean exit; a process that was killed
// or crashed before is left alone.
func (p *authsvc) stop(t testing.TB) {
	t.Helper()
	if !p.alive() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("authsvc exited with %v after SIGTERM:\n%s", p.err, tail(p.logs.String()))
		}
	case <-time.After(40 * time.Second):
		p.kill()
		t.Errorf("authsvc did not stop on SIGTERM")
	}
}

// rss returns the resident set size of the process in bytes, from the
// VmRSS line of /proc/PID/status.
func (p *authsvc) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"),
				10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS line")
}

// metrics reads /metrics and returns each sample by its series name with
// labels, as written (go_goroutines, authsvc_db_connections_acquired).
func (p *authsvc) metrics() (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics answered %d", resp.StatusCode)
	}
	// The text format is one sample a line, "name{labels} value", after
	// "#" comment lines.
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// metric returns one series of /metrics, failing the test when it is
// missing.
func (p *authsvc) metric(t testing.TB, name string) float64 {
	t.Helper()
	m, err := p.metrics()
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	v, ok := m[name]
	if !ok {
		t.Fatalf("/metrics has no %s", name)
	}
	return v
}

// settle polls f until it reports true or limit passes, and reports the
// last answer. It waits for a state, it does not time anything.
func settle(limit time.Duration, f func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tail is the end of a long log, for failure messages.
func tail(s string) string {
	if len(s) > 6000 {
		return "..." + s[len(s)-6000:]
	}
	return s
}
