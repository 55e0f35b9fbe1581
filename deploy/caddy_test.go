package deploy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCaddy runs the browser scenarios through Caddy with caddy/Caddyfile.
func TestCaddy(t *testing.T) {
	t.Parallel()
	testGateway(t, gateway{
		tool:        "caddy",
		start:       startCaddy(nil),
		problems403: true,
		anyName:     true,
	})
}

// TestCaddyRedirect runs them with the alternative the Caddyfile offers in
// its comments: a 401 sends the browser to the login page.
func TestCaddyRedirect(t *testing.T) {
	t.Parallel()
	redirect := func(t *testing.T, src string) string {
		return alternative(t, src, nil, []string{
			"@refused status 401",
			"handle_response @refused {",
			"    redir * /login?next={http.request.uri} 302",
			"}",
		})
	}
	testFlow(t, gateway{
		tool:        "caddy",
		start:       startCaddy(redirect),
		redirects:   true,
		problems403: true,
		anyName:     true,
	})
}

// TestCaddyfile adapts caddy/Caddyfile with its default addresses and checks
// that Caddy finds nothing to warn about, that the first thing the site does
// is drop client X-Auth-* headers, and that the result validates.
func TestCaddyfile(t *testing.T) {
	t.Parallel()
	bin := tool(t, "caddy")
	file := repoFile(t, "caddy/Caddyfile")
	env := caddyEnv(t.TempDir())

	cmd := exec.Command(bin, "adapt", "--config", file, "--adapter", "caddyfile")
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("caddy adapt: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), `"level":"warn"`) {
		t.Errorf("caddy adapt warns:\n%s", stderr.String())
	}

	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string
					Routes []struct {
						Handle []struct {
							Routes []struct {
								Handle []struct {
									Handler string
									Request struct{ Delete []string }
								}
							}
						}
					}
				}
			}
		}
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("caddy adapt output: %v", err)
	}
	srv, ok := cfg.Apps.HTTP.Servers["srv0"]
	if !ok || len(srv.Routes) == 0 || len(srv.Routes[0].Handle) == 0 ||
		len(srv.Routes[0].Handle[0].Routes) == 0 {
		t.Fatalf("caddy adapt: no site routes in %s", out)
	}
	first := srv.Routes[0].Handle[0].Routes[0].Handle
	if len(first) == 0 || first[0].Handler != "headers" ||
		!slices.Contains(first[0].Request.Delete, "X-Auth-*") {
		t.Errorf("the site's first route is %+v, want one that deletes X-Auth-*", first)
	}

	cmd = exec.Command(bin, "validate", "--config", file, "--adapter", "caddyfile")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy validate: %v\n%s", err, out)
	}
}

// caddyEnv is an environment that keeps Caddy's files in home and lets no
// address variable of the caller through; extra adds variables.
func caddyEnv(home string, extra ...string) []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + home,
		"XDG_DATA_HOME=" + home,
	}, extra...)
}

// startCaddy returns a gateway start function that runs caddy/Caddyfile
// from the repository, the addresses given through the environment
// variables it reads. A non-nil edit changes a copy of the file first.
func startCaddy(edit func(t *testing.T, src string) string) func(*testing.T, string,
	string) string {
	return func(t *testing.T, authsvc, app string) string {
		t.Helper()
		file := repoFile(t, "caddy/Caddyfile")
		if edit != nil {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			file = filepath.Join(t.TempDir(), "Caddyfile")
			if err := os.WriteFile(file, []byte(edit(t, string(src))), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return runCaddy(t, file, authsvc, app)
	}
}

// runCaddy runs Caddy with a Caddyfile and the addresses given.
func runCaddy(t *testing.T, file, authsvc, app string) string {
	t.Helper()
	bin := tool(t, "caddy")
	listen := freeAddr(t)
	cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = caddyEnv(t.TempDir(),
		"SITE_ADDRESS=http://"+listen,
		"AUTHSVC_UPSTREAM="+authsvc,
		"APP_UPSTREAM="+app,
		"CADDY_ADMIN=off")
	p := startProc(t, "caddy", cmd, nil)
	p.waitListening(t, listen)
	return "http://" + listen
}
