package migrations_test

import (
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"testing"

	"github.com/authsvc/authsvc/migrations"
)

// fileName is golang-migrate's naming: a version, a name, a direction.
var fileName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$`)

// steps lists "version_name" of every migration in set and checks that each
// has both an up and a down file that are not empty.
func steps(t *testing.T, set fs.FS) []string {
	t.Helper()
	entries, err := fs.ReadDir(set, ".")
	if err != nil {
		t.Fatalf("read migration set: %v", err)
	}
	directions := map[string][]string{}
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			t.Errorf("file %q does not follow NNNN_name.(up|down).sql", e.Name())
			continue
		}
		body, err := fs.ReadFile(set, e.Name())
		if err != nil {
			t.Fatalf("read %s: %v", e.Name(), err)
		}
		if len(body) == 0 {
			t.Errorf("%s is empty", e.Name())
		}
		step := m[1] + "_" + m[2]
		directions[step] = append(directions[step], m[3])
	}
	var names []string
	for step, dirs := range directions {
		slices.Sort(dirs)
		if !slices.Equal(dirs, []string{"down", "up"}) {
			t.Errorf("step %s has %v, want both down and up", step, dirs)
		}
		names = append(names, step)
	}
	slices.Sort(names)
	return names
}

func TestSetsMatch(t *testing.T) {
	pg := steps(t, migrations.Postgres)
	lite := steps(t, migrations.SQLite)
	if len(pg) == 0 {
		t.Fatal("no PostgreSQL migrations embedded")
	}
	if !slices.Equal(pg, lite) {
		t.Errorf("PostgreSQL steps %v differ from SQLite steps %v", pg, lite)
	}
	// Versions count up from 1 without gaps, so "down N" means N steps.
	for i, name := range pg {
		if want := fmt.Sprintf("%04d", i+1); name[:4] != want {
			t.Errorf("step %d is %s, want version %s", i, name, want)
		}
	}
}
