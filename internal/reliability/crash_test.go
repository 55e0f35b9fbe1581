package reliability

import (
	"context"
	"crypto/sha256"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// crashRuns is how many times the crash test kills authsvc.
const crashRuns = 30

// crashCase is one account prepared for a request that a crash may cut
// short, and what the request sends.
type crashCase struct {
	email     string
	userID    string
	use       session // the session the request is made with
	other     session // a second session of the account, where the op needs one
	secret    string
	codes     []string
	step      int64  // the TOTP step the request sends, or the last one used
	oldHash   string // the password hash before the request
	nSessions int    // the account's sessions before the request
	body      map[string]string
}

// crashHarness is what the crash test works with: a long-lived authsvc
// that prepares accounts and answers afterwards, and a connection to the
// database for reading the truth.
type crashHarness struct {
	hc     *http.Client
	helper string
	conn   *pgx.Conn
	seq    int
}

const (
	crashPassword    = "correct horse battery staple"
	crashNewPassword = "a different horse, still stapled"
)

// crashOp is a request that changes several rows at once, and the two
// states of the database the contract allows after it: all of it, or
// none.
type crashOp struct {
	name   string
	path   string
	setup  func(t *testing.T, h *crashHarness, c *crashCase)
	reveal func(t *testing.T, h *crashHarness, c *crashCase, r reply) bool
}

// The database is the only state of authsvc, and it is changed in
// transactions, so a process killed with SIGKILL at any moment of enable,
// verify, recovery or a password change leaves each account wholly before
// or wholly after the request. Each of crashRuns runs prepares one account
// per request with a helper process, sends the four requests to a fresh
// process at random moments around the moment it is killed, and then reads
// the database and asks the helper: never a TOTP secret without recovery
// codes, never a rotation half done, never a step or recovery code spent
// and still accepted, never an answered 200 that did not stick.
func TestCrashConsistency(t *testing.T) {
	pg := newCluster(t)
	dbURL := pg.createDatabase(t, "authsvc")
	env := pgEnv(dbURL, newKey())
	helper := startAuthsvc(t, t.TempDir(), env)
	h := &crashHarness{hc: newHTTPClient(), helper: helper.base, conn: connectURL(t, dbURL)}
	ops := crashOps()
	rng := mathrand.New(mathrand.NewPCG(uint64(time.Now().UnixNano()), 1))

	// One run without a kill shows how long each request takes in a fresh
	// process, all four at once, and that each op, uninterrupted, reaches
	// its "after" state.
	latency := make([]time.Duration, len(ops))
	victim := startAuthsvc(t, t.TempDir(), env)
	warmUp(victim)
	cases := make([]*crashCase, len(ops))
	for i, op := range ops {
		cases[i] = h.prepare(t, op)
	}
	replies := make([]reply, len(ops))
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Go(func() {
			replies[i] = call(h.hc, victim.base, "POST", op.path, cases[i].use.token,
				cases[i].body)
		})
	}
	wg.Wait()
	for i, op := range ops {
		latency[i] = replies[i].took
		if replies[i].status != 200 || !op.reveal(t, h, cases[i], replies[i]) {
			t.Fatalf("%s without a crash: %s", op.name, replies[i])
		}
	}
	victim.stop(t)
	span := 5 * time.Millisecond
	for _, l := range latency {
		span = max(span, 2*l)
	}

	// tally counts, per op, the state each kill left and whether the
	// client lost its answer.
	tally := map[string]map[string]int{}
	bin := authsvcBinary(t)
	for run := range crashRuns {
		cases := make([]*crashCase, len(ops))
		for i, op := range ops {
			cases[i] = h.prepare(t, op)
		}
		v, err := launch(bin, t.TempDir(), env)
		if v != nil {
			t.Cleanup(v.kill)
		}
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		warmUp(v)

		// Each request starts between half and one and a half of its
		// latency before the kill, so that kills land before, inside and
		// after each of them, most often near the end, where it commits.
		replies := make([]reply, len(ops))
		start := time.Now()
		var wg sync.WaitGroup
		for i, op := range ops {
			lead := latency[i]/2 + time.Duration(rng.Int64N(int64(latency[i])+1))
			wg.Go(func() {
				time.Sleep(time.Until(start.Add(span - lead)))
				replies[i] = call(h.hc, v.base, "POST", op.path, cases[i].use.token,
					cases[i].body)
			})
		}
		time.Sleep(time.Until(start.Add(span)))
		v.kill()
		wg.Wait()

		// Read each account back and classify it; reveal reports any state
		// in between as a test error.

		for i, op := range ops {
			if replies[i].err == nil {
				// Aim the next kill by what this process took.
				latency[i] = (3*latency[i] + replies[i].took) / 4
			}
			after := op.reveal(t, h, cases[i], replies[i])
			outcome := "before"
			if after {
				outcome = "after"
			}
			if replies[i].err != nil {
				outcome += ", cut off"
			}
			if tally[op.name] == nil {
				tally[op.name] = map[string]int{}
			}
			tally[op.name][outcome]++
		}
		if t.Failed() {
			t.Fatalf("run %d broke an invariant; the victim's log:\n%s",
				run, tail(v.logs.String()))
		}
	}

	checkGlobalInvariants(t, h.conn)
	names := make([]string, 0, len(tally))
	for name := range tally {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "\n  %-9s %s", name, formatCounts(tally[name]))
	}
	// PostgreSQL logs each client that vanished inside a transaction.
	torn := strings.Count(pg.logTail(0),
		"unexpected EOF on client connection with an open transaction")
	t.Logf("%d kills, %d of them inside a transaction; the state each request left, "+
		"and whether its answer was lost:%s", crashRuns, torn, b.String())
}

