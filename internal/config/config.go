// Package config reads authsvc's settings from AUTHSVC_* environment
// variables once, at start-up, into a typed Config. Every problem is
// reported with the name of the variable at fault; secret values are never
// repeated in messages or when the configuration is printed.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/authsvc/authsvc/internal/clientip"
	"github.com/authsvc/authsvc/internal/twofactor"
)

// DefaultDatabaseURL is the embedded store used when no database is named.
const DefaultDatabaseURL = "sqlite:data/authsvc.db"

// Config is the whole of authsvc's configuration.
type Config struct {
	Addr           string
	DatabaseURL    string
	DatabaseConns  int
	EncryptionKey  []byte   // nil: generate or load the key beside an SQLite file
	PreviousKeys   [][]byte // older keys that still decrypt
	TOTPIssuer     string
	AllowedOrigins []string
	TrustedProxies []netip.Prefix
	CookieSecure   bool
	SessionTTL     time.Duration
	SessionMaxAge  time.Duration
	MetricsAddr    string
	// ShutdownDelay is how long /readyz answers 503 after SIGTERM before
	// the listener closes, so load balancers notice first.
	ShutdownDelay time.Duration
	LogFormat     string // "json", "text" or "" (text on a terminal, else JSON)
	LogLevel      string

	// LoginFailuresPerIP and SignupsPerIP bound what one client address may
	// do per LoginWindow and SignupWindow.
	LoginFailuresPerIP int
	SignupsPerIP       int
	// HashConcurrency bounds how many password hashes run at once.
	HashConcurrency int
}

// Secret variables: they may also be given as NAME_FILE, and their values
// are redacted when printed.
var secretVars = []string{
	"AUTHSVC_DATABASE_URL",
	"AUTHSVC_ENCRYPTION_KEY",
	"AUTHSVC_ENCRYPTION_KEYS_PREVIOUS",
}

