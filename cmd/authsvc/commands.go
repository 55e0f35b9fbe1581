package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/authsvc/authsvc/internal/config"
	"github.com/authsvc/authsvc/internal/db"
)

// migrate runs `authsvc migrate up|down [N]|version`.
func migrate(ctx context.Context, args []string, getenv func(string) string,
	stdout io.Writer) error {
	cfg, err := config.Load(getenv, nil)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if len(args) == 0 {
		return fmt.Errorf("migrate needs up, down [N] or version\n%s", usage)
	}
	m, err := db.NewMigrator(cfg.DatabaseURL, migrationLockTimeout)
	if err != nil {
		return fmt.Errorf("AUTHSVC_DATABASE_URL: %w", err)
	}
	switch args[0] {
	case "up":
		if len(args) != 1 {
			return fmt.Errorf("migrate up takes no arguments")
		}
		if err := m.Up(ctx); err != nil {
			return err
		}
	case "down":
		steps := 1
		if len(args) == 2 {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 1 {
				return fmt.Errorf("migrate down: %q is not a positive number of steps", args[1])
			}
			steps = n
		} else if len(args) > 2 {
			return fmt.Errorf("migrate down takes at most one argument")
		}
		if err := m.Down(ctx, steps); err != nil {
			return err
		}
	case "version":
		if len(args) != 1 {
			return fmt.Errorf("migrate version takes no arguments")
		}
	default:
		return fmt.Errorf("migrate: unknown action %q\n%s", args[0], usage)
	}
	v, dirty, err := m.Version(ctx)
	if err != nil {
		return err
	}
	suffix := ""
	if dirty {
		suffix = " (dirty: a migration failed half-way; fix the schema by hand)"
	}
	fmt.Fprintf(stdout, "schema version %d%s\n", v, suffix)
	return nil
}

// healthcheck asks the local service for /healthz; it is the container's
// health check, so it needs no shell and no curl.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	addr := getenv("AUTHSVC_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("AUTHSVC_ADDR: %q is not host:port", addr)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %d", url, resp.StatusCode)
	}
	return nil
}

// printConfig prints the effective configuration with secrets redacted.
func printConfig(getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.Load(getenv, nil)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	fmt.Fprintln(stdout, strings.Join(cfg.Redacted(), "\n"))
	return nil
}
