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

// reserve counts one event for key unless key must wait, in one step, so
// that concurrent requests cannot all pass a check made before any of them
// is counted. It returns the wait, zero when the event was counted.
func (l *ipLimiter) reserve(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if w, ok := l.clients[key]; ok && now.Sub(w.start) < l.window && w.count >= l.limit {
		return w.start.Add(l.window).Sub(now)
	}
	l.addLocked(key, now)
	return 0
}

// refund takes back an event reserved for key that turned out not to
// count, such as a login that succeeded.
func (l *ipLimiter) refund(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.clients[key]; ok && w.count > 0 && l.now().Sub(w.start) < l.window {
		w.count--
	}
}

func (l *ipLimiter) addLocked(key string, now time.Time) {
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
