package reliability

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// poolSize is the PostgreSQL pool of the saturation test: small, so that
// a handful of stalled statements holds every connection.
const poolSize = 2

// With a pool of two connections and a table locked by another client
// (LOCK TABLE ... IN ACCESS EXCLUSIVE MODE), every request that needs the
// table stalls: the first two on their connections, the rest waiting for
// one. Each must still get the contract's 503 within checkDeadline,
// including requests that queued behind others, the server must not go on
// waiting for statements whose requests have been answered, and /healthz
// must stay 200. Clients that give up early, bad credentials and bad bodies take
// their own error paths meanwhile. Once the lock goes, everything works
// again and the pool holds no connection: none leaked on any of those
// paths.
func TestPoolSaturated(t *testing.T) {
	pg := newCluster(t)
	dbURL := pg.createDatabase(t, "authsvc")
	p := startAuthsvc(t, t.TempDir(), pgEnv(dbURL, newKey(),
		fmt.Sprintf("AUTHSVC_DATABASE_MAX_CONNS=%d", poolSize)))
	// Every request below meets the locked table at its first database
	// call, before any password hashing, so checkDeadline holds for all.
	hc := newHTTPClientTimeout(checkDeadline)
	const pw = "correct horse battery staple"
	email := func(i int) string { return fmt.Sprintf("pool-%d@example.com", i) }
	var tokens []string
	for i := range 8 {
		tokens = append(tokens, signupBearer(t, hc, p.base, email(i), pw).token)
	}
	admin := connectURL(t, dbURL)

	type request struct {
		method, path, token string
		body                any
		want                int // once the table is free again
	}
	check := func(i int) request {
		return request{"GET", "/v1/session", tokens[i%len(tokens)], nil, 200}
	}
	list := func(i int) request {
		return request{"GET", "/v1/sessions", tokens[i%len(tokens)], nil, 200}
	}
	authorize := func(i int) request {
		return request{"GET", "/v1/authorize", tokens[i%len(tokens)], nil, 200}
	}
	login := func(i int) request {
		return request{"POST", "/v1/login", "", credentials(email(i%len(tokens)), pw), 200}
	}
	signup := func(i int) request {
		return request{"POST", "/v1/signup", "",
			credentials(fmt.Sprintf("pool-new-%d-%d@example.com", i, time.Now().UnixNano()), pw),
			201}
	}
	tests := []struct {
		table    string
		requests []func(int) request
	}{
		{"sessions", []func(int) request{check, authorize, list}},
		{"users", []func(int) request{check, login, signup}},
	}
	for _, tt := range tests {
		t.Run(tt.table+" locked", func(t *testing.T) {
			ctx := context.Background()
			lock, err := admin.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer lock.Rollback(ctx)
			if _, err := lock.Exec(ctx,
				"LOCK TABLE "+tt.table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
				t.Fatal(err)
			}

			// Two waves: the second finds the pool's connections given up
			// by the first.
			for wave := range 2 {
				replies := make([]reply, 16)
				var wg sync.WaitGroup
				for i := range replies {
					rq := tt.requests[i%len(tt.requests)](i)
					wg.Go(func() {
						replies[i] = call(hc, p.base, rq.method, rq.path, rq.token, rq.body)
					})
				}
				otherErrorPaths(t, p, tokens[0])
				wg.Wait()
				for _, r := range replies {
					if !unavailableAnswer(r) {
						t.Errorf("wave %d: want 503 unavailable: %s", wave+1, r)
					}
				}
				// The server must not go on waiting for statements whose
				// requests have been answered.
				var n int
				if !settle(5*time.Second, func() bool {
					n = lockWaiters(t, pg)
					return n == 0
				}) {
					t.Errorf("wave %d: %d statements of answered requests still wait "+
						"in the server", wave+1, n)
				}
			}
			if !p.alive() {
				t.Fatalf("authsvc exited: %v\n%s", p.err, tail(p.logs.String()))
			}

			if err := lock.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			for i := range 12 {
				rq := tt.requests[i%len(tt.requests)](i)
				r := call(hc, p.base, rq.method, rq.path, rq.token, rq.body)
				if r.status != rq.want {
					t.Errorf("after the lock: want %d: %s", rq.want, r)
				}
			}
			checkNoConnectionsHeld(t, p)
		})
	}
}

// otherErrorPaths sends, while the database stalls, requests that end in
// other ways: clients that stop waiting, unknown and malformed
// credentials, and bodies that are not JSON. Only the first may touch the
// database. /healthz must answer 200 all along.
func otherErrorPaths(t *testing.T, p *authsvc, tok string) {
	t.Helper()
	impatient := &http.Client{Timeout: 300 * time.Millisecond}
	for range 4 {
		r := call(impatient, p.base, "GET", "/v1/session", tok, nil)
		if r.err == nil && !unavailableAnswer(r) {
			t.Errorf("an impatient check: %s", r)
		}
	}
	hc := newHTTPClient()
	cases := []struct {
		path, token string
		body        any
		want        int
	}{
		{"/v1/session", "", nil, 401},
		{"/v1/session", "not-a-token", nil, 401},
		{"/healthz", "", nil, 200},
	}
	for _, c := range cases {
		if r := call(hc, p.base, "GET", c.path, c.token, c.body); r.status != c.want {
			t.Errorf("want %d: %s", c.want, r)
		}
	}
	if r := call(hc, p.base, "POST", "/v1/login", "", "not an object"); r.status != 400 {
		t.Errorf("want 400: %s", r)
	}
}

// lockWaiters counts authsvc's server processes that wait for a lock.
func lockWaiters(t testing.TB, pg *pgCluster) int {
	t.Helper()
	conn := pg.connect(t, "postgres")
	defer conn.Close(context.Background())
	var n int
	err := conn.QueryRow(context.Background(), `
		SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'authsvc' AND wait_event_type = 'Lock'`).Scan(&n)
	if err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	return n
}
