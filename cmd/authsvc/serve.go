package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	openapi "github.com/authsvc/authsvc/api"
	"github.com/authsvc/authsvc/internal/api"
	"github.com/authsvc/authsvc/internal/clientip"
	"github.com/authsvc/authsvc/internal/config"
	"github.com/authsvc/authsvc/internal/db"
	"github.com/authsvc/authsvc/internal/password"
	"github.com/authsvc/authsvc/internal/secretbox"
	"github.com/authsvc/authsvc/internal/session"
)

const (
	// migrationLockTimeout bounds how long start-up waits for another
	// replica's migration.
	migrationLockTimeout = 60 * time.Second
	// shutdownTimeout bounds how long in-flight requests may take to finish
	// after SIGTERM.
	shutdownTimeout = 20 * time.Second
	// sweepInterval is how often expired sessions are deleted.
	sweepInterval = 10 * time.Minute
)

// serve runs the API until ctx ends. ready, when not nil, is told the
// address the listener is bound to.
func serve(ctx context.Context, getenv func(string) string, logOut io.Writer,
	ready func(addr string)) error {
	cfg, err := config.Load(getenv, nil)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := newLogger(cfg, logOut)

	keys, err := keyring(cfg)
	if err != nil {
		return err
	}
	if err := migrateUp(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	store, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: cfg.DatabaseConns})
	if err != nil {
		return fmt.Errorf("AUTHSVC_DATABASE_URL: %w", err)
	}
	defer store.Close()
	if err := checkKeys(ctx, store, keys); err != nil {
		return err
	}

	sessions := session.NewManager(store, session.Lifetimes{
		TTL: cfg.SessionTTL, MaxAge: cfg.SessionMaxAge}, nil)
	hasher := password.NewHasher(password.DefaultParams(), cfg.HashConcurrency,
		password.DefaultMaxWait)
	metrics := api.NewMetrics()
	metrics.Register(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authsvc_password_hashes_in_flight",
			Help: "Password hashes running now.",
		}, func() float64 { return float64(hasher.InFlight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "authsvc_password_hashes_waiting",
			Help: "Requests waiting for a password hashing slot.",
		}, func() float64 { return float64(hasher.Waiting()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "authsvc_password_hash_wait_seconds_total",
			Help: "Time requests have spent waiting for a password hashing slot.",
		}, func() float64 { return hasher.Waited().Seconds() }),
	)
	if _, ok := db.Stats(store); ok {
		metrics.Register(poolCollectors(store)...)
	}
	srv := api.New(api.Deps{
		Store: store, Sessions: sessions, Hasher: hasher, Keys: keys,
		ClientIP: clientip.New(cfg.TrustedProxies), Logger: log, Metrics: metrics,
		OpenAPI: openapi.Document,
	}, api.Options{
		Issuer: cfg.TOTPIssuer, CookieSecure: cfg.CookieSecure,
		AllowedOrigins: cfg.AllowedOrigins, LoginFailuresPerIP: cfg.LoginFailuresPerIP,
		SignupsPerIP: cfg.SignupsPerIP, ServeMetrics: true,
	})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("AUTHSVC_ADDR: %w", err)
	}
	httpSrv := newHTTPServer(srv, log)
	servers := []*http.Server{httpSrv}
	errc := make(chan error, 2)
	go func() { errc <- httpSrv.Serve(ln) }()

	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			httpSrv.Close()
			return fmt.Errorf("AUTHSVC_METRICS_ADDR: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics.Handler())
		msrv := newHTTPServer(mux, log)
		servers = append(servers, msrv)
		go func() { errc <- msrv.Serve(mln) }()
	}

	store_ := "postgres"
	if !cfg.IsPostgres() {
		store_ = "sqlite"
	}
	log.Info("authsvc listening", slog.String("addr", ln.Addr().String()),
		slog.String("store", store_), slog.String("database", config.RedactURL(cfg.DatabaseURL)))
	if ready != nil {
		ready(ln.Addr().String())
	}

	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go sweep(sweepCtx, store, log)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down: /readyz answers 503 from now on",
		slog.Duration("delay", cfg.ShutdownDelay))
	srv.Drain()
	time.Sleep(cfg.ShutdownDelay)
	log.Info("closing the listener and draining in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
		}
	}
	log.Info("stopped; closing the database")
	return errors.Join(errs...)
}

func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// newLogger logs JSON, or text when the output is a terminal and no format
// is configured.
func newLogger(cfg *config.Config, out io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.LogFormat
	if format == "" {
		format = "json"
		if f, ok := out.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(out, opts))
	}
	return slog.New(slog.NewJSONHandler(out, opts))
}

