package reliability

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// action is one client journey of the workload.
type action string

const (
	actSignup   action = "signup"   // create an account
	actLogin    action = "login"    // sign in to an account without 2FA
	actCheck    action = "check"    // GET /v1/session or /v1/authorize
	actLogout   action = "logout"   // end a session
	actVerify   action = "verify"   // sign in with a TOTP code
	actRecovery action = "recovery" // sign in with a recovery code
	actEnrol    action = "enrol"    // sign up and turn on TOTP
)

// weight is how often an action is picked, relative to the others.
type weight struct {
	act action
	n   int
}

// defaultMix is the blend of journeys the outage tests and the soak run:
// mostly session checks, as at a gateway, with every writing journey in it.
var defaultMix = []weight{
	{actSignup, 10}, {actLogin, 12}, {actCheck, 45}, {actLogout, 8},
	{actVerify, 10}, {actRecovery, 6}, {actEnrol, 4},
}

// Kinds of outcome. Every request's outcome is one of them.
const (
	kindOK          = "ok"          // the answer the client expected
	kindUnavailable = "unavailable" // the contract's 503, with Retry-After
	kindThrottled   = "throttled"   // a 429 the client had earned
	kindServerError = "500"         // 500 or any 5xx other than 503
	kindBad503      = "bad_503"     // a 503 that is not the contract's
	kindBadProblem  = "bad_problem" // an error answer that is not a problem document
	kindTimeout     = "timeout"     // no answer within answerDeadline
	kindTransport   = "transport"   // connection refused or cut
	kindUnexpected  = "unexpected"  // a well-formed answer the client did not expect
)

// maxSessionsHeld keeps accounts well below the service's 100 sessions,
// beyond which the oldest is revoked and a live token would go bad.
const maxSessionsHeld = 40

// account is a user of the workload and what its clients were told.
type account struct {
	email, id string
	secret    string  // TOTP secret, "" while 2FA is off
	lastStep  int64   // the highest step tried, with or without a clear answer
	accepted  []int64 // steps answered 200
	codes     []string
	used      []string // recovery codes answered 200
	unsure    []string // recovery codes tried without a clear answer
	// unclear counts second-factor attempts since the last success that got
	// no clear answer; each may have counted as a failure.
	unclear  int
	sessions int // live and doubtful sessions it holds
}

// token is a bearer session token the workload holds.
type token struct {
	value string
	acct  *account
}

// event is a request whose outcome was not ok.
type event struct {
	start, end time.Time
	act        action
	target     string
	kind       string
	detail     string
}

// workload runs a mix of journeys from many clients at once against one or
// more authsvc addresses and keeps a ledger of every answer: which
// accounts, sessions, TOTP steps and recovery codes the clients were told
// exist, and which they could not be sure of. check compares the ledger
// with the database afterwards.
type workload struct {
	targets  []string
	hc       *http.Client
	prefix   string
	password string
	mix      []weight
	next     atomic.Uint64 // round-robin over targets

	mu       sync.Mutex
	seq      int
	plain    []*account // idle accounts without 2FA
	twofa    []*account // idle accounts with 2FA
	accounts map[string]*account
	doubtful map[string]bool // emails of signups without a clear answer
	enrolled []*account      // accounts with 2FA, busy or idle
	live     []*token        // idle tokens that must work
	dead     []*token        // tokens that must not work
	lost     int             // tokens whose fate is unclear
	total    int
	byKind   map[string]int
	byAction map[action]map[string]int
	events   []event
}

// newWorkload returns an empty workload against targets.
func newWorkload(targets []string, mix []weight) *workload {
	b := make([]byte, 4)
	rand.Read(b)
	return &workload{
		targets: targets, hc: newHTTPClient(), mix: mix,
		prefix:   "rel-" + hex.EncodeToString(b) + "-",
		password: "correct horse battery staple",
		accounts: map[string]*account{}, doubtful: map[string]bool{},
		byKind: map[string]int{}, byAction: map[action]map[string]int{},
	}
}

// target picks the address of the next request, in turn.
func (w *workload) target() string {
	return w.targets[int(w.next.Add(1)%uint64(len(w.targets)))]
}