// Load reads the configuration through getenv (os.Getenv in production).
// NAME_FILE variables are read with readFile (os.ReadFile when nil).
func Load(getenv func(string) string, readFile func(string) ([]byte, error)) (*Config, error) {
	if readFile == nil {
		readFile = os.ReadFile
	}
	env := map[string]string{}
	lookup := func(name string) string { return env[name] }
	for _, name := range Names() {
		env[name] = strings.TrimSpace(getenv(name))
	}
	for _, name := range secretVars {
		file := getenv(name + "_FILE")
		if file == "" {
			continue
		}
		if env[name] != "" {
			return nil, fmt.Errorf("%s and %s_FILE are both set; set only one", name, name)
		}
		b, err := readFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s_FILE: cannot read %s: %w", name, file, errors.Unwrap(err))
		}
		env[name] = strings.TrimSpace(string(b))
	}

	c := &Config{
		Addr:               or(lookup("AUTHSVC_ADDR"), "127.0.0.1:8080"),
		DatabaseURL:        or(lookup("AUTHSVC_DATABASE_URL"), DefaultDatabaseURL),
		TOTPIssuer:         or(lookup("AUTHSVC_TOTP_ISSUER"), "authsvc"),
		MetricsAddr:        lookup("AUTHSVC_METRICS_ADDR"),
		LogFormat:          lookup("AUTHSVC_LOG_FORMAT"),
		LogLevel:           or(lookup("AUTHSVC_LOG_LEVEL"), "info"),
		CookieSecure:       true,
		SessionTTL:         720 * time.Hour,
		SessionMaxAge:      2160 * time.Hour,
		DatabaseConns:      10,
		LoginFailuresPerIP: 30,
		SignupsPerIP:       30,
		HashConcurrency:    0,
	}
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}

	if err := checkListenAddr(c.Addr); err != nil {
		bad("AUTHSVC_ADDR", "%v", err)
	}
	if c.MetricsAddr != "" {
		if err := checkListenAddr(c.MetricsAddr); err != nil {
			bad("AUTHSVC_METRICS_ADDR", "%v", err)
		}
	}
	if err := checkDatabaseURL(c.DatabaseURL); err != nil {
		bad("AUTHSVC_DATABASE_URL", "%v", err)
	}
	if v := lookup("AUTHSVC_ENCRYPTION_KEY"); v != "" {
		k, err := parseKey(v)
		if err != nil {
			bad("AUTHSVC_ENCRYPTION_KEY", "%v", err)
		}
		c.EncryptionKey = k
	} else if c.IsPostgres() {
		bad("AUTHSVC_ENCRYPTION_KEY", "required with a PostgreSQL database "+
			"(32 random bytes in standard base64, e.g. `openssl rand -base64 32`)")
	}
	for i, v := range splitList(lookup("AUTHSVC_ENCRYPTION_KEYS_PREVIOUS")) {
		k, err := parseKey(v)
		if err != nil {
			bad("AUTHSVC_ENCRYPTION_KEYS_PREVIOUS", "key %d: %v", i+1, err)
			continue
		}
		c.PreviousKeys = append(c.PreviousKeys, k)
	}
	if err := twofactor.CheckIssuer(c.TOTPIssuer); err != nil {
		bad("AUTHSVC_TOTP_ISSUER", "%v", err)
	}
	for _, o := range splitList(lookup("AUTHSVC_ALLOWED_ORIGINS")) {
		if err := checkOrigin(o); err != nil {
			bad("AUTHSVC_ALLOWED_ORIGINS", "%q: %v", o, err)
			continue
		}
		c.AllowedOrigins = append(c.AllowedOrigins, o)
	}
	if v := lookup("AUTHSVC_TRUSTED_PROXIES"); v != "" {
		p, err := clientip.ParsePrefixes(v)
		if err != nil {
			bad("AUTHSVC_TRUSTED_PROXIES", "%v", err)
		}
		c.TrustedProxies = p
	}
	if v := lookup("AUTHSVC_COOKIE_SECURE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("AUTHSVC_COOKIE_SECURE", "%q is not true or false", v)
		}
		c.CookieSecure = b || err != nil
	}
	c.SessionTTL = duration(lookup, "AUTHSVC_SESSION_TTL", c.SessionTTL, bad)
	c.SessionMaxAge = duration(lookup, "AUTHSVC_SESSION_MAX_AGE", c.SessionMaxAge, bad)
	if c.SessionMaxAge < c.SessionTTL {
		bad("AUTHSVC_SESSION_MAX_AGE", "%s is shorter than AUTHSVC_SESSION_TTL (%s)",
			c.SessionMaxAge, c.SessionTTL)
	}
	if v := lookup("AUTHSVC_SHUTDOWN_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 5*time.Minute {
			bad("AUTHSVC_SHUTDOWN_DELAY", "%q is not a Go duration from 0s to 5m", v)
		}
		c.ShutdownDelay = d
	}
	c.DatabaseConns = integer(lookup, "AUTHSVC_DATABASE_MAX_CONNS", c.DatabaseConns, 1, 1000, bad)
	c.LoginFailuresPerIP = integer(lookup, "AUTHSVC_LOGIN_FAILURES_PER_IP",
		c.LoginFailuresPerIP, 1, 1_000_000, bad)
	c.SignupsPerIP = integer(lookup, "AUTHSVC_SIGNUPS_PER_IP", c.SignupsPerIP, 1, 1_000_000, bad)
	c.HashConcurrency = integer(lookup, "AUTHSVC_HASH_CONCURRENCY", c.HashConcurrency, 0, 1024, bad)
	switch c.LogFormat {
	case "", "json", "text":
	default:
		bad("AUTHSVC_LOG_FORMAT", "%q is not json or text", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("AUTHSVC_LOG_LEVEL", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// IsPostgres reports whether the database is PostgreSQL rather than the
// embedded store.
func (c *Config) IsPostgres() bool {
	return strings.HasPrefix(c.DatabaseURL, "postgres://") ||
		strings.HasPrefix(c.DatabaseURL, "postgresql://")
}

// SQLitePath is the file of the embedded store, "" with PostgreSQL.
func (c *Config) SQLitePath() string {
	p, ok := strings.CutPrefix(c.DatabaseURL, "sqlite:")
	if !ok {
		return ""
	}
	return p
}

// Names lists every variable Load reads, without the _FILE variants.
func Names() []string {
	return []string{
		"AUTHSVC_ADDR", "AUTHSVC_DATABASE_URL", "AUTHSVC_DATABASE_MAX_CONNS",
		"AUTHSVC_ENCRYPTION_KEY", "AUTHSVC_ENCRYPTION_KEYS_PREVIOUS", "AUTHSVC_TOTP_ISSUER",
		"AUTHSVC_ALLOWED_ORIGINS", "AUTHSVC_TRUSTED_PROXIES", "AUTHSVC_COOKIE_SECURE",
		"AUTHSVC_SESSION_TTL", "AUTHSVC_SESSION_MAX_AGE", "AUTHSVC_METRICS_ADDR",
		"AUTHSVC_LOG_FORMAT", "AUTHSVC_LOG_LEVEL", "AUTHSVC_LOGIN_FAILURES_PER_IP",
		"AUTHSVC_SIGNUPS_PER_IP", "AUTHSVC_HASH_CONCURRENCY", "AUTHSVC_SHUTDOWN_DELAY",
	}
}

// Redacted returns the effective configuration as name=value lines with
// every secret replaced, fit for printing and logging.
func (c *Config) Redacted() []string {
	key := "(generated beside the database file)"
	if c.EncryptionKey != nil {
		key = "(set, redacted)"
	}
	prev := "(none)"
	if len(c.PreviousKeys) > 0 {
		prev = fmt.Sprintf("(%d keys, redacted)", len(c.PreviousKeys))
	}
	prefixes := make([]string, len(c.TrustedProxies))
	for i, p := range c.TrustedProxies {
		prefixes[i] = p.String()
	}
	return []string{
		"AUTHSVC_ADDR=" + c.Addr,
		"AUTHSVC_DATABASE_URL=" + RedactURL(c.DatabaseURL),
		"AUTHSVC_DATABASE_MAX_CONNS=" + strconv.Itoa(c.DatabaseConns),
		"AUTHSVC_ENCRYPTION_KEY=" + key,
		"AUTHSVC_ENCRYPTION_KEYS_PREVIOUS=" + prev,
		"AUTHSVC_TOTP_ISSUER=" + c.TOTPIssuer,
		"AUTHSVC_ALLOWED_ORIGINS=" + strings.Join(c.AllowedOrigins, ","),
		"AUTHSVC_TRUSTED_PROXIES=" + strings.Join(prefixes, ","),
		"AUTHSVC_COOKIE_SECURE=" + strconv.FormatBool(c.CookieSecure),
		"AUTHSVC_SESSION_TTL=" + c.SessionTTL.String(),
		"AUTHSVC_SESSION_MAX_AGE=" + c.SessionMaxAge.String(),
		"AUTHSVC_METRICS_ADDR=" + c.MetricsAddr,
		"AUTHSVC_LOG_FORMAT=" + c.LogFormat,
		"AUTHSVC_LOG_LEVEL=" + c.LogLevel,
		"AUTHSVC_LOGIN_FAILURES_PER_IP=" + strconv.Itoa(c.LoginFailuresPerIP),
		"AUTHSVC_SIGNUPS_PER_IP=" + strconv.Itoa(c.SignupsPerIP),
		"AUTHSVC_HASH_CONCURRENCY=" + strconv.Itoa(c.HashConcurrency),
		"AUTHSVC_SHUTDOWN_DELAY=" + c.ShutdownDelay.String(),
	}
}

// RedactURL hides the password of a database URL, and everything after
// the scheme if the URL cannot be parsed.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		scheme, _, _ := strings.Cut(s, ":")
		return scheme + ":(redacted)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "redacted")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "redacted")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		k, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, errors.New("not standard base64")
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("decodes to %d bytes, want 32", len(k))
	}
	return k, nil
}

func duration(lookup func(string) string, name string, def time.Duration,
	bad func(string, string, ...any)) time.Duration {
	v := lookup(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		bad(name, "%q is not a Go duration such as 720h", v)
		return def
	}
	if d < time.Minute {
		bad(name, "%s is shorter than one minute", d)
		return def
	}
	return d
}

func integer(lookup func(string) string, name string, def, lo, hi int,
	bad func(string, string, ...any)) int {
	v := lookup(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		bad(name, "%q is not a whole number from %d to %d", v, lo, hi)
		return def
	}
	return n
}

func checkListenAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q has no valid port", s)
	}
	return nil
}

func checkDatabaseURL(s string) error {
	switch {
	case strings.HasPrefix(s, "sqlite:"):
		if strings.TrimPrefix(s, "sqlite:") == "" {
			return errors.New("sqlite: needs a file path, e.g. sqlite:data/authsvc.db")
		}
		return nil
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		if _, err := url.Parse(s); err != nil {
			return errors.New("not a valid postgres:// URL")
		}
		return nil
	}
	return errors.New("must start with postgres://, postgresql:// or sqlite:")
}

func checkOrigin(o string) error {
	if o == "null" || o == "*" {
		return errors.New("is not an origin that can be allowed")
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be scheme://host[:port] with http or https")
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("must have no path, query, fragment or user")
	}
	if u.String() != o || strings.ToLower(o) != o {
		return errors.New("must be written in lower case exactly as browsers send it")
	}
	return nil
}