// keyring builds the encryption keys. With the embedded store and no key
// configured, the key is generated once into authsvc.key beside the
// database file and read from there afterwards.
func keyring(cfg *config.Config) (*secretbox.Keyring, error) {
	key := cfg.EncryptionKey
	if key == nil {
		path := filepath.Join(filepath.Dir(cfg.SQLitePath()), "authsvc.key")
		k, err := loadOrCreateKey(path)
		if err != nil {
			return nil, fmt.Errorf("AUTHSVC_ENCRYPTION_KEY is not set and %w", err)
		}
		key = k
	}
	kr, err := secretbox.NewKeyring(key, cfg.PreviousKeys...)
	if err != nil {
		return nil, fmt.Errorf("AUTHSVC_ENCRYPTION_KEY: %w", err)
	}
	return kr, nil
}

func loadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := secretbox.ParseKey(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("the key file %s is not valid: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the key file %s cannot be read: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("the key file's folder cannot be made: %w", err)
	}
	k := make([]byte, secretbox.KeySize)
	rand.Read(k)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadOrCreateKey(path) // another process made it first
	}
	if err != nil {
		return nil, fmt.Errorf("the key file %s cannot be created: %w", path, err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("the key file %s cannot be written: %w", path, err)
	}
	return k, nil
}

// checkKeys stops start-up when TOTP secrets are stored and none of the
// configured keys opens any of them: the key was most likely replaced by
// mistake, and every user with 2FA would be locked out.
func checkKeys(ctx context.Context, store db.Store, keys *secretbox.Keyring) error {
	secrets, err := store.TwoFactorSecrets(ctx, "", 100)
	if err != nil {
		return fmt.Errorf("reading stored secrets: %w", err)
	}
	if len(secrets) == 0 {
		return nil
	}
	for _, s := range secrets {
		if _, _, err := keys.Open(s.Secret, []byte(s.UserID)); err == nil {
			return nil
		}
	}
	return errors.New("AUTHSVC_ENCRYPTION_KEY: none of the configured keys decrypts the " +
		"TOTP secrets already stored; set the key they were encrypted with (an older one " +
		"may go in AUTHSVC_ENCRYPTION_KEYS_PREVIOUS)")
}

// sweep deletes expired sessions and enrolments now and then.
func sweep(ctx context.Context, store db.Store, log *slog.Logger) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := store.DeleteExpiredSessions(ctx, time.Now().UTC())
		if err != nil {
			log.Warn("deleting expired sessions failed", slog.String("error", err.Error()))
			continue
		}
		if n > 0 {
			log.Info("expired sessions deleted", slog.Int64("count", n))
		}
	}
}

// migrateUp applies pending migrations; several replicas may do it at once.
func migrateUp(ctx context.Context, url string) error {
	m, err := db.NewMigrator(url, migrationLockTimeout)
	if err != nil {
		return fmt.Errorf("AUTHSVC_DATABASE_URL: %w", err)
	}
	return m.Up(ctx)
}

// poolCollectors export the PostgreSQL pool's figures.
func poolCollectors(store db.Store) []prometheus.Collector {
	stat := func(f func(db.PoolStats) float64) func() float64 {
		return func() float64 {
			st, _ := db.Stats(store)
			return f(st)
		}
	}
	gauge := func(name, help string, f func(db.PoolStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, stat(f))
	}
	counter := func(name, help string, f func(db.PoolStats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, stat(f))
	}
	return []prometheus.Collector{
		gauge("authsvc_db_connections_acquired", "Pool connections in use.",
			func(s db.PoolStats) float64 { return float64(s.Acquired) }),
		gauge("authsvc_db_connections_idle", "Idle pool connections.",
			func(s db.PoolStats) float64 { return float64(s.Idle) }),
		gauge("authsvc_db_connections_max", "Pool size limit.",
			func(s db.PoolStats) float64 { return float64(s.Max) }),
		counter("authsvc_db_acquires_total", "Connections taken from the pool.",
			func(s db.PoolStats) float64 { return float64(s.AcquireCount) }),
		counter("authsvc_db_acquire_waits_total", "Acquisitions that waited for a connection.",
			func(s db.PoolStats) float64 { return float64(s.EmptyAcquireCount) }),
		counter("authsvc_db_acquire_wait_seconds_total", "Time spent waiting for connections.",
			func(s db.PoolStats) float64 { return s.AcquireWait.Seconds() }),
	}
}
