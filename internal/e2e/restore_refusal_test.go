package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pgfbb/pgfbb-wrap/internal/pgtest"
	"github.com/pgfbb/pgfbb-wrap/staged"
)

func TestRestoreRefusals(t *testing.T) {
	in := pgtest.DefaultInstall(t)
	c := pgtest.New(t, in, pgtest.Options{})
	staging := filepath.Join(t.TempDir(), "staging")
	runTool(t, c.Env(), "--staging", staging, "--label", "r", "--fast", "--", "true").want(t, 0)
	backupDir := filepath.Join(staging, "r")
	other := pgtest.New(t, in, pgtest.Options{})
	other.Stop(t)

	t.Run("running postmaster", func(t *testing.T) {
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", c.PGData).want(t, 3, "is running on", "stop it first")
	})
	t.Run("bad target", func(t *testing.T) {
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", other.PGData, "--target", "yesterday").want(t, 2, "--target")
	})
	t.Run("past the backup without an archive", func(t *testing.T) {
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", other.PGData, "--target", "latest").want(t, 3, "--restore-command")
	})
	t.Run("damaged backup", func(t *testing.T) {
		dir := copyDir(t, backupDir)
		os.Remove(filepath.Join(dir, staged.LabelFile))
		runTool(t, nil, "restore", "--staged", dir, "--pgdata", other.PGData).want(t, 3, "not usable")
	})
	t.Run("another cluster, then forced", func(t *testing.T) {
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", other.PGData).want(t, 3, "target belongs to cluster")
		if _, err := os.Stat(filepath.Join(other.PGData, staged.LabelFile)); !os.IsNotExist(err) {
			t.Fatal("a refused restore changed the target")
		}
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", other.PGData, "--force").want(t, 0)
	})
	t.Run("existing backup_label", func(t *testing.T) {
		// other now holds a backup_label from the forced restore.
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", other.PGData).want(t, 3, "already holds a backup_label")
	})
	t.Run("wrong major", func(t *testing.T) {
		dir := copyDir(t, other.PGData)
		os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("9\n"), 0o600)
		runTool(t, nil, "restore", "--staged", backupDir, "--pgdata", dir, "--force").want(t, 3, "PostgreSQL 9 data directory")
	})
}
