package db

import "time"

// PoolStats are the connection pool figures exported as metrics.
type PoolStats struct {
	Acquired, Idle, Total, Max int32
	// AcquireCount and EmptyAcquireCount count acquisitions, and those that
	// had to wait for a connection; AcquireWait is the time spent waiting.
	AcquireCount, EmptyAcquireCount int64
	AcquireWait                     time.Duration
}

// Stats returns the pool figures of a PostgreSQL store; ok is false for the
// embedded store, which has no pool worth watching.
func Stats(s Store) (stats PoolStats, ok bool) {
	pg, ok := s.(*pgStore)
	if !ok {
		return PoolStats{}, false
	}
	st := pg.pool.Stat()
	return PoolStats{
		Acquired: st.AcquiredConns(), Idle: st.IdleConns(), Total: st.TotalConns(),
		Max: st.MaxConns(), AcquireCount: st.AcquireCount(),
		EmptyAcquireCount: st.EmptyAcquireCount(), AcquireWait: st.AcquireDuration(),
	}, true
}
