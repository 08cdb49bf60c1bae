package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConformancePython runs conformance/conformance.py, a client written
// in another language from the protocol page alone, against the gateway,
// including the slow timeout checks. It installs python3 when missing.
func TestConformancePython(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		aptInstall(t, "python3")
	}
	s := startServer(t, "-hb", "2s", "-login-timeout", "3s")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", filepath.Join("..", "conformance", "conformance.py"),
		"--tcp", s.TCP, "--api", s.API, "--api-key", testAPIKey, "--jwt-secret", testSecret,
		"--node", s.Node, "--slow", "--login-timeout", "3", "--idle-timeout", "6")
	out, err := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if err != nil || !strings.HasSuffix(last, " passed, 0 failed") {
		t.Fatalf("conformance suite: %v\n%s", err, out)
	}
	t.Log(last)
}

// aptInstall installs Debian packages, for the tools the tests drive.
func aptInstall(t *testing.T, pkgs ...string) {
	t.Helper()
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y"}, pkgs...)} {
		cmd := exec.Command("apt-get", append([]string{"-o", "DPkg::Lock::Timeout=300", "-q"}, args...)...)
		cmd.Env = append(cmd.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %v: %v\n%s", args, err, out)
		}
	}
}