// warmUp opens the pool's connections of a fresh process, so that the
// requests that follow take as long as they would in a running service.
func warmUp(p *authsvc) {
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { status(p.base + "/readyz") })
	}
	wg.Wait()
}

// prepare makes an account ready for op through the helper.
func (h *crashHarness) prepare(t *testing.T, op crashOp) *crashCase {
	t.Helper()
	h.seq++
	c := &crashCase{email: fmt.Sprintf("crash-%s-%d@example.com", op.name, h.seq)}
	c.use = signupBearer(t, h.hc, h.helper, c.email, crashPassword)
	// The hash before the request tells a changed password from an
	// unchanged one without a login, which would cost a hash.
	if err := h.conn.QueryRow(context.Background(),
		`SELECT id, password_hash FROM users WHERE email = $1`, c.email).
		Scan(&c.userID, &c.oldHash); err != nil {
		t.Fatal(err)
	}
	op.setup(t, h, c)
	c.nSessions = h.sessionCount(t, c.userID)
	return c
}

// crashOps are the four requests the crash test interrupts.
func crashOps() []crashOp {
	return []crashOp{
		{name: "enable", path: "/v1/2fa/totp/enable",
			setup: func(t *testing.T, h *crashHarness, c *crashCase) {
				r := must(t, h.hc, h.helper, 200, "POST", "/v1/2fa/totp/setup", c.use.token, nil)
				c.secret, c.step = r.str("secret"), stepAt(time.Now())
				c.body = map[string]string{"code": totpCode(c.secret, c.step)}
			},
			reveal: revealEnable},
		{name: "verify", path: "/v1/2fa/totp/verify",
			setup: func(t *testing.T, h *crashHarness, c *crashCase) {
				h.enrolAndSignIn(t, c)
				c.body = map[string]string{"code": totpCode(c.secret, c.step+1)}
			},
			reveal: revealVerify},
		{name: "recovery", path: "/v1/2fa/recovery",
			setup: func(t *testing.T, h *crashHarness, c *crashCase) {
				h.enrolAndSignIn(t, c)
				c.body = map[string]string{"code": c.codes[0]}
			},
			reveal: revealRecovery},
		{name: "password", path: "/v1/password",
			setup: func(t *testing.T, h *crashHarness, c *crashCase) {
				c.other = loginBearer(t, h.hc, h.helper, c.email, crashPassword)
				c.body = map[string]string{"current_password": crashPassword,
					"new_password": crashNewPassword}
			},
			reveal: revealPassword},
	}
}

// enrolAndSignIn turns TOTP on for the account and opens the partial
// session the request will use.
func (h *crashHarness) enrolAndSignIn(t *testing.T, c *crashCase) {
	t.Helper()
	e, full := enrol(t, h.hc, h.helper, c.use)
	c.secret, c.codes, c.step, c.other = e.secret, e.codes, e.step, full
	c.use = loginBearer(t, h.hc, h.helper, c.email, crashPassword)
}

