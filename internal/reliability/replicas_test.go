package reliability

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// startReplicas starts n authsvc processes with the same configuration at
// the same moment, as an orchestrator does, and waits for all of them.
func startReplicas(t testing.TB, n int, env []string) []*authsvc {
	t.Helper()
	bin := authsvcBinary(t)
	procs := make([]*authsvc, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range procs {
		dir := t.TempDir()
		wg.Go(func() { procs[i], errs[i] = launch(bin, dir, env) })
	}
	wg.Wait()
	for i, p := range procs {
		if p != nil {
			t.Cleanup(func() { p.stop(t) })
		}
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
	}
	return procs
}

// basesOf returns the base URLs of procs.
func basesOf(procs []*authsvc) []string {
	out := make([]string, len(procs))
	for i, p := range procs {
		out[i] = p.base
	}
	return out
}

// Three replicas on one database behave as one service: started together
// on an empty database they all come up on one schema; a TOTP step
// accepted by one is refused by the others, also when the same code
// reaches all three at once; a session revoked through one is refused by
// every one at once; second-factor failures count across all three; and a
// mixed workload spread over them by a round-robin proxy leaves the
// database as its clients were told.
func TestReplicas(t *testing.T) {
	pg := newCluster(t)
	dbURL := pg.createDatabase(t, "authsvc")
	reps := startReplicas(t, 3, pgEnv(dbURL, newKey()))
	front := roundRobin(t, basesOf(reps))
	hc := newHTTPClient()
	conn := connectURL(t, dbURL)
	ctx := context.Background()
	const pw = "correct horse battery staple"
	n := 0
	newAccount := func(t *testing.T) (string, session) {
		n++
		email := fmt.Sprintf("replica-%d@example.com", n)
		return email, signupBearer(t, hc, front, email, pw)
	}

	t.Run("started together", func(t *testing.T) {
		// Each replica ran the migrations at start-up; the migration lock
		// must have let exactly one schema come out of it, not a dirty one.
		for i, p := range reps {
			if s := status(p.base + "/readyz"); s != 200 {
				t.Errorf("replica %d: /readyz %d", i, s)
			}
		}
		var version int
		var dirty bool
		err := conn.QueryRow(ctx, `SELECT version, dirty FROM schema_migrations`).
			Scan(&version, &dirty)
		if err != nil || dirty || version < 3 {
			t.Errorf("schema_migrations: version %d, dirty %v, %v", version, dirty, err)
		}
	})

	t.Run("TOTP step used once", func(t *testing.T) {
		email, s := newAccount(t)
		e, _ := enrol(t, hc, front, s)
		// The step after the one that confirmed the enrolment: inside the
		// window for a minute, so only its use can make it fail.
		code := totpCode(e.secret, e.step+1)
		for i, p := range reps {
			partial := loginBearer(t, hc, p.base, email, pw)
			r := call(hc, p.base, "POST", "/v1/2fa/totp/verify", partial.token,
				map[string]string{"code": code})
			want, wantCode := 422, "invalid_otp"
			if i == 0 {
				want, wantCode = 200, ""
			}
			if r.status != want || r.code() != wantCode {
				t.Errorf("replica %d: want %d %s: %s", i, want, wantCode, r)
			}
		}
	})

	t.Run("TOTP step raced", func(t *testing.T) {
		email, s := newAccount(t)
		e, _ := enrol(t, hc, front, s)
		partials := make([]session, len(reps))
		for i, p := range reps {
			partials[i] = loginBearer(t, hc, p.base, email, pw)
		}
		code := totpCode(e.secret, e.step+1)
		replies := make([]reply, len(reps))
		var wg sync.WaitGroup
		for i, p := range reps {
			wg.Go(func() {
				replies[i] = call(hc, p.base, "POST", "/v1/2fa/totp/verify",
					partials[i].token, map[string]string{"code": code})
			})
		}
		wg.Wait()
		// The losers are refused as a used step (422) or, when their
		// attempt lost the race to be counted, as throttled (429).
		passed := 0
		for i, r := range replies {
			switch {
			case r.status == 200:
				passed++
			case r.status == 422 && r.code() == "invalid_otp",
				r.status == 429 && problemFault(r) == "":
			default:
				t.Errorf("replica %d: %s", i, r)
			}
		}
		if passed != 1 {
			t.Errorf("one code sent to three replicas at once passed %d times: %v",
				passed, replies)
		}
	})

	t.Run("revocation seen at once", func(t *testing.T) {
		revokers := []struct {
			name   string
			revoke func(p *authsvc, victim, other session) reply
		}{
			{"logout", func(p *authsvc, victim, _ session) reply {
				return call(hc, p.base, "POST", "/v1/logout", victim.token, nil)
			}},
			{"delete one", func(p *authsvc, victim, other session) reply {
				return call(hc, p.base, "DELETE", "/v1/sessions/"+victim.id, other.token, nil)
			}},
			{"delete others", func(p *authsvc, _, other session) reply {
				return call(hc, p.base, "DELETE", "/v1/sessions", other.token, nil)
			}},
		}
		// Each way of revoking goes through another replica; the victim
		// is then refused by all three, with no time for any cache to age.
		for i, rv := range revokers {
			email, other := newAccount(t)
			victim := loginBearer(t, hc, front, email, pw)
			// Every replica has seen the session work.
			for _, p := range reps {
				must(t, hc, p.base, 200, "GET", "/v1/session", victim.token, nil)
			}
			if r := rv.revoke(reps[i], victim, other); r.status != 204 {
				t.Fatalf("%s through replica %d: %s", rv.name, i, r)
			}
			for j, p := range reps {
				r := call(hc, p.base, "GET", "/v1/authorize", victim.token, nil)
				if r.status != 401 {
					t.Errorf("%s through replica %d, then replica %d: %s", rv.name, i, j, r)
				}
			}
		}
	})

	t.Run("second-factor failures counted together", func(t *testing.T) {
		email, s := newAccount(t)
		e, _ := enrol(t, hc, front, s)
		var userID string
		if err := conn.QueryRow(ctx, `SELECT id FROM users WHERE email = $1`, email).
			Scan(&userID); err != nil {
			t.Fatal(err)
		}
		// One partial session per replica, so that each replica sees its
		// own client fail.
		partials := make([]session, len(reps))
		for i, p := range reps {
			partials[i] = loginBearer(t, hc, p.base, email, pw)
		}
		wrong := map[string]string{"code": totpCode(e.secret, e.step+40)}
		right := map[string]string{"code": totpCode(e.secret, e.step+1)}
		verify := func(i int, body map[string]string) reply {
			return call(hc, reps[i].base, "POST", "/v1/2fa/totp/verify",
				partials[i].token, body)
		}
		failures := func() int {
			var n int
			if err := conn.QueryRow(ctx, `SELECT otp_failures FROM users WHERE id = $1`,
				userID).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}

		// Five free failures, spread over the replicas.
		for k := range 5 {
			if r := verify(k%3, wrong); r.status != 422 {
				t.Fatalf("failure %d through replica %d: %s", k+1, k%3, r)
			}
		}
		if n := failures(); n != 5 {
			t.Fatalf("five failures on three replicas stored as %d", n)
		}
		// The sixth comes after the one-second wait and sets a wait of
		// two seconds, which every replica enforces, for the right code too.
		time.Sleep(1100 * time.Millisecond)
		if r := verify(2, wrong); r.status != 422 {
			t.Fatalf("sixth failure: %s", r)
		}
		var wait int
		for i := range reps {
			r := verify(i, right)
			if r.status != 429 || problemFault(r) != "" {
				t.Errorf("replica %d, right code within the wait: %s", i, r)
				continue
			}
			wait, _ = strconv.Atoi(r.header.Get("Retry-After"))
		}
		if n := failures(); n != 6 {
			t.Errorf("six failures stored as %d; refused attempts must not count", n)
		}
		// Waiting out Retry-After is all it takes; the count then resets.
		time.Sleep(time.Duration(wait)*time.Second + 100*time.Millisecond)
		if r := verify(1, right); r.status != 200 {
			t.Errorf("right code after the wait: %s", r)
		}
		if n := failures(); n != 0 {
			t.Errorf("a success left %d failures", n)
		}
	})

	t.Run("workload through a round-robin proxy", func(t *testing.T) {
		// Journeys of several requests land on different replicas: a login
		// on one, its second factor on the next, its check on the third.
		w := newWorkload([]string{front}, defaultMix)
		seed(t, w, 12, 12)
		w.runN(8, 25)
		if c := w.counts(); len(c) != 1 {
			t.Errorf("outcomes: %s\n%s", formatCounts(c), describe(w.eventsSince(time.Time{})))
		}
		w.verifyLedger(t, postgresDialect, openDB(t, postgresDialect, dbURL), front)
		t.Log(w.summary())
	})

	for i, p := range reps {
		if !p.alive() {
			t.Errorf("replica %d exited: %v", i, p.err)
		}
	}
}
