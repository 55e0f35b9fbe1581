package reliability

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgStartTimeout bounds how long a private cluster may take to accept
// connections after its server starts.
const pgStartTimeout = 30 * time.Second

// pgBinDir returns the directory holding initdb and postgres: the newest
// /usr/lib/postgresql/N/bin, else wherever PATH finds initdb.
func pgBinDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool {
		return pgMajor(matches[i]) < pgMajor(matches[j])
	})
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no initdb under /usr/lib/postgresql/*/bin or on PATH")
}

// pgMajor reads N out of /usr/lib/postgresql/N/bin/initdb.
func pgMajor(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

// pgCredential returns the user the server programs must run as: nil to
// run as ourselves, or the postgres account when we are root, since
// PostgreSQL refuses to run as root.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a postgres account: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// skipWithoutPostgres skips t, loudly, when no PostgreSQL server programs
// can be run here, or fails it when AUTHSVC_TEST_REQUIRE_POSTGRES=1.
func skipWithoutPostgres(t testing.TB, err error) {
	t.Helper()
	msg := "these tests run a private PostgreSQL cluster: %v"
	if os.Getenv("AUTHSVC_TEST_REQUIRE_POSTGRES") == "1" {
		t.Fatalf(msg, err)
	}
	t.Skipf("SKIPPING: "+msg+"; AUTHSVC_TEST_REQUIRE_POSTGRES=1 makes this a failure", err)
}

// pgCluster is a PostgreSQL server of one test's own: its own data
// directory, socket directory and TCP port on 127.0.0.1, trust
// authentication for the postgres role. It can be stopped the hard way and
// started again on the same port.
type pgCluster struct {
	bin  string
	dir  string
	port int
	cred *syscall.Credential

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// newCluster runs initdb in a fresh directory and starts the server. The
// server is stopped and the directory removed when the test ends.
func newCluster(t testing.TB) *pgCluster {
	t.Helper()
	bin, err := pgBinDir()
	if err != nil {
		skipWithoutPostgres(t, err)
	}
	cred, err := pgCredential()
	if err != nil {
		skipWithoutPostgres(t, err)
	}

	// t.TempDir sits below a directory only we may enter; the server's
	// account needs a directory of its own.
	dir, err := os.MkdirTemp("", "authsvc-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c := &pgCluster{bin: bin, dir: dir, port: freePort(t), cred: cred}
	t.Cleanup(func() {
		c.stopNow()
		os.RemoveAll(dir)
	})
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}

	initdb := c.command("initdb", "-D", c.dataDir(), "-A", "trust", "-U", "postgres",
		"--no-sync", "-E", "UTF8", "--locale=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.start(t)
	return c
}

func (c *pgCluster) dataDir() string { return filepath.Join(c.dir, "data") }

// command prepares one of the server programs to run as the server's
// account, in its own process group so that signals meant for the test
// never reach it.
func (c *pgCluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	return cmd
}

// start runs the server and waits until it accepts connections.
func (c *pgCluster) start(t testing.TB) {
	t.Helper()
	logFile, err := os.OpenFile(filepath.Join(c.dir, "server.log"),
		os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	// fsync is off: these tests kill processes, never the machine, and what
	// reached the kernel survives a process crash.
	cmd := c.command("postgres", "-D", c.dataDir(), "-p", strconv.Itoa(c.port),
		"-k", c.dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
		"-c", "max_connections=100")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()

	deadline := time.Now().Add(pgStartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return
		}
		select {
		case <-exited:
			t.Fatalf("postgres exited while starting:\n%s", c.logTail(4000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres did not accept connections: %v\n%s", err, c.logTail(4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopImmediately stops the server the way `pg_ctl stop -m immediate`
// does (SIGQUIT): every connection is cut at once, nothing is checkpointed,
// and the next start runs crash recovery.
func (c *pgCluster) stopImmediately(t testing.TB) {
	t.Helper()
	if !c.stopNow() {
		t.Fatalf("postgres did not stop:\n%s", c.logTail(4000))
	}
}

// stopNow sends SIGQUIT to the server if it runs and waits for it to go,
// killing it after a while. It reports whether the server went on SIGQUIT.
func (c *pgCluster) stopNow() bool {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return true
	}
	cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
		return true
	case <-time.After(20 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		return false
	}
}

// url is the connection URL of database name on this cluster.
func (c *pgCluster) url(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, name)
}

// createDatabase makes an empty database and returns its URL.
func (c *pgCluster) createDatabase(t testing.TB, name string) string {
	t.Helper()
	conn := c.connect(t, "postgres")
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(),
		"CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return c.url(name)
}

// connect opens one connection to database name, closed when the test
// ends if the caller has not closed it before.
func (c *pgCluster) connect(t testing.TB, name string) *pgx.Conn {
	t.Helper()
	return connectURL(t, c.url(name))
}

// connectURL opens one connection to the database at rawURL.
func connectURL(t testing.TB, rawURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", rawURL, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// logTail is the last n bytes of the server's log, all of it for n = 0.
func (c *pgCluster) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
	s := string(b)
	if n > 0 && len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}

// freePort returns a TCP port on 127.0.0.1 that nothing listened on a
// moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