// userState is what the crash test reads of an account.
type userState struct {
	secret      bool
	step        int64
	failures    int
	hash        string
	codes, used int
	enrolments  int
}

// user reads the account's second-factor and password state.
func (h *crashHarness) user(t *testing.T, c *crashCase) userState {
	t.Helper()
	var u userState
	err := h.conn.QueryRow(context.Background(), `
		SELECT two_factor_secret IS NOT NULL, totp_last_step, otp_failures, password_hash,
			(SELECT count(*) FROM recovery_codes WHERE user_id = u.id),
			(SELECT count(*) FROM recovery_codes WHERE user_id = u.id AND used_at IS NOT NULL),
			(SELECT count(*) FROM totp_enrollments WHERE user_id = u.id)
		FROM users u WHERE id = $1`, c.userID).
		Scan(&u.secret, &u.step, &u.failures, &u.hash, &u.codes, &u.used, &u.enrolments)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// sessionRow is a session as stored: found, and the hash it has now.
type sessionRow struct {
	found    bool
	hash     []byte
	verified bool
}

// sessionByID reads the session with public id id.
func (h *crashHarness) sessionByID(t *testing.T, id string) sessionRow {
	t.Helper()
	var s sessionRow
	err := h.conn.QueryRow(context.Background(),
		`SELECT token_hash, two_factor_verified FROM sessions WHERE id = $1`, id).
		Scan(&s.hash, &s.verified)
	if err == pgx.ErrNoRows {
		return s
	}
	if err != nil {
		t.Fatal(err)
	}
	s.found = true
	return s
}

// stored reports whether a session with token tok exists.
func (h *crashHarness) stored(t *testing.T, tok string) bool {
	t.Helper()
	sum := sha256.Sum256([]byte(tok))
	var n int
	if err := h.conn.QueryRow(context.Background(),
		`SELECT count(*) FROM sessions WHERE token_hash = $1`, sum[:]).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// sessionCount counts the account's stored sessions, live or expired.
func (h *crashHarness) sessionCount(t *testing.T, userID string) int {
	t.Helper()
	var n int
	if err := h.conn.QueryRow(context.Background(),
		`SELECT count(*) FROM sessions WHERE user_id = $1`, userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// rotated checks the session the request used: after the request it has
// one new token, verified by the second-factor ops; before, its old
// token. In neither state has the account gained or lost a session, but
// for a password change, which ends the others.
func (h *crashHarness) rotated(t *testing.T, op string, c *crashCase, after bool, r reply) {
	t.Helper()
	s := h.sessionByID(t, c.use.id)
	old := h.stored(t, c.use.token)
	switch {
	case !s.found:
		t.Errorf("%s %s: the session is gone", op, c.email)
	case after && (old || op != "password" && !s.verified):
		t.Errorf("%s %s: applied, yet the old token is stored %v, verified %v",
			op, c.email, old, s.verified)
	case !after && !old:
		t.Errorf("%s %s: not applied, yet the session's token changed", op, c.email)
	}
	if after && r.status == 200 && !h.stored(t, sessionOf(r).token) {
		t.Errorf("%s %s: the token in the 200 is not the stored one", op, c.email)
	}
	if n := h.sessionCount(t, c.userID); n != c.nSessions && op != "password" {
		t.Errorf("%s %s: %d sessions, %d before", op, c.email, n, c.nSessions)
	}
}

// answered checks that a 200 stuck, and that the helper, asked with the
// session the request used, agrees with the database.
func (h *crashHarness) answered(t *testing.T, op string, c *crashCase, after bool, r reply) {
	t.Helper()
	if r.err == nil && r.status == 200 && !after {
		t.Errorf("%s %s: answered 200, yet the database is as before", op, c.email)
	}
	if r.err == nil && r.status != 200 {
		t.Errorf("%s %s: %s", op, c.email, r)
	}
	want := 200
	if after {
		want = 401
	}
	if got := call(h.hc, h.helper, "GET", "/v1/session", c.use.token, nil); got.status != want {
		t.Errorf("%s %s: the old token, after the crash: %s", op, c.email, got)
	}
}

// revealEnable tells whether enable took effect and checks that it did so
// wholly: the secret, the step, ten fresh recovery codes and the end of the
// pending enrolment all together, or none of them.
func revealEnable(t *testing.T, h *crashHarness, c *crashCase, r reply) bool {
	t.Helper()
	u := h.user(t, c)
	after := u.secret
	if after && (u.codes != 10 || u.used != 0 || u.enrolments != 0 || u.step != c.step) ||
		!after && (u.codes != 0 || u.enrolments != 1 || u.step != 0) {
		t.Errorf("enable %s: torn state %+v", c.email, u)
	}
	h.rotated(t, "enable", c, after, r)
	h.answered(t, "enable", c, after, r)
	return after
}

// revealVerify tells whether verify took effect: the step recorded and the
// session rotated and verified together, or neither.
func revealVerify(t *testing.T, h *crashHarness, c *crashCase, r reply) bool {
	t.Helper()
	u := h.user(t, c)
	after := u.step == c.step+1
	// The attempt is counted before the code is checked, so a crash in
	// between leaves one failure behind; a success leaves none.
	if after && u.failures != 0 || !after && (u.step != c.step || u.failures > 1) {
		t.Errorf("verify %s: torn state %+v", c.email, u)
	}
	h.rotated(t, "verify", c, after, r)
	h.answered(t, "verify", c, after, r)
	// The step is spent exactly when the database says so.
	want := 200
	if after {
		want = 422
	}
	p := loginBearer(t, h.hc, h.helper, c.email, crashPassword)
	got := call(h.hc, h.helper, "POST", "/v1/2fa/totp/verify", p.token, c.body)
	if got.status != want {
		t.Errorf("verify %s: the same code again: %s", c.email, got)
	}
	return after
}

// revealRecovery tells whether the recovery code was spent: the code used
// and the session rotated and verified together, or neither.
func revealRecovery(t *testing.T, h *crashHarness, c *crashCase, r reply) bool {
	t.Helper()
	u := h.user(t, c)
	after := u.used > 0
	if u.used > 1 || u.codes != 10 || !after && u.failures > 1 || after && u.failures != 0 {
		t.Errorf("recovery %s: torn state %+v", c.email, u)
	}
	h.rotated(t, "recovery", c, after, r)
	h.answered(t, "recovery", c, after, r)
	// Never used and usable: the code passes again exactly when the
	// database has it unused.
	want := 200
	if after {
		want = 422
	}
	p := loginBearer(t, h.hc, h.helper, c.email, crashPassword)
	got := call(h.hc, h.helper, "POST", "/v1/2fa/recovery", p.token, c.body)
	if got.status != want {
		t.Errorf("recovery %s: the same code again: %s", c.email, got)
	}
	return after
}

// revealPassword tells whether the password changed: the new hash, the
// rotated session and the end of every other session together, or none.
func revealPassword(t *testing.T, h *crashHarness, c *crashCase, r reply) bool {
	t.Helper()
	u := h.user(t, c)
	after := u.hash != c.oldHash
	other := h.stored(t, c.other.token)
	if after && other || !after && !other {
		t.Errorf("password %s: changed %v, the other session stored %v", c.email, after, other)
	}
	if n := h.sessionCount(t, c.userID); after && n != 1 || !after && n != c.nSessions {
		t.Errorf("password %s: changed %v with %d sessions, %d before",
			c.email, after, n, c.nSessions)
	}
	h.rotated(t, "password", c, after, r)
	h.answered(t, "password", c, after, r)
	pw := crashPassword
	if after {
		pw = crashNewPassword
	}
	loginBearer(t, h.hc, h.helper, c.email, pw)
	return after
}

// checkGlobalInvariants reads the whole database for states no request
// may leave: a TOTP secret without recovery codes, recovery codes without
// a secret, or more than one session under one public id.
func checkGlobalInvariants(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	queries := []struct{ what, sql string }{
		{"accounts with a secret and no recovery codes", `
			SELECT count(*) FROM users u WHERE two_factor_secret IS NOT NULL
			AND NOT EXISTS (SELECT 1 FROM recovery_codes r WHERE r.user_id = u.id)`},
		{"accounts with recovery codes and no secret", `
			SELECT count(*) FROM users u WHERE two_factor_secret IS NULL
			AND EXISTS (SELECT 1 FROM recovery_codes r WHERE r.user_id = u.id)`},
		{"session ids with several tokens", `
			SELECT count(*) FROM (SELECT id FROM sessions GROUP BY id HAVING count(*) > 1) d`},
	}
	for _, q := range queries {
		var n int
		if err := conn.QueryRow(context.Background(), q.sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s: %d", q.what, n)
		}
	}
}
