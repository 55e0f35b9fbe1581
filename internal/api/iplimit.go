package api

import (
	"sync"
	"time"
)

// maxTrackedClients bounds the memory the per-client limiters may use.
const maxTrackedClients = 100_000

// ipLimiter counts events per client key in fixed windows, in memory. It is
// a first line against floods from one address; the limits that must hold
// across replicas live in the database.
type ipLimiter struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	clients map[string]*window
}

type window struct {
	start time.Time
	count int
}

func newIPLimiter(limit int, win time.Duration, now func() time.Time) *ipLimiter {
	return &ipLimiter{limit: limit, window: win, now: now, clients: map[string]*window{}}
}

// wait reports how long key must wait before its next event is allowed,
// zero if it may go ahead.
func (l *ipLimiter) wait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.clients[key]
	now := l.now()
	if !ok || now.Sub(w.start) >= l.window || w.count < l.limit {
		return 0
	}
	return w.start.Add(l.window).Sub(now)
}

// add counts one event for key.
func (l *ipLimiter) add(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	w, ok := l.clients[key]
	if !ok || now.Sub(w.start) >= l.window {
		if !ok && len(l.clients) >= maxTrackedClients {
			l.sweep(now)
		}
		w = &window{start: now}
		l.clients[key] = w
	}
	w.count++
}

// sweep forgets finished windows; if every window is live, it forgets the
// oldest half, which errs towards letting clients through rather than
// growing without bound.
func (l *ipLimiter) sweep(now time.Time) {
	for k, w := range l.clients {
		if now.Sub(w.start) >= l.window {
			delete(l.clients, k)
		}
	}
	if len(l.clients) < maxTrackedClients {
		return
	}
	cut := now.Add(-l.window / 2)
	for k, w := range l.clients {
		if w.start.Before(cut) {
			delete(l.clients, k)
		}
	}
	if len(l.clients) >= maxTrackedClients {
		clear(l.clients)
	}
}