// send makes one request of act and records its outcome, judged by
// verdict from the answer when it is well formed.
func (w *workload) send(act action, method, path, tok string, body any,
	verdict func(reply) string) reply {
	base := w.target()
	start := time.Now()
	r := call(w.hc, base, method, path, tok, body)
	kind := classify(r, verdict)

	w.mu.Lock()
	defer w.mu.Unlock()
	w.total++
	w.byKind[kind]++
	if w.byAction[act] == nil {
		w.byAction[act] = map[string]int{}
	}
	w.byAction[act][kind]++
	if kind != kindOK {
		w.events = append(w.events, event{start: start, end: time.Now(), act: act,
			target: base, kind: kind, detail: r.String()})
	}
	return r
}

// classify names the kind of an outcome. Transport failures, 5xx and
// malformed problems are judged here; verdict judges the rest.
func classify(r reply, verdict func(reply) string) string {
	switch {
	case r.timedOut():
		return kindTimeout
	case r.err != nil:
		return kindTransport
	case r.status == http.StatusServiceUnavailable && unavailableAnswer(r):
		return kindUnavailable
	case r.status == http.StatusServiceUnavailable:
		return kindBad503
	case r.status >= 500:
		return kindServerError
	case r.status >= 400 && problemFault(r) != "":
		return kindBadProblem
	}
	return verdict(r)
}

// expect is a verdict: ok for status want, unexpected otherwise.
func expect(want int) func(reply) string {
	return func(r reply) string {
		if r.status == want {
			return kindOK
		}
		return kindUnexpected
	}
}

