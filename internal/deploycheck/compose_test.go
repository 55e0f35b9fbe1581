package deploycheck

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// secretNames are the secret files the compose file reads from ./secrets.
var secretNames = []string{"postgres_password", "database_url", "encryption_key"}

// composeDir copies the compose file at path into a fresh directory as
// docker-compose.yml, next to placeholder files for the secrets under ./secrets, which
// a clean checkout does not have. It returns the directory.
func composeDir(t *testing.T, path string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "docker-compose.yml"), readFile(t, path),
		0o644); err != nil {
		t.Fatalf("copy compose file: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o755); err != nil {
		t.Fatalf("create secrets directory: %v", err)
	}
	for _, name := range secretNames {
		file := filepath.Join(dir, "secrets", name)
		if err := os.WriteFile(file, []byte("placeholder"), 0o644); err != nil {
			t.Fatalf("create placeholder secret: %v", err)
		}
	}
	return dir
}

// loadCompose loads the compose file at path from a copy made by composeDir, with
// compose-go's schema validation, interpolation and normalization. With strict set it
// also applies compose-go's consistency checks, which stop at the first undefined
// reference; without them each rule of this package can be seen rejecting its own
// broken file.
func loadCompose(t *testing.T, path string, strict bool) (*types.Project, error) {
	t.Helper()
	dir := composeDir(t, path)
	details := types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}
	project, err := loader.LoadWithContext(context.Background(), details,
		func(o *loader.Options) {
			o.SetProjectName("authsvc", true)
			o.SkipConsistencyCheck = !strict
		})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", filepath.Base(path), err)
	}
	return project, nil
}

// mustLoadCompose is loadCompose without consistency checks, failing the test on error.
func mustLoadCompose(t *testing.T, path string) *types.Project {
	t.Helper()
	p, err := loadCompose(t, path, false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// service returns the named service of p.
func service(p *types.Project, name string) (types.ServiceConfig, error) {
	s, ok := p.Services[name]
	if !ok {
		return types.ServiceConfig{}, fmt.Errorf("no service %q", name)
	}
	return s, nil
}

// secretMounts maps the path at which each of the service's secrets appears in the
// container to the secret's name.
func secretMounts(s types.ServiceConfig) map[string]string {
	mounts := map[string]string{}
	for _, sec := range s.Secrets {
		target := sec.Target
		switch {
		case target == "":
			target = "/run/secrets/" + sec.Source
		case !strings.HasPrefix(target, "/"):
			target = "/run/secrets/" + target
		}
		mounts[target] = sec.Source
	}
	return mounts
}

// composeChecks lists the rules the compose file must obey.
func composeChecks() []check[*types.Project] {
	return []check[*types.Project]{
		{"postgres health check", checkPostgresHealth},
		{"postgres named volume", checkPostgresVolume},
		{"waits for healthy postgres", checkDependsOnHealthy},
		{"secrets as files", checkSecretFiles},
		{"secrets declared", checkSecretsDeclared},
		{"not privileged", checkNotPrivileged},
		{"no literal secrets", checkNoLiteralSecrets},
	}
}

// checkPostgresHealth requires postgres to have a health check that runs pg_isready.
func checkPostgresHealth(p *types.Project) error {
	pg, err := service(p, "postgres")
	if err != nil {
		return err
	}
	hc := pg.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) < 2 {
		return errors.New("postgres has no health check")
	}
	if !strings.Contains(strings.Join(hc.Test[1:], " "), "pg_isready") {
		return fmt.Errorf("postgres health check %q does not run pg_isready", hc.Test)
	}
	return nil
}

// checkPostgresVolume requires the database files to live in a declared named volume.
func checkPostgresVolume(p *types.Project) error {
	pg, err := service(p, "postgres")
	if err != nil {
		return err
	}
	for _, v := range pg.Volumes {
		if v.Target != "/var/lib/postgresql/data" {
			continue
		}
		if _, declared := p.Volumes[v.Source]; v.Type == types.VolumeTypeVolume && declared {
			return nil
		}
		return fmt.Errorf("postgres data is a %s mount of %q, not a named volume",
			v.Type, v.Source)
	}
	return errors.New("postgres data directory is not on a volume")
}

// checkDependsOnHealthy requires authsvc to start only once postgres is healthy.
func checkDependsOnHealthy(p *types.Project) error {
	svc, err := service(p, "authsvc")
	if err != nil {
		return err
	}
	dep, ok := svc.DependsOn["postgres"]
	if !ok {
		return errors.New("authsvc does not depend on postgres")
	}
	if dep.Condition != types.ServiceConditionHealthy {
		return fmt.Errorf("authsvc waits for postgres to be %s, want %s",
			dep.Condition, types.ServiceConditionHealthy)
	}
	return nil
}

// checkSecretFiles requires authsvc to get its database URL and key through the _FILE
// variables, and every _FILE variable pointing into /run/secrets to name a secret
// mounted into that service.
func checkSecretFiles(p *types.Project) error {
	svc, err := service(p, "authsvc")
	if err != nil {
		return err
	}
	for _, name := range []string{"AUTHSVC_DATABASE_URL", "AUTHSVC_ENCRYPTION_KEY"} {
		if _, set := svc.Environment[name]; set {
			return fmt.Errorf("authsvc sets %s directly instead of %s_FILE", name, name)
		}
		v := svc.Environment[name+"_FILE"]
		if v == nil {
			return fmt.Errorf("authsvc does not set %s_FILE", name)
		}
		if !strings.HasPrefix(*v, "/run/secrets/") {
			return fmt.Errorf("authsvc reads %s from %s, outside /run/secrets", name, *v)
		}
	}

	// Sorted, so that a file with several faults always reports the same one first.
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		mounts := secretMounts(s)
		for _, key := range slices.Sorted(maps.Keys(s.Environment)) {
			v := s.Environment[key]
			if !strings.HasSuffix(key, "_FILE") || v == nil {
				continue
			}
			if _, ok := mounts[*v]; !ok {
				return fmt.Errorf("%s: %s=%s is not a secret mounted into the service",
					name, key, *v)
			}
		}
	}
	return nil
}

