package reliability

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// outageLength is how long the database stays away: longer than the
	// store's 5-second deadline, so that requests caught in the middle
	// have to give up rather than wait it out.
	outageLength = 8 * time.Second
	// loadClients is how many clients keep the service busy meanwhile.
	loadClients = 12
	// goroutineSlack is how many more goroutines than before the load an
	// idle service may keep: pool connections, timers, the odd idle
	// keep-alive connection.
	goroutineSlack = 20
)

// The database goes away under a mixed load, in two ways: the server stops
// at once (pg_ctl stop -m immediate), or the network to it silently drops
// every packet. Either way every request gets an answer within
// answerDeadline, a normal one or the contract's 503; /healthz stays 200,
// /readyz turns 503; the process lives on and its goroutines do not pile
// up. Once the database is back the same process serves again, and the
// database holds exactly what the clients were told.
func TestDatabaseOutage(t *testing.T) {
	tests := []struct {
		name    string
		through bool // reach the database through a tcpProxy that freezes
	}{
		{name: "server stopped"},
		{name: "network silent", through: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pg := newCluster(t)
			direct := pg.createDatabase(t, "authsvc")
			dbURL := direct
			cut := func() { pg.stopImmediately(t) }
			heal := func() { pg.start(t) }
			if tt.through {
				px := newTCPProxy(t, fmt.Sprintf("127.0.0.1:%d", pg.port))
				dbURL = fmt.Sprintf("postgres://postgres@%s/authsvc?sslmode=disable", px.addr())
				cut, heal = px.freeze, px.unfreeze
			}
			p := startAuthsvc(t, t.TempDir(), pgEnv(dbURL, newKey()))
			w := newWorkload([]string{p.base}, defaultMix)
			seed(t, w, 24, 24)
			outageUnderLoad(t, p, w, cut, heal)
			w.verifyLedger(t, postgresDialect, openDB(t, postgresDialect, direct), p.base)
		})
	}
}

// seed creates accounts without and with 2FA from a few clients at once,
// and fails the test if any of that did not go through.
func seed(t testing.TB, w *workload, plain, twofa int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := i; j < max(plain, twofa); j += 4 {
				if j < plain {
					w.signup()
				}
				if j < twofa {
					w.enrol()
				}
			}
		})
	}
	wg.Wait()
	if c := w.counts(); len(c) != 1 || c[kindOK] == 0 {
		t.Fatalf("seeding the accounts: %s\n%s", formatCounts(c), describe(w.events))
	}
}

// outageUnderLoad runs w against p, cuts the database off for outageLength
// with cut, heals it, and checks every answer on the way.
func outageUnderLoad(t *testing.T, p *authsvc, w *workload, cut, heal func()) {
	t.Helper()
	before := idleGoroutines(t, p, w)

	ctx, stopLoad := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() {
		w.run(ctx, loadClients)
		close(loadDone)
	}()
	defer func() {
		stopLoad()
		<-loadDone
	}()
	time.Sleep(2 * time.Second)

	cutAt := time.Now()
	cut()
	peak := probeWhileDown(t, p, outageLength)

	healAt := time.Now()
	heal()
	if !settle(30*time.Second, func() bool { return status(p.base+"/readyz") == 200 }) {
		t.Fatalf("/readyz not 200 within 30s of the database's return")
	}
	readyAt := time.Now()
	time.Sleep(3 * time.Second)
	stopLoad()
	<-loadDone

	// Afterwards, without a restart, everything works.
	afterAt := time.Now()
	w.runN(loadClients, 15)

	for _, e := range w.eventsSince(time.Time{}) {
		switch {
		case e.end.Before(cutAt):
			t.Errorf("before the outage: %s", e)
		case !e.start.Before(afterAt):
			t.Errorf("after recovery: %s", e)
		case e.kind != kindUnavailable && e.kind != kindThrottled:
			t.Errorf("%s", e)
		}
	}
	if w.counts()[kindServerError] > 0 {
		t.Errorf("the service's errors behind its 500s:\n%s", errorLines(p))
	}
	if w.counts()[kindUnavailable] == 0 {
		t.Errorf("no request was answered 503 during the outage: was it one?")
	}
	if !p.alive() {
		t.Fatalf("authsvc exited: %v\n%s", p.err, tail(p.logs.String()))
	}
	if strings.Contains(p.logs.String(), "panic") {
		t.Errorf("the log mentions a panic:\n%s", tail(p.logs.String()))
	}

	after := idleGoroutines(t, p, w)
	if after > before+goroutineSlack {
		t.Errorf("goroutines: %d before the load, %d after it", before, after)
	}
	checkNoConnectionsHeld(t, p)
	t.Logf("goroutines: %d idle before, %d at most while down, %d idle after; "+
		"ready %v after the database returned; %s",
		before, peak, after, readyAt.Sub(healAt).Round(100*time.Millisecond), w.summary())
}

