package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kballard/go-shellquote"
	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
)

// TestProgress: a long wait (here the archiver's, slowed down) shows a
// progress line on a terminal, and nothing without one.
func TestProgress(t *testing.T) {
	archive := pgtest.TempDir(t)
	c := pgtest.New(t, pgtest.DefaultInstall(t), pgtest.Options{Conf: []string{"archive_mode = on",
		"archive_command = 'sleep 2 && cp %p " + archive + "/%f'"}})
	st := filepath.Join(t.TempDir(), "staging")
	args := []string{toolBin, "--staging", st, "--label", "tty", "--fast", "--wal=archive", "--", "true"}
	// script(1) gives the tool a terminal.
	cmd := exec.Command("script", "-qefc", shellquote.Join(args...), "/dev/null")
	cmd.Env = append(cmd.Environ(), c.Env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "waiting for the archiver to archive") {
		t.Errorf("no progress line on a terminal:\n%q", out)
	}
	if r := runTool(t, c.Env(), "--staging", st, "--label", "cron", "--fast", "--wal=archive", "--", "true"); r.code != 0 || r.stderr != "" {
		t.Errorf("without a terminal: exit %d, stderr %q", r.code, r.stderr)
	}
}
