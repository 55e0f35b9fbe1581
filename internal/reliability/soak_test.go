package reliability

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

const (
	// soakClients is how many clients the soak runs at once: enough to
	// keep two CPUs busy, few enough that password hashing never queues
	// for its two-second limit.
	soakClients = 8
	// soakDown is how long the database stays stopped in the middle.
	soakDown = 3 * time.Second
	// soakGrace is how long after every replica is ready again 503s are
	// still expected, from pool connections that died with the server.
	soakGrace = 5 * time.Second
	// rssFactor and rssSlack bound memory growth: at the end, idle, a
	// replica's resident set may be at most rssFactor times what it was
	// after the warm-up, plus rssSlack.
	rssFactor = 1.5
	rssSlack  = 10 << 20
)

// usage is what one replica holds while idle.
type usage struct {
	goroutines int
	rss        int64
}

// The soak runs when AUTHSVC_SOAK names a duration (make soak): three
// replicas on one private PostgreSQL under a mixed workload of signups,
// logins, TOTP and recovery sign-ins, enrolments, checks and logouts, with
// the database stopped for soakDown halfway. It reports the requests, the
// outcomes by kind, and each replica's goroutines and resident memory
// after the warm-up and at the end, both idle and settled. It fails on any
// outcome but a 200-class answer or an earned 429, except 503s from the
// moment the database stops until soakGrace after every replica is ready
// again; on goroutines that grew by more than goroutineSlack; on a
// resident set at rest beyond rssFactor times the baseline plus rssSlack;
// and on a database that does not hold what the clients were told. The
// busiest figures of each half of the run are reported beside them.
func TestSoak(t *testing.T) {
	spec := os.Getenv("AUTHSVC_SOAK")
	if spec == "" {
		t.Skip("the soak runs when AUTHSVC_SOAK names its duration (make soak)")
	}
	duration, err := time.ParseDuration(spec)
	if err != nil || duration < 10*time.Second {
		t.Fatalf("AUTHSVC_SOAK=%q: want a Go duration of at least 10s", spec)
	}
	pg := newCluster(t)
	dbURL := pg.createDatabase(t, "authsvc")
	reps := startReplicas(t, 3, pgEnv(dbURL, newKey()))
	w := newWorkload(basesOf(reps), defaultMix)
	seed(t, w, 30, 30)

	// Warm up in three parts, resting after each. What a replica holds at
	// rest depends on when its collector last ran, which nothing outside
	// the process controls; the most seen at the three rests is the
	// baseline the end is held to.
	warm := min(max(duration/10, 6*time.Second), 30*time.Second)
	start := make([]usage, len(reps))
	for range 3 {
		runFor(w, warm/3)
		for i, u := range idleUsage(t, reps, w) {
			start[i].goroutines = max(start[i].goroutines, u.goroutines)
			start[i].rss = max(start[i].rss, u.rss)
		}
	}
	t.Logf("after a %v warm-up: %s", warm, formatUsage(start))

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	loadDone := make(chan struct{})
	go func() {
		w.run(ctx, soakClients)
		close(loadDone)
	}()
	begin := time.Now()
	half := begin.Add(duration / 2)
	peaks := [2][]usage{make([]usage, len(reps)), make([]usage, len(reps))}
	progressDone := make(chan struct{})
	go func() {
		watch(ctx, t, w, reps, begin, func(i int, u usage) {
			h := 0
			if time.Now().After(half) {
				h = 1
			}
			peaks[h][i].goroutines = max(peaks[h][i].goroutines, u.goroutines)
			peaks[h][i].rss = max(peaks[h][i].rss, u.rss)
		})
		close(progressDone)
	}()

	time.Sleep(duration / 2)
	downAt := time.Now()
	pg.stopImmediately(t)
	time.Sleep(soakDown)
	pg.start(t)
	upAt := time.Now()
	ready := settle(60*time.Second, func() bool {
		for _, p := range reps {
			if status(p.base+"/readyz") != 200 {
				return false
			}
		}
		return true
	})
	if !ready {
		t.Errorf("not every replica was ready within 60s of the database's return")
	}
	readyAt := time.Now()
	windowEnd := readyAt.Add(soakGrace)
	t.Logf("database stopped at +%v for %v; every replica ready %v after its return",
		downAt.Sub(begin).Round(time.Second), soakDown,
		readyAt.Sub(upAt).Round(100*time.Millisecond))
	<-loadDone
	<-progressDone
	elapsed := time.Since(begin)

	end := idleUsage(t, reps, w)
	counts := w.counts()
	total := 0
	for _, n := range counts {
		total += n
	}
	t.Logf("soak of %v: %d requests (%.0f/s); outcomes: %s\n%s",
		elapsed.Round(time.Second), total, float64(total)/elapsed.Seconds(),
		formatCounts(counts), w.summary())
	t.Logf("replica figures at rest, baseline -> end:\n%s", formatGrowth(start, end))
	t.Logf("replica figures at their busiest, first half -> second half:\n%s",
		formatGrowth(peaks[0], peaks[1]))

	var bad []event
	for _, e := range w.eventsSince(time.Time{}) {
		inWindow := !e.end.Before(downAt) && e.start.Before(windowEnd)
		switch {
		case e.kind == kindThrottled:
		case e.kind == kindUnavailable && inWindow:
		default:
			bad = append(bad, e)
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d unexpected outcomes:\n%s", len(bad), describe(bad))
	}
	for i := range reps {
		if end[i].goroutines > start[i].goroutines+goroutineSlack {
			t.Errorf("replica %d: goroutines grew from %d to %d", i,
				start[i].goroutines, end[i].goroutines)
		}
		if limit := int64(rssFactor*float64(start[i].rss)) + rssSlack; end[i].rss > limit {
			t.Errorf("replica %d: resident memory grew from %d MiB to %d MiB (limit %d MiB)",
				i, start[i].rss>>20, end[i].rss>>20, limit>>20)
		}
		if !reps[i].alive() {
			t.Errorf("replica %d exited: %v", i, reps[i].err)
		}
		if s := errorLines(reps[i]); s != "" && len(bad) > 0 {
			t.Logf("replica %d errors:\n%s", i, tail(s))
		}
	}
	w.verifyLedger(t, postgresDialect, openDB(t, postgresDialect, dbURL), reps[0].base)
}

// runFor runs the workload's clients for d.
func runFor(w *workload, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	w.run(ctx, soakClients)
}

// idleUsage measures every replica at rest: goroutines once their count
// has settled, and the smallest resident set seen over a few seconds, as
// the runtime returns freed memory to the system.
func idleUsage(t testing.TB, reps []*authsvc, w *workload) []usage {
	t.Helper()
	out := make([]usage, len(reps))
	for i, p := range reps {
		out[i].goroutines = idleGoroutines(t, p, w)
	}
	for range 6 {
		for i, p := range reps {
			rss, err := p.rss()
			if err != nil {
				t.Fatalf("replica %d: %v", i, err)
			}
			if out[i].rss == 0 || rss < out[i].rss {
				out[i].rss = rss
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return out
}

// watch samples every replica's goroutines and resident set each second
// until ctx ends, hands each sample to record, and logs the course of the
// run every minute.
func watch(ctx context.Context, t *testing.T, w *workload, reps []*authsvc,
	begin time.Time, record func(i int, u usage)) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var parts []string
		for i, p := range reps {
			m, err := p.metrics()
			rss, rerr := p.rss()
			if err != nil || rerr != nil {
				parts = append(parts, fmt.Sprintf("replica %d: %v %v", i, err, rerr))
				continue
			}
			u := usage{goroutines: int(m["go_goroutines"]), rss: rss}
			record(i, u)
			parts = append(parts, fmt.Sprintf("replica %d: %d goroutines, %d MiB",
				i, u.goroutines, u.rss>>20))
		}
		if n%60 == 0 {
			t.Logf("+%v: %s; %s", time.Since(begin).Round(time.Second),
				formatCounts(w.counts()), strings.Join(parts, "; "))
		}
	}
}

// formatUsage writes each replica's figures on one line.
func formatUsage(us []usage) string {
	parts := make([]string, len(us))
	for i, u := range us {
		parts[i] = fmt.Sprintf("replica %d: %d goroutines, %.1f MiB",
			i, u.goroutines, float64(u.rss)/(1<<20))
	}
	return strings.Join(parts, "; ")
}

// formatGrowth writes one line per replica: its figures then and now.
func formatGrowth(start, end []usage) string {
	var b strings.Builder
	for i := range start {
		fmt.Fprintf(&b, "  replica %d: goroutines %d -> %d, RSS %.1f MiB -> %.1f MiB\n",
			i, start[i].goroutines, end[i].goroutines,
			float64(start[i].rss)/(1<<20), float64(end[i].rss)/(1<<20))
	}
	return strings.TrimRight(b.String(), "\n")
}