// checkSecretsDeclared requires every secret a service uses to be declared at the top
// level and every declared secret to be used, read from a file under ./secrets.
func checkSecretsDeclared(p *types.Project) error {
	used := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		for _, sec := range p.Services[name].Secrets {
			used[sec.Source] = true
			if _, ok := p.Secrets[sec.Source]; !ok {
				return fmt.Errorf("%s uses secret %s, which is not declared", name, sec.Source)
			}
		}
	}

	// compose-go has already made the file paths absolute, relative to the project.
	dir := filepath.Join(p.WorkingDir, "secrets")
	for _, name := range slices.Sorted(maps.Keys(p.Secrets)) {
		sec := p.Secrets[name]
		if !used[name] {
			return fmt.Errorf("secret %s is declared but no service uses it", name)
		}
		if sec.File == "" {
			return fmt.Errorf("secret %s is not read from a file", name)
		}
		if rel, err := filepath.Rel(dir, sec.File); err != nil || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("secret %s is read from %s, outside ./secrets", name, sec.File)
		}
	}
	return nil
}

// checkNotPrivileged forbids privileged services.
func checkNotPrivileged(p *types.Project) error {
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		if p.Services[name].Privileged {
			return fmt.Errorf("service %s is privileged", name)
		}
	}
	return nil
}

var (
	// secretName matches environment variable names that suggest a secret value.
	secretName = regexp.MustCompile(`PASSWORD|PASSWD|SECRET|TOKEN|KEY|DATABASE_URL|DSN`)
	// urlPassword matches a URL that carries a password in its user information.
	urlPassword = regexp.MustCompile(`://[^/@:\s]*:[^/@\s]+@`)
)

// checkNoLiteralSecrets forbids secret values written into the compose file: variables
// named like secrets must be _FILE variables or pass through from the caller's
// environment, and no value may be a URL with a password in it.
func checkNoLiteralSecrets(p *types.Project) error {
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		env := p.Services[name].Environment
		for _, key := range slices.Sorted(maps.Keys(env)) {
			v := env[key]
			// A variable without a value passes through from the caller's environment.
			if v == nil || *v == "" {
				continue
			}
			if secretName.MatchString(strings.ToUpper(key)) && !strings.HasSuffix(key, "_FILE") {
				return fmt.Errorf("%s: %s holds a literal value; use %s_FILE", name, key, key)
			}
			if urlPassword.MatchString(*v) {
				return fmt.Errorf("%s: %s holds a URL with a password", name, key)
			}
		}
	}
	return nil
}