// probeWhileDown watches the service for d while its database is away:
// /healthz must answer 200 and /readyz 503, and the process must live. It
// returns the most goroutines seen.
func probeWhileDown(t *testing.T, p *authsvc, d time.Duration) int {
	t.Helper()
	peak := 0
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if s := status(p.base + "/healthz"); s != 200 {
			t.Errorf("/healthz answered %d while the database was away", s)
		}
		if s := status(p.base + "/readyz"); s != 503 {
			t.Errorf("/readyz answered %d while the database was away", s)
		}
		if m, err := p.metrics(); err == nil {
			peak = max(peak, int(m["go_goroutines"]))
		} else {
			t.Errorf("/metrics while the database was away: %v", err)
		}
		if !p.alive() {
			t.Fatalf("authsvc exited while the database was away: %v\n%s",
				p.err, tail(p.logs.String()))
		}
		time.Sleep(500 * time.Millisecond)
	}
	return peak
}

// status is the status code of a GET, 0 when there is no answer within
// checkDeadline.
func status(u string) int {
	r := call(probeClient, u, "GET", "", "", nil)
	if r.err != nil {
		return 0
	}
	return r.status
}

// probeClient sends the probes, apart from the workload's connections.
var probeClient = &http.Client{Timeout: checkDeadline}

// idleGoroutines returns go_goroutines of p once the workload's idle
// connections are closed and the count has stopped falling.
func idleGoroutines(t testing.TB, p *authsvc, w *workload) int {
	t.Helper()
	w.hc.CloseIdleConnections()
	probeClient.CloseIdleConnections()
	last := -1
	settle(10*time.Second, func() bool {
		n := int(p.metric(t, "go_goroutines"))
		stable := n == last
		last = n
		return stable
	})
	return last
}

// checkNoConnectionsHeld waits for the pool to have no connection in use,
// as nothing is being served: one still held after every request has been
// answered is a leak.
func checkNoConnectionsHeld(t testing.TB, p *authsvc) {
	t.Helper()
	var held float64
	if !settle(10*time.Second, func() bool {
		held = p.metric(t, "authsvc_db_connections_acquired")
		return held == 0
	}) {
		t.Errorf("authsvc_db_connections_acquired is %v with nothing being served", held)
	}
}

// String describes the event for failure messages.
func (e event) String() string {
	return fmt.Sprintf("%s at %s (%s): %s", e.kind, e.start.Format("15:04:05.000"),
		e.act, e.detail)
}

// errorLines returns the log lines of p at level ERROR.
func errorLines(p *authsvc) string {
	var b strings.Builder
	for _, line := range strings.Split(p.logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) &&
			!strings.Contains(line, `"msg":"request"`) {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// describe lists events, at most 20, for a failure message.
func describe(events []event) string {
	var b strings.Builder
	for i, e := range events {
		if i == 20 {
			fmt.Fprintf(&b, "... and %d more\n", len(events)-20)
			break
		}
		b.WriteString(e.String() + "\n")
	}
	return b.String()
}