// run starts n clients that pick journeys until ctx ends, and waits for
// them to finish the journeys they are in.
func (w *workload) run(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for i := range n {
		rng := mathrand.New(mathrand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
		wg.Go(func() {
			for ctx.Err() == nil {
				w.step(rng)
			}
		})
	}
	wg.Wait()
}

// runN starts n clients that each make count journeys, and waits for them.
func (w *workload) runN(n, count int) {
	var wg sync.WaitGroup
	for i := range n {
		rng := mathrand.New(mathrand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
		wg.Go(func() {
			for range count {
				w.step(rng)
			}
		})
	}
	wg.Wait()
}

// step makes one journey, picked by weight.
func (w *workload) step(rng *mathrand.Rand) {
	sum := 0
	for _, m := range w.mix {
		sum += m.n
	}
	pick := rng.IntN(sum)
	act := w.mix[len(w.mix)-1].act
	for _, m := range w.mix {
		if pick < m.n {
			act = m.act
			break
		}
		pick -= m.n
	}
	w.do(act, rng)
}

// do makes one journey of kind act; one that has nothing to work on
// checks a session instead, or signs up.
func (w *workload) do(act action, rng *mathrand.Rand) {
	done := false
	switch act {
	case actSignup:
		w.signup()
		done = true
	case actLogin:
		done = w.login(rng)
	case actCheck:
		done = w.check(rng)
	case actLogout:
		done = w.logout(rng)
	case actVerify:
		done = w.verify(rng)
	case actRecovery:
		done = w.recovery(rng)
	case actEnrol:
		w.enrol()
		done = true
	}
	if !done && !w.check(rng) {
		w.signup()
	}
}

// newEmail returns an address no account of any run has.
func (w *workload) newEmail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	return fmt.Sprintf("%s%d@example.com", w.prefix, w.seq)
}

// signup creates an account and keeps its first session. It returns the
// account, or nil when the answer was not a clear 201.
func (w *workload) signup() *account {
	email := w.newEmail()
	r := w.send(actSignup, "POST", "/v1/signup", "", credentials(email, w.password),
		expect(http.StatusCreated))
	// Only a 201 is clear; after anything else the account may exist or
	// not, and verifyLedger accepts either.
	if r.err != nil || r.status != http.StatusCreated {
		w.mu.Lock()
		w.doubtful[email] = true
		w.mu.Unlock()
		return nil
	}
	var m struct{ User struct{ ID string } }
	decode(r, &m)
	a := &account{email: email, id: m.User.ID, sessions: 1}
	w.mu.Lock()
	w.accounts[email] = a
	w.plain = append(w.plain, a)
	w.live = append(w.live, &token{value: sessionOf(r).token, acct: a})
	w.mu.Unlock()
	return a
}

// login opens one more session of an idle account without 2FA.
func (w *workload) login(rng *mathrand.Rand) bool {
	a := w.takeAccount(&w.plain, rng)
	if a == nil {
		return false
	}
	defer w.putAccount(&w.plain, a)
	// The session is counted before the request: a login without a clear
	// answer may still have opened one.
	if !w.roomForSession(a) {
		return false
	}
	r := w.send(actLogin, "POST", "/v1/login", "", credentials(a.email, w.password),
		func(r reply) string {
			if r.status == http.StatusOK && r.object()["two_factor_required"] == false {
				return kindOK
			}
			return kindUnexpected
		})
	if r.err != nil || r.status != http.StatusOK {
		w.forget()
		return true
	}
	w.mu.Lock()
	w.live = append(w.live, &token{value: sessionOf(r).token, acct: a})
	w.mu.Unlock()
	return true
}

// check validates an idle live token, as a gateway or an app does.
func (w *workload) check(rng *mathrand.Rand) bool {
	tk := w.takeToken(rng)
	if tk == nil {
		return false
	}
	path := "/v1/session"
	if rng.IntN(2) == 0 {
		path = "/v1/authorize/app"
	}
	w.send(actCheck, "GET", path, tk.value, nil, expect(http.StatusOK))
	w.putToken(tk)
	return true
}

// logout ends an idle live session.
func (w *workload) logout(rng *mathrand.Rand) bool {
	tk := w.takeToken(rng)
	if tk == nil {
		return false
	}
	r := w.send(actLogout, "POST", "/v1/logout", tk.value, nil, expect(http.StatusNoContent))
	w.mu.Lock()
	defer w.mu.Unlock()
	if r.err == nil && r.status == http.StatusNoContent {
		w.dead = append(w.dead, tk)
		tk.acct.sessions--
	} else {
		w.lost++
	}
	return true
}

// partialLogin signs in to an account with 2FA and returns the partial
// session's token, "" without a clear answer.
func (w *workload) partialLogin(act action, a *account) string {
	if !w.roomForSession(a) {
		return ""
	}
	r := w.send(act, "POST", "/v1/login", "", credentials(a.email, w.password),
		func(r reply) string {
			if r.status == http.StatusOK && r.object()["two_factor_required"] == true {
				return kindOK
			}
			return kindUnexpected
		})
	if r.err != nil || r.status != http.StatusOK {
		w.forget()
		return ""
	}
	return sessionOf(r).token
}

// secondFactorVerdict judges the answer of verify or recovery: 200, or a
// 429 the account earned through attempts without a clear answer (the
// service counts an attempt before it checks the code).
func secondFactorVerdict(a *account) func(reply) string {
	return func(r reply) string {
		switch {
		case r.status == http.StatusOK:
			return kindOK
		case r.status == http.StatusTooManyRequests && a.unclear >= 5:
			return kindThrottled
		}
		return kindUnexpected
	}
}

// verify signs in to an idle account with 2FA and passes a TOTP code of a
// step not used before. Each account has a step to spare about twice a
// minute; without one the journey is not made.
func (w *workload) verify(rng *mathrand.Rand) bool {
	a := w.takeAccount(&w.twofa, rng)
	if a == nil {
		return false
	}
	defer w.putAccount(&w.twofa, a)
	// The service accepts the steps around now, each once: the current
	// one, or the next while the current one is spent.
	now := stepAt(time.Now())
	step := max(a.lastStep+1, now)
	if step > now+1 {
		return false
	}
	partial := w.partialLogin(actVerify, a)
	if partial == "" {
		return true
	}
	r := w.send(actVerify, "POST", "/v1/2fa/totp/verify", partial,
		map[string]string{"code": totpCode(a.secret, step)}, secondFactorVerdict(a))
	a.lastStep = step
	w.secondFactorDone(a, r, func() { a.accepted = append(a.accepted, step) })
	return true
}

// recovery signs in to an idle account with 2FA with a recovery code not
// tried before.
func (w *workload) recovery(rng *mathrand.Rand) bool {
	a := w.takeAccount(&w.twofa, rng)
	if a == nil {
		return false
	}
	defer w.putAccount(&w.twofa, a)
	if len(a.codes) == 0 {
		return false
	}
	partial := w.partialLogin(actRecovery, a)
	if partial == "" {
		return true
	}
	code := a.codes[0]
	a.codes = a.codes[1:]
	r := w.send(actRecovery, "POST", "/v1/2fa/recovery", partial,
		map[string]string{"code": code}, secondFactorVerdict(a))
	w.secondFactorDone(a, r, func() { a.used = append(a.used, code) })
	if r.err != nil || r.status != http.StatusOK {
		a.unsure = append(a.unsure, code)
	}
	return true
}

// secondFactorDone books the answer of verify or recovery: on 200 the
// partial token is gone and the rotated one must work.
func (w *workload) secondFactorDone(a *account, r reply, passed func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r.err == nil && r.status == http.StatusOK {
		passed()
		a.unclear = 0
		w.live = append(w.live, &token{value: sessionOf(r).token, acct: a})
		return
	}
	if r.status != http.StatusTooManyRequests {
		// The service counted the attempt before it looked at the code.
		a.unclear++
	}
	w.lost++
}

// enrol signs up and turns TOTP on. An account whose enable got no clear
// answer is left out of later journeys.
func (w *workload) enrol() {
	a := w.signup()
	if a == nil {
		return
	}
	if !w.takeSpecific(&w.plain, a) {
		return // another client took it meanwhile; enrol next time
	}
	tk := w.takeTokenOf(a)
	if tk == nil {
		w.putAccount(&w.plain, a)
		return
	}
	r := w.send(actEnrol, "POST", "/v1/2fa/totp/setup", tk.value, nil, expect(http.StatusOK))
	if r.err != nil || r.status != http.StatusOK {
		w.putToken(tk)
		w.putAccount(&w.plain, a)
		return
	}
	// The confirming code spends its step, as any accepted code does.
	secret := r.str("secret")
	step := stepAt(time.Now())
	r = w.send(actEnrol, "POST", "/v1/2fa/totp/enable", tk.value,
		map[string]string{"code": totpCode(secret, step)}, expect(http.StatusOK))

	w.mu.Lock()
	defer w.mu.Unlock()
	if r.err != nil || r.status != http.StatusOK {
		// Maybe enabled, maybe not: the account stays out of every pool,
		// and check still holds it to the invariants.
		w.lost++
		return
	}
	var m struct {
		RecoveryCodes []string `json:"recovery_codes"`
		SessionToken  string   `json:"session_token"`
	}
	decode(r, &m)
	a.secret, a.codes, a.lastStep = secret, m.RecoveryCodes, step
	a.accepted = append(a.accepted, step)
	w.dead = append(w.dead, tk)
	w.live = append(w.live, &token{value: m.SessionToken, acct: a})
	w.twofa = append(w.twofa, a)
	w.enrolled = append(w.enrolled, a)
}

// roomForSession reports whether a may open one more session, and counts
// it as held when so.
func (w *workload) roomForSession(a *account) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if a.sessions >= maxSessionsHeld {
		return false
	}
	a.sessions++
	return true
}

