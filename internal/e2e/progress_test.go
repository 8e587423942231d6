package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kballard/go-shellquote"
	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
)

// TestProgress: the waits (a spread checkpoint, the archiver's, slowed
// down, and the WAL copy) show a progress line on a terminal, and nothing
// without one.
func TestProgress(t *testing.T) {
	archive := pgtest.TempDir(t)
	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{Conf: []string{"archive_mode = on",
		"archive_command = 'sleep 2 && cp %p " + archive + "/%f'"}})
	st := filepath.Join(t.TempDir(), "staging")
	args := []string{toolBin, "--staging", st, "--label", "tty", "--", "true"}
	// script(1) gives the tool a terminal.
	cmd := exec.Command("script", "-qefc", shellquote.Join(args...), "/dev/null")
	cmd.Env = append(cmd.Environ(), c.Env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	for _, want := range []string{"waiting for the backup to start: 0s of up to about 4m30s (a spread checkpoint",
		"waiting for the archiver to archive", "staging WAL: 0s 0 of 2 files from local:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no progress line %q on a terminal:\n%q", want, out)
		}
	}
	if r := runTool(t, c.Env(), "--staging", st, "--label", "cron", "--fast", "--wal=archive", "--", "true"); r.code != 0 || r.stderr != "" {
		t.Errorf("without a terminal: exit %d, stderr %q", r.code, r.stderr)
	}
}
