package deploycheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDockerComposeConfig validates the compose file once more with the docker-compose
// command, which needs no container engine for `config`. The command must accept the
// real file and refuse one with a misspelt key, which shows that it is really validating. It is
// skipped, loudly, when docker-compose is not installed, unless
// AUTHSVC_TEST_REQUIRE_TOOLS=1 asks for a failure instead.
func TestDockerComposeConfig(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		if os.Getenv("AUTHSVC_TEST_REQUIRE_TOOLS") == "1" {
			t.Fatalf("docker-compose is required (AUTHSVC_TEST_REQUIRE_TOOLS=1): %v", err)
		}
		t.Skip("SKIPPED: docker-compose is not installed, so it did not validate " +
			"docker-compose.yml; set AUTHSVC_TEST_REQUIRE_TOOLS=1 to fail instead")
	}

	tests := []struct {
		name  string
		path  string
		valid bool
	}{
		{"real file", repoPath(t, "docker-compose.yml"), true},
		{"misspelt key", filepath.Join("testdata", "compose", "misspelt_key.yml"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, "-f", "docker-compose.yml", "config", "-q")
			cmd.Dir = composeDir(t, tt.path)
			cmd.Env = append(os.Environ(), "COMPOSE_PROJECT_NAME=authsvc")
			out, err := cmd.CombinedOutput()
			if tt.valid && err != nil {
				t.Fatalf("docker-compose config rejected the file: %v\n%s", err, out)
			}
			if !tt.valid && err == nil {
				t.Fatalf("docker-compose config accepted a broken file")
			}
			t.Logf("docker-compose config: %v %s", err, out)
		})
	}
}
