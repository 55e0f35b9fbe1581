// Command authsvc is a standalone HTTP authentication service: accounts,
// sessions and TOTP two-factor authentication behind an API gateway.
//
// Usage:
//
//	authsvc [serve]                 serve the API (the default)
//	authsvc migrate up|down [N]|version
//	authsvc healthcheck             exit 0 when /healthz answers 200
//	authsvc config                  print the effective configuration, redacted
//
// Configuration comes from AUTHSVC_* environment variables; see README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "authsvc:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  authsvc [serve]                      serve the API
  authsvc migrate up|down [N]|version  manage the database schema
  authsvc healthcheck                  exit 0 when the service answers /healthz
  authsvc config                       print the effective configuration, redacted
`

// run executes one command line. It returns when the command is done or,
// for serve, when ctx ends and the server has drained.
func run(ctx context.Context, args []string, getenv func(string) string,
	stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		if len(args) > 0 {
			return fmt.Errorf("serve takes no arguments\n%s", usage)
		}
		return serve(ctx, getenv, stderr, nil)
	case "migrate":
		return migrate(ctx, args, getenv, stdout)
	case "healthcheck", "config":
		if len(args) > 0 {
			return fmt.Errorf("%s takes no arguments\n%s", cmd, usage)
		}
		if cmd == "config" {
			return printConfig(getenv, stdout)
		}
		return healthcheck(ctx, getenv)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}
