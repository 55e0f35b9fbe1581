package deploycheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// dockerfile is a parsed Dockerfile: its text, kept for the linter, and its build
// stages in order.
type dockerfile struct {
	text   []byte
	stages []instructions.Stage
}

// parseDockerfile parses text into build stages with BuildKit's own parser.
func parseDockerfile(text []byte) (*dockerfile, error) {
	res, err := parser.Parse(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parse Dockerfile: %w", err)
	}
	stages, _, err := instructions.Parse(res.AST, linter.New(&linter.Config{}))
	if err != nil {
		return nil, fmt.Errorf("read Dockerfile instructions: %w", err)
	}
	if len(stages) == 0 {
		return nil, errors.New("dockerfile has no build stage")
	}
	return &dockerfile{text: text, stages: stages}, nil
}

// loadDockerfile reads and parses the Dockerfile at path or fails the test.
func loadDockerfile(t *testing.T, path string) *dockerfile {
	t.Helper()
	d, err := parseDockerfile(readFile(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d
}

// final returns the last stage, the one that becomes the image.
func (d *dockerfile) final() instructions.Stage {
	return d.stages[len(d.stages)-1]
}

// commands returns the commands of type C in stage s, in order.
func commands[C instructions.Command](s instructions.Stage) []C {
	var out []C
	for _, cmd := range s.Commands {
		if c, ok := cmd.(C); ok {
			out = append(out, c)
		}
	}
	return out
}

// last returns the last command of type C in stage s, which is the one in effect.
func last[C instructions.Command](s instructions.Stage) (C, bool) {
	cs := commands[C](s)
	if len(cs) == 0 {
		var zero C
		return zero, false
	}
	return cs[len(cs)-1], true
}

// envValue returns the value the ENV instructions of stage s give to key, if any.
func envValue(s instructions.Stage, key string) (string, bool) {
	value, found := "", false
	for _, env := range commands[*instructions.EnvCommand](s) {
		for _, kv := range env.Env {
			if kv.Key == key {
				value, found = strings.Trim(kv.Value, `"'`), true
			}
		}
	}
	return value, found
}

// dockerfileChecks lists the rules the Dockerfile must obey.
func dockerfileChecks() []check[*dockerfile] {
	return []check[*dockerfile]{
		{"multi-stage build", checkMultiStage},
		{"minimal final base", checkMinimalBase},
		{"non-root user", checkNonRootUser},
		{"health check", checkHealthCheck},
		{"stage references", checkStageReferences},
		{"module download layer", checkModuleLayer},
		{"static go build", checkStaticBuild},
		{"exec form entrypoint", checkExecForm},
		{"listen address", checkListenAddress},
		{"writable workdir", checkWritableWorkdir},
		{"buildkit lint", checkLint},
	}
}

// checkMultiStage requires a separate build stage whose output the final stage copies.
func checkMultiStage(d *dockerfile) error {
	if len(d.stages) < 2 {
		return errors.New("single stage: the compiler and sources would ship in the image")
	}
	for _, c := range commands[*instructions.CopyCommand](d.final()) {
		if c.From != "" {
			return nil
		}
	}
	return errors.New("the final stage copies nothing from an earlier stage")
}

// checkMinimalBase requires the final stage to start from distroless/static, or from
// scratch with CA certificates copied in.
func checkMinimalBase(d *dockerfile) error {
	final := d.final()
	base := strings.ToLower(final.BaseName)
	switch {
	case strings.HasPrefix(base, "gcr.io/distroless/static"):
		return nil
	case base == "scratch":
		for _, c := range commands[*instructions.CopyCommand](final) {
			if strings.HasPrefix(path.Clean(c.DestPath), "/etc/ssl/certs") {
				return nil
			}
		}
		return errors.New("final stage is scratch but copies no CA certificates")
	}
	return fmt.Errorf("final stage is based on %q, want distroless/static or scratch", base)
}

// checkNonRootUser requires the final stage to switch to a numeric non-root user.
func checkNonRootUser(d *dockerfile) error {
	user, ok := last[*instructions.UserCommand](d.final())
	if !ok {
		return errors.New("final stage has no USER, so the container runs as root")
	}
	return nonRootID(user.User)
}

// nonRootID reports why a USER value such as "65532:65532" is not a numeric, non-root
// user and group, or nil if it is. Only a numeric id can be verified as non-root
// without the image's /etc/passwd.
func nonRootID(spec string) error {
	user, group, hasGroup := strings.Cut(spec, ":")
	parts := []string{user}
	if hasGroup {
		parts = append(parts, group)
	}
	for _, p := range parts {
		id, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return fmt.Errorf("USER %q: %q is not a numeric id", spec, p)
		}
		if id == 0 {
			return fmt.Errorf("USER %q: id 0 is root", spec)
		}
	}
	return nil
}

// checkHealthCheck requires a HEALTHCHECK in the final stage that runs the service's
// healthcheck subcommand in exec form, with every timing set explicitly.
func checkHealthCheck(d *dockerfile) error {
	hc, ok := last[*instructions.HealthCheckCommand](d.final())
	if !ok {
		return errors.New("final stage has no HEALTHCHECK")
	}
	h := hc.Health
	if len(h.Test) < 2 || h.Test[0] != "CMD" {
		return fmt.Errorf("HEALTHCHECK %q is not the exec form; the image has no shell", h.Test)
	}
	if !slices.Contains(h.Test[1:], "healthcheck") {
		return fmt.Errorf("HEALTHCHECK runs %q, not the healthcheck subcommand", h.Test[1:])
	}
	if h.Interval <= 0 || h.Timeout <= 0 || h.StartPeriod <= 0 || h.Retries <= 0 {
		return errors.New("HEALTHCHECK must set --interval, --timeout, " +
			"--start-period and --retries")
	}
	return nil
}

// checkStageReferences requires every COPY --from to name an earlier stage, by name
// or by index, rather than silently pulling an image of that name.
func checkStageReferences(d *dockerfile) error {
	for i, s := range d.stages {
		for _, c := range commands[*instructions.CopyCommand](s) {
			if c.From != "" && !namesStage(d.stages[:i], c.From) {
				return fmt.Errorf("stage %d: COPY --from=%s names no earlier stage", i, c.From)
			}
		}
	}
	return nil
}

// namesStage reports whether ref is the name or the index of one of stages.
func namesStage(stages []instructions.Stage, ref string) bool {
	// BuildKit reads a number as a stage index and anything else as a name, compared
	// without regard to case.
	if n, err := strconv.Atoi(ref); err == nil {
		return n >= 0 && n < len(stages)
	}
	return slices.ContainsFunc(stages, func(s instructions.Stage) bool {
		return s.Name != "" && strings.EqualFold(s.Name, ref)
	})
}

// goBuild returns the stage and the RUN instruction that compile the service.
func goBuild(d *dockerfile) (instructions.Stage, *instructions.RunCommand, bool) {
	for _, s := range d.stages {
		for _, r := range commands[*instructions.RunCommand](s) {
			if strings.Contains(runText(r), "go build") {
				return s, r, true
			}
		}
	}
	return instructions.Stage{}, nil, false
}

// runText returns the command line of a RUN instruction as one string.
func runText(r *instructions.RunCommand) string {
	return strings.Join(r.CmdLine, " ")
}

// checkModuleLayer requires go.mod and go.sum to be copied and the modules downloaded
// before the rest of the sources are copied, so that the download is cached.
func checkModuleLayer(d *dockerfile) error {
	s, _, ok := goBuild(d)
	if !ok {
		return errors.New("no stage runs go build")
	}
	// Positions in the stage of the three steps, in the order they must come.
	const missing = -1
	copyMod, download, copyAll := missing, missing, missing
	for i, cmd := range s.Commands {
		switch c := cmd.(type) {
		case *instructions.CopyCommand:
			src := slices.Sorted(slices.Values(c.SourcePaths))
			if copyMod == missing && slices.Equal(src, []string{"go.mod", "go.sum"}) {
				copyMod = i
			}
			if copyAll == missing && slices.Contains(src, ".") {
				copyAll = i
			}
		case *instructions.RunCommand:
			if download == missing && strings.Contains(runText(c), "go mod download") {
				download = i
			}
		}
	}
	if copyMod == missing || download == missing || copyAll == missing ||
		!(copyMod < download && download < copyAll) {
		return errors.New("the build stage must COPY go.mod go.sum, " +
			"then RUN go mod download, then COPY the rest")
	}
	return nil
}

// ldflagsStrip matches -ldflags asking the linker to drop symbol and debug tables.
var ldflagsStrip = regexp.MustCompile(`-ldflags=["']?-s -w["']?`)

// checkStaticBuild requires the go build to run with CGO_ENABLED=0, -trimpath and
// stripped symbols, giving a static binary that runs on a base without libc.
func checkStaticBuild(d *dockerfile) error {
	s, run, ok := goBuild(d)
	if !ok {
		return errors.New("no stage runs go build")
	}
	// CGO_ENABLED=0 may come from an ENV of the stage or from the command line itself.
	cgo, _ := envValue(s, "CGO_ENABLED")
	if cgo != "0" && !strings.Contains(runText(run), "CGO_ENABLED=0") {
		return errors.New("go build runs without CGO_ENABLED=0; the binary would need libc")
	}
	if !strings.Contains(runText(run), "-trimpath") || !ldflagsStrip.MatchString(runText(run)) {
		return fmt.Errorf("go build lacks -trimpath or -ldflags=\"-s -w\": %s", runText(run))
	}
	return nil
}

// checkExecForm requires ENTRYPOINT, and CMD if present, in exec form: the image has no
// shell, and the exec form delivers signals to the service itself.
func checkExecForm(d *dockerfile) error {
	ep, ok := last[*instructions.EntrypointCommand](d.final())
	if !ok {
		return errors.New("final stage has no ENTRYPOINT")
	}
	if ep.PrependShell {
		return fmt.Errorf("ENTRYPOINT %q is in shell form", ep.CmdLine)
	}
	if cmd, ok := last[*instructions.CmdCommand](d.final()); ok && cmd.PrependShell {
		return fmt.Errorf("CMD %q is in shell form", cmd.CmdLine)
	}
	return nil
}

// checkListenAddress requires AUTHSVC_ADDR to listen on all interfaces, since the
// service's loopback default cannot be reached through a published port, and the
// port to be exposed.
func checkListenAddress(d *dockerfile) error {
	final := d.final()
	addr, ok := envValue(final, "AUTHSVC_ADDR")
	if !ok {
		return errors.New("final stage does not set AUTHSVC_ADDR")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("AUTHSVC_ADDR %q: %w", addr, err)
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		return fmt.Errorf("AUTHSVC_ADDR %q listens on %s only", addr, host)
	}
	for _, e := range commands[*instructions.ExposeCommand](final) {
		for _, p := range e.Ports {
			if strings.TrimSuffix(p, "/tcp") == port {
				return nil
			}
		}
	}
	return fmt.Errorf("port %s of AUTHSVC_ADDR is not in EXPOSE", port)
}

// checkWritableWorkdir requires a WORKDIR that is copied in owned by the runtime user,
// so that the embedded store can create ./data there.
func checkWritableWorkdir(d *dockerfile) error {
	final := d.final()
	wd, ok := last[*instructions.WorkdirCommand](final)
	if !ok {
		return errors.New("final stage sets no WORKDIR")
	}
	dir := path.Clean(wd.Path)
	user := ""
	if u, ok := last[*instructions.UserCommand](final); ok {
		user, _, _ = strings.Cut(u.User, ":")
	}
	// Write access needs the owner, not the group, to match: the directory is 0755.
	for _, c := range commands[*instructions.CopyCommand](final) {
		owner, _, _ := strings.Cut(c.Chown, ":")
		if path.Clean(c.DestPath) == dir && owner != "" && owner == user {
			return nil
		}
	}
	return fmt.Errorf("WORKDIR %s is not copied in with --chown to the USER %q", dir, user)
}

// checkLint runs BuildKit's Dockerfile linter, which also reports what would stop a
// build from starting, and requires it to find nothing.
func checkLint(d *dockerfile) error {
	if _, v, _, ok := parser.ParseDirective("check", d.text); ok && strings.Contains(v, "skip") {
		return fmt.Errorf("lint rules are turned off with # check=%s", v)
	}
	problems, err := lintDockerfile(d.text)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// lintDockerfile returns BuildKit's lint warnings and build error for text.
func lintDockerfile(text []byte) ([]string, error) {
	// The linter records where each warning comes from; it needs a source map with a
	// definition, though an empty one will do for a single file.
	src := llb.NewSourceMap(nil, "Dockerfile", "Dockerfile", text)
	src.Definition = &llb.Definition{}
	res, err := dockerfile2llb.DockerfileLint(context.Background(), text,
		dockerfile2llb.ConvertOpt{SourceMap: src, MetaResolver: offlineResolver{}})
	if err != nil {
		return nil, fmt.Errorf("lint Dockerfile: %w", err)
	}
	var problems []string
	for _, w := range res.Warnings {
		problems = append(problems, w.RuleName+": "+w.Detail)
	}
	if res.Error != nil {
		problems = append(problems, "build error: "+res.Error.Message)
	}
	return problems, nil
}

// offlineResolver answers BuildKit's questions about base images without a registry:
// every image is a one-layer image for the requested platform with an empty config.
// It keeps the linter from reaching out to the network.
type offlineResolver struct{}

// ResolveImageConfig returns a synthetic image config for ref.
func (offlineResolver) ResolveImageConfig(_ context.Context, ref string,
	opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	platform := ocispecs.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if opt.ImageOpt != nil && opt.ImageOpt.Platform != nil {
		platform = *opt.ImageOpt.Platform
	}
	img := ocispecs.Image{
		Platform: platform,
		RootFS: ocispecs.RootFS{
			Type:    "layers",
			DiffIDs: []digest.Digest{digest.FromString(ref)},
		},
	}
	config, err := json.Marshal(img)
	if err != nil {
		return "", "", nil, fmt.Errorf("encode image config for %s: %w", ref, err)
	}
	return ref, "", config, nil
}

// TestDockerfile holds the repository's Dockerfile to every rule, one subtest each.
func TestDockerfile(t *testing.T) {
	d := loadDockerfile(t, repoPath(t, "Dockerfile"))
	for _, c := range dockerfileChecks() {
		t.Run(c.name, func(t *testing.T) {
			if err := c.fn(d); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestDockerfileChecksRejectBrokenVariants proves that each rule can fail: every file
// under testdata/dockerfile breaks the repository's Dockerfile in one way, and exactly
// the rules listed for it must object.
func TestDockerfileChecksRejectBrokenVariants(t *testing.T) {
	cases := []brokenCase{
		{"dockerfile/user_root.Dockerfile", []string{"non-root user", "writable workdir"}},
		{"dockerfile/no_healthcheck.Dockerfile", []string{"health check"}},
		{"dockerfile/healthcheck_shell.Dockerfile", []string{"health check"}},
		{"dockerfile/copy_from_typo.Dockerfile", []string{"stage references"}},
		{"dockerfile/cgo_enabled.Dockerfile", []string{"static go build"}},
		{"dockerfile/no_module_layer.Dockerfile", []string{"module download layer"}},
		{"dockerfile/entrypoint_shell.Dockerfile",
			[]string{"exec form entrypoint", "buildkit lint"}},
		{"dockerfile/single_stage.Dockerfile", []string{"multi-stage build",
			"minimal final base", "non-root user", "writable workdir"}},
		{"dockerfile/debian_base.Dockerfile", []string{"minimal final base"}},
		{"dockerfile/scratch_no_certs.Dockerfile", []string{"minimal final base"}},
		{"dockerfile/loopback_addr.Dockerfile", []string{"listen address"}},
		{"dockerfile/workdir_root_owned.Dockerfile", []string{"writable workdir"}},
		{"dockerfile/lint_as_casing.Dockerfile", []string{"buildkit lint"}},
		// An accepted variant: scratch passes once CA certificates are copied in.
		{"dockerfile/scratch_with_certs.Dockerfile", nil},
	}
	testBrokenVariants(t, dockerfileChecks(), cases, loadDockerfile)
}

// TestNonRootID covers the USER values the non-root rule accepts and refuses.
func TestNonRootID(t *testing.T) {
	tests := []struct {
		spec string
		ok   bool
	}{
		{"65532:65532", true},
		{"65532", true},
		{"1000:1000", true},
		{"0", false},
		{"0:0", false},
		{"65532:0", false},
		{"root", false},
		{"nonroot:nonroot", false},
		{"", false},
		{"-1", false},
	}
	for _, tt := range tests {
		err := nonRootID(tt.spec)
		if (err == nil) != tt.ok {
			t.Errorf("nonRootID(%q) = %v, want ok %v", tt.spec, err, tt.ok)
		}
	}
}

// TestDockerignore matches paths against .dockerignore the way BuildKit does: secrets,
// local state and build output stay out of the build context, sources stay in.
func TestDockerignore(t *testing.T) {
	f, err := os.Open(repoPath(t, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatalf("read .dockerignore: %v", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf("compile .dockerignore: %v", err)
	}

	tests := []struct {
		path     string
		excluded bool
	}{
		{".git/config", true},
		{"data/authsvc.db", true},
		{"data/authsvc.key", true},
		{"secrets/encryption_key", true},
		{"secrets/database_url", true},
		{"authsvc", true},
		{"internal/db/db.test", true},
		{"cover.out", true},
		{"go.mod", false},
		{"go.sum", false},
		{"cmd/authsvc/main.go", false},
		{"internal/db/store.go", false},
		{"migrations/postgres/0001_init.up.sql", false},
	}
	for _, tt := range tests {
		got, err := pm.MatchesOrParentMatches(tt.path)
		if err != nil {
			t.Fatalf("match %s: %v", tt.path, err)
		}
		if got != tt.excluded {
			t.Errorf("%s excluded from the build context = %v, want %v", tt.path, got, tt.excluded)
		}
	}
}
