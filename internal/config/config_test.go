package config

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"
)

const key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes

func load(env map[string]string, files map[string]string) (*Config, error) {
	return Load(func(k string) string { return env[k] }, func(p string) ([]byte, error) {
		v, ok := files[p]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		}
		return []byte(v), nil
	})
}

func TestDefaults(t *testing.T) {
	c, err := load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DatabaseURL != "sqlite:data/authsvc.db" ||
		!c.CookieSecure || c.SessionTTL != 720*time.Hour || c.SessionMaxAge != 2160*time.Hour ||
		c.TOTPIssuer != "authsvc" || c.EncryptionKey != nil || c.IsPostgres() {
		t.Fatalf("defaults: %+v", c)
	}
	if c.SQLitePath() != "data/authsvc.db" {
		t.Fatalf("SQLitePath = %q", c.SQLitePath())
	}
}

func TestErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"AUTHSVC_DATABASE_URL": "postgres://db/x"}, "AUTHSVC_ENCRYPTION_KEY"},
		{map[string]string{"AUTHSVC_DATABASE_URL": "mysql://x"}, "AUTHSVC_DATABASE_URL"},
		{map[string]string{"AUTHSVC_ENCRYPTION_KEY": "c2hvcnQ="}, "AUTHSVC_ENCRYPTION_KEY"},
		{map[string]string{"AUTHSVC_ENCRYPTION_KEYS_PREVIOUS": key + ",!!"},
			"AUTHSVC_ENCRYPTION_KEYS_PREVIOUS"},
		{map[string]string{"AUTHSVC_TOTP_ISSUER": "Acme:Corp"}, "AUTHSVC_TOTP_ISSUER"},
		{map[string]string{"AUTHSVC_ALLOWED_ORIGINS": "https://a.example/path"},
			"AUTHSVC_ALLOWED_ORIGINS"},
		{map[string]string{"AUTHSVC_ALLOWED_ORIGINS": "null"}, "AUTHSVC_ALLOWED_ORIGINS"},
		{map[string]string{"AUTHSVC_ALLOWED_ORIGINS": "https://A.example"},
			"AUTHSVC_ALLOWED_ORIGINS"},
		{map[string]string{"AUTHSVC_TRUSTED_PROXIES": "10.0.0.0/99"}, "AUTHSVC_TRUSTED_PROXIES"},
		{map[string]string{"AUTHSVC_COOKIE_SECURE": "maybe"}, "AUTHSVC_COOKIE_SECURE"},
		{map[string]string{"AUTHSVC_SESSION_TTL": "forever"}, "AUTHSVC_SESSION_TTL"},
		{map[string]string{"AUTHSVC_SESSION_TTL": "10h", "AUTHSVC_SESSION_MAX_AGE": "1h"},
			"AUTHSVC_SESSION_MAX_AGE"},
		{map[string]string{"AUTHSVC_ADDR": "8080"}, "AUTHSVC_ADDR"},
		{map[string]string{"AUTHSVC_METRICS_ADDR": "x:y"}, "AUTHSVC_METRICS_ADDR"},
		{map[string]string{"AUTHSVC_ENCRYPTION_KEY": key, "AUTHSVC_ENCRYPTION_KEY_FILE": "/k"},
			"AUTHSVC_ENCRYPTION_KEY_FILE"},
		{map[string]string{"AUTHSVC_ENCRYPTION_KEY_FILE": "/missing"},
			"AUTHSVC_ENCRYPTION_KEY_FILE"},
		{map[string]string{"AUTHSVC_DATABASE_MAX_CONNS": "0"}, "AUTHSVC_DATABASE_MAX_CONNS"},
	}
	for _, tt := range tests {
		_, err := load(tt.env, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("env %v: error %v, want one naming %s", tt.env, err, tt.want)
		}
	}
}

func TestSecretsFromFilesAndRedaction(t *testing.T) {
	c, err := load(map[string]string{
		"AUTHSVC_DATABASE_URL_FILE":   "/run/secrets/db",
		"AUTHSVC_ENCRYPTION_KEY_FILE": "/run/secrets/key",
		"AUTHSVC_ALLOWED_ORIGINS":     "https://app.example, http://localhost:3000",
		"AUTHSVC_COOKIE_SECURE":       "false",
	}, map[string]string{
		"/run/secrets/db":  "postgres://authsvc:hunter2secret@db:5432/authsvc\n",
		"/run/secrets/key": key + "\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsPostgres() || len(c.EncryptionKey) != 32 || c.CookieSecure ||
		len(c.AllowedOrigins) != 2 {
		t.Fatalf("config: %+v", c)
	}
	out := strings.Join(c.Redacted(), "\n")
	for _, secret := range []string{"hunter2secret", key} {
		if strings.Contains(out, secret) {
			t.Fatalf("printed configuration contains a secret:\n%s", out)
		}
	}
	if !strings.Contains(out, "postgres://authsvc:redacted@db:5432/authsvc") {
		t.Fatalf("database URL not shown redacted:\n%s", out)
	}
}

func TestSecretNotEchoed(t *testing.T) {
	_, err := load(map[string]string{"AUTHSVC_ENCRYPTION_KEY": "c2VjcmV0LXZhbHVlLTEyMw=="}, nil)
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatalf("error %v repeats the key", err)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("errors are not joined: %T", err)
	}
}

func TestRedactURL(t *testing.T) {
	tests := map[string]string{
		"postgres://u:p@h/d":              "postgres://u:redacted@h/d",
		"postgres://u@h/d?password=p&x=1": "postgres://u@h/d?password=redacted&x=1",
		"sqlite:data/authsvc.db":          "sqlite:data/authsvc.db",
		"postgres://u:p@h:bad port/%zz":   "postgres:(redacted)",
	}
	for in, want := range tests {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
