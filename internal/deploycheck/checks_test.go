package deploycheck

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// check is one named rule applied to a parsed file of type T. It returns nil when
// the file obeys the rule and an error saying what is wrong otherwise.
type check[T any] struct {
	name string
	fn   func(T) error
}

// failing applies every check to v and returns the names of those that fail, in
// the order of checks, logging each failure's message.
func failing[T any](t *testing.T, checks []check[T], v T) []string {
	t.Helper()
	var names []string
	for _, c := range checks {
		if err := c.fn(v); err != nil {
			t.Logf("%s: %v", c.name, err)
			names = append(names, c.name)
		}
	}
	return names
}

// brokenCase names a deliberately broken file under testdata and the checks that
// must reject it: exactly these, no more and no fewer.
type brokenCase struct {
	file  string
	fails []string
}

// testBrokenVariants runs every check on every broken file and compares the failing
// checks with the expected ones. It also makes sure that each check is expected to
// fail on at least one file, so that no rule goes without a test that can fail it.
func testBrokenVariants[T any](t *testing.T, checks []check[T], cases []brokenCase,
	load func(t *testing.T, path string) T) {
	t.Helper()

	covered := map[string]bool{}
	for _, tc := range cases {
		for _, name := range tc.fails {
			covered[name] = true
		}
		t.Run(tc.file, func(t *testing.T) {
			v := load(t, filepath.Join("testdata", tc.file))
			got := failing(t, checks, v)
			if !slices.Equal(got, orderLike(checks, tc.fails)) {
				t.Errorf("failing checks = %q, want %q", got, tc.fails)
			}
		})
	}

	for _, c := range checks {
		if !covered[c.name] {
			t.Errorf("check %q has no broken variant that it must reject", c.name)
		}
	}
}

// orderLike returns names sorted in the order in which checks lists them; a name
// that is not a check is kept at the end, so that a typo shows up as a mismatch.
func orderLike[T any](checks []check[T], names []string) []string {
	var out []string
	for _, c := range checks {
		if slices.Contains(names, c.name) {
			out = append(out, c.name)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(checks, func(c check[T]) bool { return c.name == n }) {
			out = append(out, n)
		}
	}
	return out
}

// repoPath returns the absolute path of a file at the repository root, two levels
// above this package, and fails the test when it does not exist.
func repoPath(t *testing.T, name string) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("repository file %s: %v", name, err)
	}
	return path
}

// readFile returns the contents of path or fails the test.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return data
}
