package twofactor

import (
	"os"
	"os/exec"
	"testing"
)

// requireToolsEnv names the variable that turns a missing external tool
// from a skipped test into a failed one (CI sets it).
const requireToolsEnv = "AUTHSVC_TEST_REQUIRE_TOOLS"

// lookTool returns the path of an external program the test compares
// against. When it is not installed the test is skipped with a message
// naming the Debian package, or fails if requireToolsEnv is "1".
func lookTool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := name + " not found (apt-get install " + debianPackage + "): " + err.Error()
	if os.Getenv(requireToolsEnv) == "1" {
		t.Fatalf("%s; %s=1 requires it", msg, requireToolsEnv)
	}
	t.Skipf("SKIPPED: %s; set %s=1 to make this a failure", msg, requireToolsEnv)
	return ""
}