// forget notes a session that may or may not exist.
func (w *workload) forget() {
	w.mu.Lock()
	w.lost++
	w.mu.Unlock()
}

// takeAccount removes a random idle account from pool, nil if none, so
// that one client at a time works with it.
func (w *workload) takeAccount(pool *[]*account, rng *mathrand.Rand) *account {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := *pool
	if len(p) == 0 {
		return nil
	}
	i := rng.IntN(len(p))
	a := p[i]
	p[i] = p[len(p)-1]
	*pool = p[:len(p)-1]
	return a
}

// takeSpecific removes a from pool, reporting whether it was there.
func (w *workload) takeSpecific(pool *[]*account, a *account) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := *pool
	for i := range p {
		if p[i] == a {
			p[i] = p[len(p)-1]
			*pool = p[:len(p)-1]
			return true
		}
	}
	return false
}

// putAccount returns an account to its pool.
func (w *workload) putAccount(pool *[]*account, a *account) {
	w.mu.Lock()
	*pool = append(*pool, a)
	w.mu.Unlock()
}

// takeToken removes a random idle live token, nil if none.
func (w *workload) takeToken(rng *mathrand.Rand) *token {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.live) == 0 {
		return nil
	}
	i := rng.IntN(len(w.live))
	tk := w.live[i]
	w.live[i] = w.live[len(w.live)-1]
	w.live = w.live[:len(w.live)-1]
	return tk
}

