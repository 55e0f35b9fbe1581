package deploy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestCaddy runs the browser scenarios through Caddy with caddy/Caddyfile.
func TestCaddy(t *testing.T) {
	t.Parallel()
	testGateway(t, gateway{
		name:        "caddy",
		start:       startCaddy,
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

// startCaddy runs caddy/Caddyfile from the repository, the addresses given
// through the environment variables it reads.
func startCaddy(t *testing.T, authsvc, app string) string {
	t.Helper()
	bin := tool(t, "caddy")
	listen := freeAddr(t)
	cmd := exec.Command(bin, "run", "--config", repoFile(t, "caddy/Caddyfile"),
		"--adapter", "caddyfile")
	cmd.Env = caddyEnv(t.TempDir(),
		"SITE_ADDRESS=http://"+listen,
		"AUTHSVC_UPSTREAM="+authsvc,
		"APP_UPSTREAM="+app,
		"CADDY_ADMIN=off")
	p := startProc(t, "caddy", cmd, nil)
	p.waitListening(t, listen)
	return "http://" + listen
}