// TestCompose loads the repository's compose file with every compose-go check on and
// holds it to every rule, one subtest each.
func TestCompose(t *testing.T) {
	p, err := loadCompose(t, repoPath(t, "docker-compose.yml"), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range composeChecks() {
		t.Run(c.name, func(t *testing.T) {
			if err := c.fn(p); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestComposeChecksRejectBrokenVariants proves that each rule can fail: every file
// under testdata/compose breaks minimal.yml in one way, and exactly the rules listed
// for it must object.
func TestComposeChecksRejectBrokenVariants(t *testing.T) {
	cases := []brokenCase{
		{"compose/depends_no_condition.yml", []string{"waits for healthy postgres"}},
		{"compose/undeclared_secret.yml", []string{"secrets declared"}},
		{"compose/unused_secret.yml", []string{"secrets declared"}},
		{"compose/literal_key.yml", []string{"no literal secrets"}},
		{"compose/url_in_env.yml", []string{"secrets as files", "no literal secrets"}},
		{"compose/key_file_elsewhere.yml", []string{"secrets as files"}},
		{"compose/privileged.yml", []string{"not privileged"}},
		{"compose/postgres_no_healthcheck.yml", []string{"postgres health check"}},
		{"compose/postgres_bind_mount.yml", []string{"postgres named volume"}},
		// The accepted baseline every broken file above differs from.
		{"compose/minimal.yml", nil},
	}
	testBrokenVariants(t, composeChecks(), cases, mustLoadCompose)
}

// TestComposeLoaderRejectsUndeclaredSecret shows that compose-go itself, with its
// consistency checks on as for the real file, refuses an undeclared secret.
func TestComposeLoaderRejectsUndeclaredSecret(t *testing.T) {
	_, err := loadCompose(t, filepath.Join("testdata", "compose", "undeclared_secret.yml"), true)
	if err == nil || !strings.Contains(err.Error(), "encryption_key") {
		t.Fatalf("strict load error = %v, want one naming the undeclared secret", err)
	}
}

// TestComposeSchemaRejectsUnknownKey shows that loading applies the compose schema, so
// a misspelt key cannot pass unnoticed.
func TestComposeSchemaRejectsUnknownKey(t *testing.T) {
	_, err := loadCompose(t, filepath.Join("testdata", "compose", "misspelt_key.yml"), true)
	if err == nil || !strings.Contains(err.Error(), "healthchek") {
		t.Fatalf("load error = %v, want a schema error naming healthchek", err)
	}
}

// TestGitignoreKeepsSecretsOut asks git whether the secret files and the embedded
// store would be ignored.
func TestGitignoreKeepsSecretsOut(t *testing.T) {
	root := filepath.Dir(repoPath(t, "go.mod"))
	if err := exec.Command("git", "-C", root, "rev-parse", "--git-dir").Run(); err != nil {
		t.Skipf("SKIPPED: %s is not a git work tree (%v); .gitignore was not checked", root, err)
	}

	// check-ignore exits 0 for an ignored path and 1 for one git would track.
	tests := []struct {
		path    string
		ignored bool
	}{
		{"secrets/encryption_key", true},
		{"secrets/database_url", true},
		{"secrets/postgres_password", true},
		{"data/authsvc.db", true},
		{"authsvc", true},
		{"cmd/authsvc/main.go", false},
		{"docker-compose.yml", false},
	}
	for _, tt := range tests {
		cmd := exec.Command("git", "-C", root, "check-ignore", "-q", "--no-index", tt.path)
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
			t.Fatalf("git check-ignore %s: %v", tt.path, err)
		}
		if ignored := err == nil; ignored != tt.ignored {
			t.Errorf("git ignores %s = %v, want %v", tt.path, ignored, tt.ignored)
		}
	}
}
