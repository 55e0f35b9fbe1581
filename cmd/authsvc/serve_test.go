package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/db/dbtest"
	"github.com/authsvc/authsvc/internal/model"
	"github.com/authsvc/authsvc/internal/secretbox"
)

// envOf turns name=value pairs into a getenv function.
func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for _, p := range kv {
		k, v, _ := strings.Cut(p, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

// serveInProcess starts serve and returns its address and a function that
// stops it and returns serve's error.
func serveInProcess(t *testing.T, getenv func(string) string) (string, func() error) {
	t.Helper()
	return serveLogged(t, getenv, io.Discard)
}

// serveLogged is serveInProcess with the log written to logOut.
func serveLogged(t *testing.T, getenv func(string) string, logOut io.Writer) (string,
	func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, getenv, logOut, func(a string) { addrc <- a }) }()
	select {
	case addr := <-addrc:
		stopped := false
		stop := func() error {
			if stopped {
				return nil
			}
			stopped = true
			cancel()
			return <-errc
		}
		t.Cleanup(func() { stop() })
		return addr, stop
	case err := <-errc:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	return "", nil
}

// A key that opens none of the stored secrets stops start-up with a
// message naming the variable; the right key among the previous ones
// lets it start.
func TestStartupRefusesWrongKey(t *testing.T) {
	url := dbtest.PostgresURL(t)
	keyA, keyB := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	b64 := base64.StdEncoding.EncodeToString

	m, err := db.NewMigrator(url, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	store, err := db.Open(t.Context(), url, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ring, _ := secretbox.NewKeyring(keyA)
	sealed, err := ring.Seal(bytes.Repeat([]byte{3}, 20), []byte("u1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	err = store.CreateUser(t.Context(), &model.User{ID: "u1", Email: "k@example.com",
		EmailCanonical: "k@example.com", PasswordHash: "x", TwoFactorSecret: sealed,
		CreatedAt: now, UpdatedAt: now})
	store.Close()
	if err != nil {
		t.Fatal(err)
	}

	base := []string{"AUTHSVC_ADDR=127.0.0.1:0", "AUTHSVC_DATABASE_URL=" + url}
	err = serve(t.Context(), envOf(append(base, "AUTHSVC_ENCRYPTION_KEY="+b64(keyB))...),
		io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "AUTHSVC_ENCRYPTION_KEY") {
		t.Fatalf("start-up with the wrong key: %v", err)
	}
	_, stop := serveInProcess(t, envOf(append(base, "AUTHSVC_ENCRYPTION_KEY="+b64(keyB),
		"AUTHSVC_ENCRYPTION_KEYS_PREVIOUS="+b64(keyA))...))
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// Clients that open connections and never finish their headers are cut
// off by the header timeout instead of holding goroutines for ever.
func TestSlowClientsAreCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the header timeout")
	}
	addr, _ := serveInProcess(t, envOf("AUTHSVC_ADDR=127.0.0.1:0",
		"AUTHSVC_DATABASE_URL="+dbtest.SQLitePath(t)))
	const n = 50
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	deadline := time.Now().Add(15 * time.Second)
	for i, c := range conns {
		c.SetReadDeadline(deadline)
		_, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("connection %d still open after the header timeout: %v", i, err)
		}
	}
	// A huge header block is refused outright.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) +
		"\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	if !bytes.Contains(got, []byte(" 431 ")) {
		t.Fatalf("oversized headers: %q", got)
	}
}

func TestCommandArguments(t *testing.T) {
	for _, args := range [][]string{{"healthcheck", "x"}, {"config", "x"}, {"serve", "x"},
		{"migrate"}, {"migrate", "sideways"}, {"migrate", "down", "0"}, {"frobnicate"}} {
		env := envOf("AUTHSVC_DATABASE_URL=sqlite:" + t.TempDir() + "/x.db")
		err := run(t.Context(), args, env, io.Discard, io.Discard)
		if err == nil {
			t.Errorf("authsvc %v succeeded", args)
		}
	}
	var out strings.Builder
	if err := run(t.Context(), []string{"config"}, envOf(), &out, io.Discard); err != nil ||
		!strings.Contains(out.String(), "AUTHSVC_DATABASE_URL=sqlite:data/authsvc.db") {
		t.Fatalf("config: %v %q", err, out.String())
	}
}
