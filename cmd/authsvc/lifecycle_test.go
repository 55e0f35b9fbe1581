package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsvc/authsvc/internal/db/dbtest"
)

// On shutdown /readyz turns 503 at once, a request already in flight
// finishes with its real answer, and serve returns cleanly.
func TestShutdownDrains(t *testing.T) {
	addr, stop := serveInProcess(t, envOf("AUTHSVC_ADDR=127.0.0.1:0",
		"AUTHSVC_DATABASE_URL="+dbtest.SQLitePath(t), "AUTHSVC_SHUTDOWN_DELAY=2s"))

	// A login whose body is still on its way.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"email":"nobody@example.com","password":"whatever it is","session_transport":"bearer"}`
	fmt.Fprintf(conn, "POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\n\r\n%s", len(body), body[:10])
	time.Sleep(100 * time.Millisecond) // let the server start reading it

	done := make(chan error, 1)
	go func() { done <- stop() }()

	// Readiness flips while the listener is still open.
	var ready int
	for i := 0; i < 50; i++ {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ready = resp.StatusCode; ready == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ready != http.StatusServiceUnavailable {
		t.Fatalf("/readyz answered %d while shutting down", ready)
	}

	conn.Write([]byte(body[10:]))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("in-flight request cut off: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("in-flight login answered %d", resp.StatusCode)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("listener still open after shutdown")
	}
}

// Replicas starting together on one empty database all come up.
func TestReplicasStartTogether(t *testing.T) {
	dbURL := dbtest.PostgresURL(t)
	env := envOf("AUTHSVC_ADDR=127.0.0.1:0", "AUTHSVC_DATABASE_URL="+dbURL,
		"AUTHSVC_ENCRYPTION_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	var wg sync.WaitGroup
	addrs := make([]string, 3)
	for i := range addrs {
		wg.Go(func() { addrs[i], _ = serveInProcess(t, env) })
	}
	wg.Wait()
	for _, a := range addrs {
		resp, err := http.Get("http://" + a + "/readyz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("replica %s not ready: %v %v", a, resp, err)
		}
		resp.Body.Close()
	}
}

// The database password never reaches the log.
func TestDatabasePasswordNotLogged(t *testing.T) {
	dbURL, err := url.Parse(dbtest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	// The test server trusts every connection, so any password works.
	dbURL.User = url.UserPassword(dbURL.User.Username(), "s3cret-db-pass")
	logs := &strings.Builder{}
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	})
	_, stop := serveLogged(t, envOf("AUTHSVC_ADDR=127.0.0.1:0",
		"AUTHSVC_DATABASE_URL="+dbURL.String(),
		"AUTHSVC_ENCRYPTION_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="), w)
	stop()
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), "s3cret-db-pass") ||
		!strings.Contains(logs.String(), "authsvc listening") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Metrics can live on a listener of their own, with the pool's figures.
func TestMetricsListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	maddr := l.Addr().String()
	l.Close()
	addr, _ := serveInProcess(t, envOf("AUTHSVC_ADDR=127.0.0.1:0",
		"AUTHSVC_DATABASE_URL="+dbtest.PostgresURL(t), "AUTHSVC_METRICS_ADDR="+maddr,
		"AUTHSVC_ENCRYPTION_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="))
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
	}
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var text strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		text.WriteString(sc.Text() + "\n")
	}
	for _, want := range []string{"authsvc_db_connections_acquired", "authsvc_password_hashes_waiting",
		`authsvc_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"} 1`} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
