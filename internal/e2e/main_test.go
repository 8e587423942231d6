// Package e2e runs the pgfbb-wrap binary against real PostgreSQL clusters and
// real btrfs snapshots, and proves its backups by restoring them.
package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgfbb/pgfbb-wrap/staged"
)

var toolBin string

func TestMain(m *testing.M) {
	if path := os.Getenv(forgedHolderEnv); path != "" {
		forgeHolder(path)
	}
	dir, err := os.MkdirTemp("", "pgfbb-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Some tests run the tool as another OS user.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	toolBin = filepath.Join(dir, "pgfbb-wrap")
	args := []string{"build", "-o", toolBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/pgfbb/pgfbb-wrap")...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build pgfbb-wrap: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	printMatrix()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one finished run of the tool.
type result struct {
	code   int
	stdout string
	stderr string
}

// tool starts pgfbb-wrap with env added to ours; stdout is kept too.
func tool(env []string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.Command(toolBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// A snapshot command orphaned by a killed tool keeps the pipes open.
	cmd.WaitDelay = time.Second
	return cmd, &stderr
}

// stdoutOf is what a command tool made has written to stdout.
func stdoutOf(cmd *exec.Cmd) string { return cmd.Stdout.(*bytes.Buffer).String() }

// runTool runs pgfbb-wrap to its end.
func runTool(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd, stderr := tool(env, args...)
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("run pgfbb-wrap: %v", err)
	}
	t.Logf("pgfbb-wrap %s: exit %d\n%s%s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), stdoutOf(cmd), stderr)
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdoutOf(cmd), stderr: stderr.String()}
}

// want checks the exit code and that stdout or stderr mentions each string.
func (r result) want(t *testing.T, code int, contains ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d; output:\n%s%s", r.code, code, r.stdout, r.stderr)
	}
	// go-multierror's own format spreads one error over several lines.
	if strings.Contains(r.stdout+r.stderr, "error occurred:") || strings.Contains(r.stdout+r.stderr, "errors occurred:") {
		t.Errorf("output holds a multi-line error, want one line an error:\n%s%s", r.stdout, r.stderr)
	}
	for _, c := range contains {
		if !strings.Contains(r.stdout+r.stderr, c) {
			t.Errorf("output does not mention %q:\n%s%s", c, r.stdout, r.stderr)
		}
	}
}

// readManifest loads a published backup's manifest and checks that every
// file it lists has the recorded size and checksum.
func readManifest(t *testing.T, dir string) *staged.Manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, staged.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var m staged.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.Status != staged.StatusComplete {
		t.Fatalf("manifest status %q", m.Status)
	}
	for _, f := range m.Files {
		got, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != f.Size || sha256hex(got) != f.SHA256 {
			t.Errorf("%s does not match its manifest entry", f.Path)
		}
	}
	return &m
}

// assertNothingPublished checks that a failed run left no backup and no
// partial directory in the staging directory.
func assertNothingPublished(t *testing.T, staging string) {
	t.Helper()
	entries, err := os.ReadDir(staging)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		// Lock files stay: removing one races with its next user.
		if e.Name() != staged.LockFile && e.Name() != staged.PruneLockFile && !strings.HasPrefix(e.Name(), ".pgfbb-cluster-") {
			t.Errorf("failed run left %s in the staging directory", e.Name())
		}
	}
}

// waitFile waits for a file a test command writes.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	for i := 0; i < 300; i++ {
		if data, err := os.ReadFile(path); err == nil && bytes.HasSuffix(data, []byte("\n")) {
			return strings.TrimSpace(string(data))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", path)
	return ""
}

// printMatrix prints the per-version results of the end-to-end restore test,
// to PGFBB_TEST_REPORT when set (go test hides a passing package's output).
func printMatrix() {
	if len(matrixResults) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-14s %-8s %-10s %s\n", "server", "segment", "WAL files", "restore")
	for _, r := range matrixResults {
		ok := "FAILED"
		if r.restored {
			ok = "ok"
		}
		fmt.Fprintf(&b, "%-14s %-8s %-10d %s\n", r.target, r.segSize, r.walFiles, ok)
	}
	if path := os.Getenv("PGFBB_TEST_REPORT"); path != "" {
		os.WriteFile(path, []byte(b.String()), 0o644)
		return
	}
	fmt.Print("\n" + b.String())
}
