package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// The addresses in nginx/authsvc.conf that a site changes, and so does the
// test. Nothing else in the file is touched.
const (
	nginxListen  = "listen 8000;"
	nginxAuthsvc = "server 127.0.0.1:8080;"
	nginxApp     = "server 127.0.0.1:3000;"
)

// TestNginx runs the browser scenarios through nginx with
// nginx/authsvc.conf.
func TestNginx(t *testing.T) {
	t.Parallel()
	testGateway(t, gateway{
		tool:      "nginx",
		start:     startNginx(nil),
		redirects: true,
	})
}

// TestNginxJSON runs them with the alternative the file offers in its
// comments: refusals answered with authsvc's problem documents.
func TestNginxJSON(t *testing.T) {
	t.Parallel()
	json := func(t *testing.T, src string) string {
		return alternative(t, src,
			[]string{"error_page 401 = @login;"},
			[]string{"error_page 401 = /_authsvc/session;",
				"error_page 401 403 = /_authsvc/two_factor;"})
	}
	testFlow(t, gateway{
		tool:        "nginx",
		start:       startNginx(json),
		problems403: true,
	})
}

// TestNginxConfig checks nginx/authsvc.conf, unchanged, with nginx -t.
func TestNginxConfig(t *testing.T) {
	t.Parallel()
	bin := nginxBinary(t)
	dir := t.TempDir()
	conf := writeNginxMain(t, dir, repoFile(t, "nginx/authsvc.conf"))
	out, err := exec.Command(bin, "-t", "-p", dir, "-c", conf, "-e", "stderr",
		"-g", "pid "+filepath.Join(dir, "nginx.pid")+";").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test is successful") {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

// nginxBinary returns the nginx binary, which must have auth_request.
func nginxBinary(t *testing.T) string {
	t.Helper()
	bin := tool(t, "nginx")
	out, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -V: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--with-http_auth_request_module") {
		t.Fatalf("this nginx lacks the auth_request module:\n%s", out)
	}
	return bin
}

// writeNginxMain writes a main configuration into dir that keeps every
// file nginx writes inside dir and includes site inside http {}.
func writeNginxMain(t *testing.T, dir, site string) string {
	t.Helper()
	var b strings.Builder
	// A master started by root hands its workers to "nobody" unless told.
	if os.Geteuid() == 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "user %s;\n", u.Username)
	}
	b.WriteString("worker_processes 1;\nevents { worker_connections 256; }\nhttp {\n")
	b.WriteString("    access_log /dev/stderr;\n")
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "    %s_temp_path %s;\n", d, filepath.Join(dir, d+"_temp"))
	}
	fmt.Fprintf(&b, "    include %s;\n}\n", site)

	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

// startNginx returns a gateway start function that runs nginx in the
// foreground with the repository's configuration, its three addresses
// replaced. A non-nil edit changes the configuration first.
func startNginx(edit func(t *testing.T, src string) string) func(*testing.T, string,
	string) string {
	return func(t *testing.T, authsvc, app string) string {
		t.Helper()
		src, err := os.ReadFile(repoFile(t, "nginx/authsvc.conf"))
		if err != nil {
			t.Fatal(err)
		}
		site := string(src)
		if edit != nil {
			site = edit(t, site)
		}
		return runNginx(t, site, authsvc, app)
	}
}

// runNginx runs nginx with the site configuration, its addresses replaced.
func runNginx(t *testing.T, site, authsvc, app string) string {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	listen := freeAddr(t)
	for _, r := range [][2]string{
		{nginxListen, "listen " + listen + ";"},
		{nginxAuthsvc, "server " + authsvc + ";"},
		{nginxApp, "server " + app + ";"},
	} {
		if n := strings.Count(site, r[0]); n != 1 {
			t.Fatalf("nginx/authsvc.conf has %q %d times, want once", r[0], n)
		}
		site = strings.Replace(site, r[0], r[1], 1)
	}
	sitePath := filepath.Join(dir, "authsvc.conf")
	if err := os.WriteFile(sitePath, []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := writeNginxMain(t, dir, sitePath)

	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", "stderr",
		"-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+"; error_log stderr;")
	p := startProc(t, "nginx", cmd, nil)
	p.waitListening(t, listen)
	return "http://" + listen
}