// takeTokenOf removes an idle live token of a, nil if none.
func (w *workload) takeTokenOf(a *account) *token {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, tk := range w.live {
		if tk.acct == a {
			w.live[i] = w.live[len(w.live)-1]
			w.live = w.live[:len(w.live)-1]
			return tk
		}
	}
	return nil
}

// putToken returns a token to the idle live ones.
func (w *workload) putToken(tk *token) {
	w.mu.Lock()
	w.live = append(w.live, tk)
	w.mu.Unlock()
}

// counts returns how many requests ended in each kind of outcome.
func (w *workload) counts() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.byKind))
	for k, v := range w.byKind {
		out[k] = v
	}
	return out
}

// eventsSince returns the outcomes that were not ok, in order, that
// started at or after from.
func (w *workload) eventsSince(from time.Time) []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []event
	for _, e := range w.events {
		if !e.start.Before(from) {
			out = append(out, e)
		}
	}
	return out
}

// summary is one line per journey with its outcomes by kind.
func (w *workload) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests: %s\n", w.total, formatCounts(w.byKind))
	acts := make([]string, 0, len(w.byAction))
	for a := range w.byAction {
		acts = append(acts, string(a))
	}
	sort.Strings(acts)
	for _, a := range acts {
		fmt.Fprintf(&b, "  %-9s %s\n", a, formatCounts(w.byAction[action(a)]))
	}
	fmt.Fprintf(&b, "  ledger: %d accounts (%d with 2FA), %d doubtful signups, "+
		"%d live and %d ended sessions, %d sessions of unclear fate",
		len(w.accounts), len(w.enrolled), len(w.doubtful), len(w.live), len(w.dead), w.lost)
	return b.String()
}

// formatCounts writes counts as "kind=n" pairs in a stable order.
func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// decode reads a JSON answer into v.
func decode(r reply, v any) {
	_ = json.Unmarshal(r.body, v)
}

// dialect is the placeholder style of a database/sql driver.
type dialect struct {
	driver string
	ph     func(i int) string
}

var (
	postgresDialect = dialect{"pgx", func(i int) string { return fmt.Sprintf("$%d", i) }}
	sqliteDialect   = dialect{"sqlite", func(int) string { return "?" }}
)

// openDB opens the database authsvc uses, to inspect it directly.
func openDB(t testing.TB, d dialect, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(d.driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// verifyLedger compares what the clients were told with the database and
// with the service at base, after the workload has stopped:
//
//   - every account a signup got 201 for exists once, and no account
//     exists that no signup asked for;
//   - every session a client holds as live is stored and works, and every
//     session a client ended is gone and refused;
//   - each account with 2FA has its secret, a last TOTP step no lower than
//     any step accepted, ten recovery codes, and as many of them used as
//     were accepted, give or take those tried without a clear answer;
//   - no account has a secret without recovery codes or codes without a
//     secret;
//   - an accepted TOTP code or recovery code, tried again, is refused.
func (w *workload) verifyLedger(t testing.TB, d dialect, db *sql.DB, base string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	type userRow struct {
		id      string
		secret  bool
		step    int64
		used    int
		codes   int
		matches int
	}
	// The workload's emails are lower-case ASCII, so the typed form the
	// users table keeps is the one the ledger holds.
	rows, err := db.QueryContext(ctx, `
		SELECT email, id, two_factor_secret IS NOT NULL, totp_last_step,
			(SELECT count(*) FROM recovery_codes r WHERE r.user_id = u.id),
			(SELECT count(*) FROM recovery_codes r
				WHERE r.user_id = u.id AND r.used_at IS NOT NULL)
		FROM users u WHERE email LIKE `+d.ph(1), w.prefix+"%")
	if err != nil {
		t.Fatalf("read users: %v", err)
	}
	users := map[string]*userRow{}
	for rows.Next() {
		var email string
		u := &userRow{}
		if err := rows.Scan(&email, &u.id, &u.secret, &u.step, &u.codes, &u.used); err != nil {
			t.Fatalf("read users: %v", err)
		}
		if prev := users[email]; prev != nil {
			prev.matches++
			continue
		}
		u.matches = 1
		users[email] = u
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read users: %v", err)
	}
	rows.Close()

	// Accounts: none lost, none doubled, none from nowhere.
	for email, a := range w.accounts {
		u := users[email]
		switch {
		case u == nil:
			t.Errorf("account %s was created (201) and is not in the database", email)
		case u.matches != 1:
			t.Errorf("account %s is in the database %d times", email, u.matches)
		case u.id != a.id:
			t.Errorf("account %s has id %s in the database, %s in its signup", email, u.id, a.id)
		}
	}
	for email, u := range users {
		if w.accounts[email] == nil && !w.doubtful[email] {
			t.Errorf("account %s is in the database and no signup asked for it", email)
		}
		if u.secret != (u.codes > 0) {
			t.Errorf("account %s: secret set %v with %d recovery codes", email, u.secret, u.codes)
		}
	}

	// Second factors: steps and codes as the clients were told.
	for _, a := range w.enrolled {
		u := users[a.email]
		if u == nil {
			continue
		}
		if !u.secret {
			t.Errorf("account %s: 2FA was enabled (200) and the secret is gone", a.email)
		}
		for _, s := range a.accepted {
			if u.step < s {
				t.Errorf("account %s: step %d was accepted, the database's last step is %d",
					a.email, s, u.step)
			}
		}
		if u.codes != 10 || u.used < len(a.used) || u.used > len(a.used)+len(a.unsure) {
			t.Errorf("account %s: %d recovery codes, %d used; clients were told %d used "+
				"and %d unclear", a.email, u.codes, u.used, len(a.used), len(a.unsure))
		}
	}

	// Sessions: live ones stored, ended ones gone. Only the SHA-256 of a
	// token is stored, so the ledger's tokens are hashed the same way.
	count := func(tok string) int {
		h := sha256.Sum256([]byte(tok))
		var n int
		err := db.QueryRowContext(ctx,
			`SELECT count(*) FROM sessions WHERE token_hash = `+d.ph(1), h[:]).Scan(&n)
		if err != nil {
			t.Fatalf("read sessions: %v", err)
		}
		return n
	}
	for _, tk := range w.live {
		if n := count(tk.value); n != 1 {
			t.Errorf("a live session of %s is stored %d times", tk.acct.email, n)
		}
	}
	for _, tk := range w.dead {
		if n := count(tk.value); n != 0 {
			t.Errorf("an ended session of %s is still stored", tk.acct.email)
		}
	}

	w.verifyThroughAPI(t, base)
}

// verifyThroughAPI asks the service what verifyLedger read from the
// database, on a sample: live sessions work, ended ones are refused,
// accepted codes do not pass twice.
func (w *workload) verifyThroughAPI(t testing.TB, base string) {
	t.Helper()
	const sample = 200
	for i, tk := range w.live {
		if i == sample {
			break
		}
		if r := call(w.hc, base, "GET", "/v1/session", tk.value, nil); r.status != 200 {
			t.Errorf("a live session of %s: %s", tk.acct.email, r)
		}
	}
	for i, tk := range w.dead {
		if i == sample {
			break
		}
		if r := call(w.hc, base, "GET", "/v1/session", tk.value, nil); r.status != 401 {
			t.Errorf("an ended session of %s: %s", tk.acct.email, r)
		}
	}

	// A replayed code proves something only while its step is still
	// inside the window the service accepts.
	tried := 0
	for _, a := range w.enrolled {
		if tried == 10 || len(a.accepted) == 0 || a.sessions >= maxSessionsHeld ||
			a.accepted[len(a.accepted)-1] < stepAt(time.Now())-1 {
			continue
		}
		tried++
		replay := totpCode(a.secret, a.accepted[len(a.accepted)-1])
		p := loginBearer(t, w.hc, base, a.email, w.password)
		r := call(w.hc, base, "POST", "/v1/2fa/totp/verify", p.token,
			map[string]string{"code": replay})
		if r.status != http.StatusUnprocessableEntity && r.status != http.StatusTooManyRequests {
			t.Errorf("account %s: an accepted TOTP code, sent again: %s", a.email, r)
		}
		if len(a.used) > 0 {
			r := call(w.hc, base, "POST", "/v1/2fa/recovery", p.token,
				map[string]string{"code": a.used[0]})
			if r.status != http.StatusUnprocessableEntity &&
				r.status != http.StatusTooManyRequests {
				t.Errorf("account %s: a used recovery code, sent again: %s", a.email, r)
			}
		}
	}
}
